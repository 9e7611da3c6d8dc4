"""Streaming video inference: frames in, tracked panoptic maps out.

`VideoPredictor` runs ViP-DeepLab over a video the way the reference sequence runner does
(spec §7.2 and §8.1; deeplab2 `ViP_DeepLab_Demo.ipynb`), without ever holding the video:

* Each frame is encoded exactly once. The jitted device step takes the cached features and
  decoded outputs of the previous frame plus `batch_size` new frames, and returns, per pair
  (t, t+1), the frame-t panoptic map `P` and the stitched frame-(t+1) map `Q` of the two-frame
  canvas (§7.2: H x 2W canvas post-processing, standalone post-processing of t+1, mutual-IoU
  stitcher), cropped/resized back to the frame size. Only these int32 maps (and optional
  depth) cross to the host, and the next step is dispatched before the host waits for the
  previous one, so host work overlaps device work.
* `vipdl.postprocess.stitching.VideoStitcher` turns the per-pair ids into sequence-level track
  ids on the host (§8.1).
* Frame 0 is `P` of the first pair, frame t+1 is `Q` of pair (t, t+1). The reference notebook
  also appends a copy of the last frame to get the last frame's depth; depth only depends on
  the frame itself, so here every frame's depth comes from its own decoder pass instead. A
  one-frame video is run as the pair (f0, f0).
* `tracker="iou"` is the tracking-free baseline (spec §8.4): per-frame Panoptic-DeepLab
  post-processing on the device and `vipdl.postprocess.iou_tracker.IoUTracker` on the host.

Frames of any size are mapped onto the model input by `vipdl.video_io.compute_geometry` (pad
bottom/right with 127.5; resize down first if larger than the eval size) and the outputs are
mapped back on the device (see `vipdl.video_io`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vipdl import from_config, keys, video_io
from vipdl.data.descriptors import DatasetDescriptor, LabelConvention
from vipdl.models.layers import resize_align_corners
from vipdl.postprocess import iou_tracker, stitching, two_frame
from vipdl.postprocess.panoptic import PostprocessOptions, find_centers, panoptic_from_predictions

Tracker = Literal["vip", "iou"]


@dataclasses.dataclass(frozen=True)
class RawOutputs:
    """A frame's model outputs at working resolution (`VideoPredictor(return_raw=True)`).

    Working resolution is the frame resized to fit the model input, before padding
    (`video_io.FrameGeometry.resized_hw`, `[h, w]` below); it is the frame size when the frame
    fits. `vipdl.editing` builds soft mattes from these arrays.

    Attributes:
      panoptic: int32 `[h, w]`, the tracked panoptic map at working resolution
        (`FramePrediction.panoptic` is this map resized nearest-neighbour to the frame).
      semantic_probs: float32 `[h, w, num_classes]`, softmax of the semantic logits.
      center_heatmap: float32 `[h, w]`.
      offsets: float32 `[h, w, 2]`, (dy, dx) to the instance center in working pixels.
      centers: int32 `[k, 2]` (y, x) of the frame's kept centers (threshold, NMS and top-k of
        the predictor's `PostprocessOptions` on the padded input, so a center may lie in the
        padding, outside `[h, w]`); valid ones first.
      center_valid: bool `[k]`.
    """

    panoptic: np.ndarray
    semantic_probs: np.ndarray
    center_heatmap: np.ndarray
    offsets: np.ndarray
    centers: np.ndarray
    center_valid: np.ndarray


@dataclasses.dataclass(frozen=True)
class FramePrediction:
    """The prediction for one frame.

    Attributes:
      index: 0-based frame index in the input stream.
      panoptic: int32 `[height, width]` at the frame's size, `semantic * D + track_id` with
        sequence-consistent track ids (instance 0 = stuff/crowd, void = `ignore_label * D`).
      depth: float32 `[height, width]` metres, or None if the model has no depth head.
      image: uint8 `[height, width, 3]`, the input frame (for overlays).
      raw: the model outputs at working resolution with `return_raw=True`, else None.
    """

    index: int
    panoptic: np.ndarray
    depth: np.ndarray | None
    image: np.ndarray
    raw: RawOutputs | None = None


@dataclasses.dataclass
class Timings:
    """Wall-clock seconds spent per stage (host view) since the predictor was created."""

    device: float = 0.0  # Dispatch + waiting for the device results (model and post-processing).
    stitching: float = 0.0  # Host-side sequence stitching / IoU tracking.
    frames: int = 0


class VideoPredictor:
    """Runs a video panoptic model over a stream of frames, yielding tracked panoptic maps.

    Usage:
        predictor = VideoPredictor.from_checkpoint("runs/vip_r50")
        for pred in predictor.predict("video.mp4"):
            ...  # pred.panoptic: int32 [H, W] with track ids, pred.depth, pred.image

    Memory stays constant in the video length: frames are pulled lazily from the input, and at
    most one device batch plus the cached previous frame are alive.
    """

    def __init__(
        self,
        model: nnx.Module,
        *,
        descriptor: DatasetDescriptor,
        eval_crop_size_hw: tuple[int, int] | None = None,
        postprocess: PostprocessOptions | None = None,
        tracker: Tracker = "vip",
        memory_frames: int | None = None,
        stitching_mode: Literal["clean", "reference"] = "clean",
        batch_size: int = 1,
        output_stride: int = 32,
        return_depth: bool = True,
        return_raw: bool = False,
    ):
        """Builds the predictor.

        Args:
          model: a `ViPDeepLab` (needs `encode`, `decode_frame`, `decode_next` for
            `tracker="vip"`) or, for `tracker="iou"`, any model whose `encode` + `decode_frame`
            or `__call__` on float32 `[b, h, w, 3]` returns the `keys.PRED_*` dict. Switched to
            eval mode here.
          descriptor: the dataset the model was trained on (classes, things, void, divisor).
          eval_crop_size_hw: model input size, e.g. (1025, 2049); None pads every frame to the
            smallest `output_stride * k + 1` that holds it.
          postprocess: Panoptic-DeepLab post-processing options (default: deeplab2's).
          tracker: "vip" (ViP-DeepLab two-frame propagation + sequence stitching) or "iou"
            (per-frame panoptic + IoU tracker, the tracking-free baseline).
          memory_frames: frames a lost track is remembered for: the IoU tracker's inactivity
            limit (default 10, spec §8.4) or the `VideoStitcher` re-identification window
            (default 0 = off, as the reference). None = those defaults.
          stitching_mode: `VideoStitcher` mode, "clean" (default) or "reference" (the
            notebook's literal procedure, spec §8.1).
          batch_size: new frames per device call (pairs are formed across the batch).
          output_stride: used to choose the input size when `eval_crop_size_hw` is None.
          return_depth: return depth maps when the model predicts depth.
          return_raw: also return each frame's semantic probabilities, center heatmap, offsets,
            kept centers and the tracked map at working resolution (`FramePrediction.raw`, for
            `vipdl.editing`); computed on the device, off by default.
        """
        if tracker not in ("vip", "iou"):
            raise ValueError(f"tracker must be 'vip' or 'iou', got {tracker!r}")
        if stitching_mode not in ("clean", "reference"):
            raise ValueError(f"stitching_mode must be 'clean' or 'reference', got {stitching_mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if tracker == "vip":
            missing = [m for m in ("encode", "decode_frame", "decode_next") if not hasattr(model, m)]
            if missing:
                raise ValueError(
                    f"tracker='vip' needs a ViP-DeepLab model with streaming methods; "
                    f"{type(model).__name__} lacks {missing}. Use tracker='iou' for "
                    "single-frame models."
                )
        self.descriptor = descriptor
        self.eval_crop_size_hw = None if eval_crop_size_hw is None else tuple(eval_crop_size_hw)
        self.postprocess = PostprocessOptions() if postprocess is None else postprocess
        self.tracker = tracker
        self.memory_frames = None if memory_frames is None else int(memory_frames)
        self.stitching_mode = stitching_mode
        self.batch_size = int(batch_size)
        self.output_stride = int(output_stride)
        self.return_depth = return_depth
        self.return_raw = bool(return_raw)
        model.eval()
        self._graphdef, self._state = nnx.split(model)
        self._compiled: dict[tuple[int, int], _DeviceFunctions] = {}
        self.timings = Timings()

    def load_weights(self, model: nnx.Module) -> None:
        """Takes the weights of `model`, which must have this predictor's architecture.

        The compiled device functions are kept, so evaluating a model during training costs one
        compilation per frame size for the whole run. `model` is switched to eval mode.

        Raises:
          ValueError: when `model`'s structure (layers, shapes, flags) differs.
        """
        model.eval()
        graphdef, state = nnx.split(model)
        if graphdef != self._graphdef:
            raise ValueError(
                f"load_weights: {type(model).__name__} does not have the architecture this "
                "predictor was built for; build a new VideoPredictor instead"
            )
        self._state = state

    # -----------------------------------------------------------------------------------------
    # Construction from a training run.

    @classmethod
    def from_checkpoint(
        cls,
        workdir_or_config: str | os.PathLike | Any,
        checkpoint: str | os.PathLike | None = None,
        *,
        which: Literal["latest", "best"] = "latest",
        **overrides: Any,
    ) -> VideoPredictor:
        """Builds the model of a config and restores its trained weights.

        Args:
          workdir_or_config: a training workdir (its saved config is read with
            `vipdl.checkpointing.load_config`), or a config (`ml_collections.ConfigDict`).
          checkpoint: checkpoint directory; defaults to the workdir. Required with a config.
          which: "latest" or "best" checkpoint of that directory.
          **overrides: constructor arguments replacing the config's values (e.g. `tracker`,
            `batch_size`, `postprocess`).

        Raises:
          ValueError: the checkpoint does not match the config (the mismatched parameters are
            named), or no checkpoint was given with a config.
        """
        from vipdl import checkpointing

        if isinstance(workdir_or_config, (str, os.PathLike)):
            workdir = Path(workdir_or_config)
            config = checkpointing.load_config(workdir)
            checkpoint = workdir if checkpoint is None else checkpoint
        else:
            config = workdir_or_config
            if checkpoint is None:
                raise ValueError("from_checkpoint: a config needs an explicit checkpoint path")
        model = from_config.create_model(config, rngs=nnx.Rngs(0))
        checkpointing.restore_model_weights(model, checkpoint, which=which)
        return cls.from_config(config, model, **overrides)

    @classmethod
    def from_config(cls, config: Any, model: nnx.Module, **overrides: Any) -> VideoPredictor:
        """A predictor for `model` with the dataset, eval size and post-processing of `config`.

        `overrides` replace constructor arguments (e.g. `tracker`, `batch_size`).
        """
        kwargs = dict(
            descriptor=from_config.descriptor(config),
            eval_crop_size_hw=from_config.eval_crop_size_hw(config),
            postprocess=from_config.postprocess_options(config),
            tracker="vip" if from_config.is_vip(config) else "iou",
            output_stride=from_config.model_config(config).output_stride,
        )
        kwargs.update(overrides)
        return cls(model, **kwargs)

    # -----------------------------------------------------------------------------------------
    # Prediction.

    def predict(
        self, frames: Iterable[np.ndarray] | str | os.PathLike
    ) -> Iterator[FramePrediction]:
        """Streams predictions for a video.

        Args:
          frames: an iterable of frames (uint8 `[height, width, 3]`; greyscale, grey+alpha,
            RGBA and uint16 are converted, see `video_io.to_rgb_uint8`), or a path to a video
            file, an image folder or an image. Frames are pulled lazily, one device batch
            ahead of what has been yielded.

        Yields:
          One `FramePrediction` per frame, in order.

        Raises:
          ValueError: no frames, or frames of different sizes.
        """
        if isinstance(frames, (str, os.PathLike)):
            frames = video_io.read_frames(frames)
        stream = _checked_frames(frames)
        first = next(stream, None)
        if first is None:
            raise video_io.VideoReadError("predict: the input holds no frames")
        fns = self._functions(first.shape[:2])
        run = self._run_vip if self.tracker == "vip" else self._run_iou
        yield from run(fns, first, stream)

    def _functions(self, frame_hw: tuple[int, int]) -> _DeviceFunctions:
        if frame_hw not in self._compiled:
            geometry = video_io.compute_geometry(
                frame_hw, self.eval_crop_size_hw, output_stride=self.output_stride
            )
            self._compiled[frame_hw] = _device_functions(
                self._graphdef,
                geometry,
                self.descriptor.labels,
                self.postprocess,
                bool(self.return_depth),
                self.return_raw,
            )
        return self._compiled[frame_hw]

    def _batches(self, stream: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, list]]:
        """Groups frames into full device batches (the tail repeats its last frame)."""
        while True:
            batch = [f for _, f in zip(range(self.batch_size), stream)]
            if not batch:
                return
            valid = len(batch)
            batch += [batch[-1]] * (self.batch_size - valid)
            yield np.stack(batch), batch[:valid]

    def _pipelined(self, calls: Iterator[tuple[Any, Any]]) -> Iterator[tuple[dict, Any]]:
        """Fetches the results of lazily dispatched device calls, keeping one call in flight.

        Pulling call k+1 from `calls` dispatches it (JAX runs it asynchronously) before the host
        blocks on call k's results, so host stitching overlaps device compute.
        """
        pending = None
        start = time.perf_counter()
        for call in calls:
            if pending is not None:
                host = jax.device_get(pending[0])
                self.timings.device += time.perf_counter() - start
                yield host, pending[1]
                start = time.perf_counter()
            pending = call
        if pending is not None:
            host = jax.device_get(pending[0])
            self.timings.device += time.perf_counter() - start
            yield host, pending[1]

    def _run_vip(self, fns: _DeviceFunctions, first: np.ndarray,
                 stream: Iterator[np.ndarray]) -> Iterator[FramePrediction]:
        kwargs = {} if self.memory_frames is None else {"memory_frames": self.memory_frames}
        stitcher = stitching.VideoStitcher(
            thing_ids=self.descriptor.thing_ids,
            label_divisor=self.descriptor.label_divisor,
            ignore_label=self.descriptor.ignore_label,
            mode=self.stitching_mode,
            **kwargs,
        )

        def calls():
            cache, first_depth = fns.prime(self._state, first[None])
            # Frame 0's raw outputs, taken before the first step donates the cache.
            first_raw = fns.raw(cache[1]) if self.return_raw else None
            stepped = False
            for stacked, new_frames in self._batches(stream):
                outputs, cache = fns.step(self._state, cache, stacked)
                # The first step also emits frame 0, with the depth of the priming pass.
                yield outputs, (new_frames, None if stepped else (first_depth, first_raw))
                stepped = True
            if not stepped:  # One-frame video: the pair (f0, f0), as the reference runs it.
                stacked = np.repeat(first[None], self.batch_size, axis=0)
                outputs, cache = fns.step(self._state, cache, stacked)
                yield outputs, ([], (first_depth, first_raw))

        index = 0
        for host, (new_frames, first_outputs) in self._pipelined(calls()):
            first_depth, first_raw = first_outputs or (None, None)
            with_first = index == 0
            for i in range(max(len(new_frames), int(with_first))):
                t0 = time.perf_counter()
                stitched = stitcher.update(
                    host["panoptic"][i], host["concat_next"][i], host["next_panoptic"][i]
                )
                if with_first and i == 0:
                    frame0 = fns.labels_to_frame(stitcher.first_frame)
                    self.timings.stitching += time.perf_counter() - t0
                    depth0 = None if first_depth is None else np.asarray(first_depth)[0]
                    self.timings.frames += 1
                    raw0 = _raw_outputs(stitcher.first_frame, first_raw, 0)
                    yield FramePrediction(0, frame0, depth0, first, raw0)
                    index = 1
                    t0 = time.perf_counter()
                if i < len(new_frames):
                    raw = _raw_outputs(stitched, host.get("raw"), i)
                    stitched = fns.labels_to_frame(stitched)
                    self.timings.stitching += time.perf_counter() - t0
                    self.timings.frames += 1
                    depth = host.get("depth")
                    yield FramePrediction(
                        index, stitched, None if depth is None else depth[i], new_frames[i], raw
                    )
                    index += 1

    def _run_iou(self, fns: _DeviceFunctions, first: np.ndarray,
                 stream: Iterator[np.ndarray]) -> Iterator[FramePrediction]:
        kwargs = {} if self.memory_frames is None else {"max_inactive_frames": self.memory_frames}
        tracker = iou_tracker.IoUTracker(
            thing_ids=self.descriptor.thing_ids,
            label_divisor=self.descriptor.label_divisor,
            **kwargs,
        )

        def calls():
            for stacked, new_frames in self._batches(itertools.chain([first], stream)):
                yield fns.single(self._state, stacked), new_frames

        index = 0
        for host, new_frames in self._pipelined(calls()):
            depth = host.get("depth")
            for i, frame in enumerate(new_frames):
                t0 = time.perf_counter()
                tracked = tracker.update(host["panoptic"][i])
                raw = _raw_outputs(tracked, host.get("raw"), i)
                tracked = fns.labels_to_frame(tracked)
                self.timings.stitching += time.perf_counter() - t0
                self.timings.frames += 1
                yield FramePrediction(
                    index, tracked, None if depth is None else depth[i], frame, raw
                )
                index += 1


# ---------------------------------------------------------------------------------------------
# Helpers.


def _checked_frames(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    size = None
    for i, frame in enumerate(frames):
        frame = video_io.to_rgb_uint8(frame, name=f"frame {i}")
        if size is None:
            size = frame.shape
        elif frame.shape != size:
            raise video_io.VideoReadError(
                f"frame {i} is {frame.shape[:2]}, frame 0 was {size[:2]}; all frames of a "
                "video must have one size"
            )
        yield frame


def _raw_outputs(panoptic: np.ndarray, raw: dict | None, i: int) -> RawOutputs | None:
    """Element `i` of a device batch of raw outputs, with the tracked working-res map."""
    if raw is None:
        return None
    return RawOutputs(panoptic=np.asarray(panoptic, np.int32),
                      **{k: np.asarray(v[i]) for k, v in raw.items()})


@functools.lru_cache(maxsize=16)
def _device_functions(graphdef, geometry: video_io.FrameGeometry, labels: LabelConvention,
                      options: PostprocessOptions, return_depth: bool,
                      return_raw: bool = False) -> _DeviceFunctions:
    # Shared by predictors of equal model structure and settings (e.g. a new predictor per
    # evaluation round in training), so they compile once; weights are an argument.
    return _DeviceFunctions(graphdef, geometry, labels, options, return_depth, return_raw)


class _DeviceFunctions:
    """The jitted device functions for one frame size (static shapes)."""

    def __init__(self, graphdef, geometry: video_io.FrameGeometry, labels: LabelConvention,
                 options: PostprocessOptions, return_depth: bool, return_raw: bool = False):
        self.geometry = geometry
        self._options = options
        self._return_raw = return_raw
        self._graphdef = graphdef
        self._two_frame_opts = dict(
            thing_ids=labels.thing_ids,
            label_divisor=labels.label_divisor,
            ignore_label=labels.ignore_label,
            options=options,
        )
        self._panoptic = functools.partial(_panoptic, **self._two_frame_opts)
        self._return_depth = return_depth
        # The cache (previous frame's features and outputs) is donated: each step replaces it.
        self.prime = jax.jit(self._prime)
        self.step = jax.jit(self._step, donate_argnums=(1,))
        self.single = jax.jit(self._single)
        self.raw = jax.jit(self._raw)

    # --- geometry on the device -----------------------------------------------------------

    def _to_model_input(self, frames: jax.Array) -> jax.Array:
        g = self.geometry
        images = frames.astype(jnp.float32)
        if g.needs_resize:
            images = resize_align_corners(images, g.resized_hw)
        pad_h, pad_w = g.padded_hw[0] - g.resized_hw[0], g.padded_hw[1] - g.resized_hw[1]
        return jnp.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)),
                       constant_values=video_io.PAD_VALUE)

    def _crop(self, labels: jax.Array) -> jax.Array:
        return labels[:, : self.geometry.resized_hw[0], : self.geometry.resized_hw[1]]

    def labels_to_frame(self, labels: np.ndarray) -> np.ndarray:
        """Host: a `[resized_h, resized_w]` label map -> `[frame_h, frame_w]` (nearest)."""
        if self.geometry.needs_resize:
            return video_io.resize_nearest_np(labels, self.geometry.frame_hw)
        return labels

    def _values_to_frame(self, values: jax.Array) -> jax.Array:
        g = self.geometry
        values = values[:, : g.resized_hw[0], : g.resized_hw[1]].astype(jnp.float32)
        return resize_align_corners(values, g.frame_hw) if g.needs_resize else values

    # --- model pieces ---------------------------------------------------------------------

    def _decode(self, model, features) -> dict:
        out = model.decode_frame(features, self.geometry.padded_hw)
        return {k: v for k, v in out.items() if k in _FRAME_KEYS}

    def _raw(self, decoded: dict) -> dict:
        """Batched raw outputs for `RawOutputs`, cropped to the (resized) frame."""
        opts = self._options

        def centers(heat):
            c = find_centers(heat, center_threshold=opts.center_threshold,
                             nms_kernel=opts.nms_kernel, keep_k_centers=opts.keep_k_centers)
            return c.yx, c.valid

        yx, valid = jax.vmap(centers)(decoded[keys.PRED_CENTER_HEATMAP])
        return {
            "semantic_probs": self._crop(
                jax.nn.softmax(decoded[keys.PRED_SEMANTIC_LOGITS].astype(jnp.float32), axis=-1)),
            "center_heatmap": self._crop(decoded[keys.PRED_CENTER_HEATMAP].astype(jnp.float32)),
            "offsets": self._crop(decoded[keys.PRED_OFFSET_MAP].astype(jnp.float32)),
            "centers": yx,
            "center_valid": valid,
        }

    def _depth(self, decoded: dict):
        if not self._return_depth or keys.PRED_DEPTH not in decoded:
            return None
        return self._values_to_frame(decoded[keys.PRED_DEPTH])

    def _prime(self, state, frame: jax.Array):
        model = nnx.merge(self._graphdef, state)
        features = model.encode(self._to_model_input(frame))
        decoded = self._decode(model, features)
        return (features, decoded), self._depth(decoded)

    def _step(self, state, cache, frames: jax.Array):
        """Pairs (prev, n_0), (n_0, n_1), ... for the batch of new frames n_i."""
        model = nnx.merge(self._graphdef, state)
        prev_features, prev_decoded = cache
        features = model.encode(self._to_model_input(frames))
        decoded = self._decode(model, features)

        def shifted(prev, new):  # [prev, new_0, ..., new_{b-2}]: frame t of each pair.
            return jnp.concatenate([prev, new[:-1]], axis=0)

        features_t = jax.tree.map(shifted, prev_features, features)
        decoded_t = jax.tree.map(shifted, prev_decoded, decoded)
        next_offsets = model.decode_next(features_t, features, self.geometry.padded_hw)
        if isinstance(next_offsets, dict):
            next_offsets = next_offsets[keys.PRED_NEXT_OFFSET_MAP]

        def per_pair(pred_t, pred_t1, next_offset):
            panoptic_t, concat_next = two_frame.two_frame_panoptic(
                pred_t, pred_t1, next_offset, **self._two_frame_opts
            )
            return panoptic_t, concat_next, self._panoptic(pred_t1)

        panoptic_t, concat_next, next_panoptic = jax.vmap(per_pair)(
            decoded_t, decoded, next_offsets
        )
        # Cropped to the (resized) frame but not resized: the host stitches at model
        # resolution, like the reference, and `labels_to_frame` upsamples the result.
        outputs = {
            "panoptic": self._crop(panoptic_t),
            "concat_next": self._crop(concat_next),
            "next_panoptic": self._crop(next_panoptic),
        }
        depth = self._depth(decoded)
        if depth is not None:
            outputs["depth"] = depth
        if self._return_raw:
            outputs["raw"] = self._raw(decoded)
        new_cache = jax.tree.map(lambda x: x[-1:], (features, decoded))
        return outputs, new_cache

    def _single(self, state, frames: jax.Array):
        model = nnx.merge(self._graphdef, state)
        images = self._to_model_input(frames)
        if hasattr(model, "encode") and hasattr(model, "decode_frame"):
            decoded = self._decode(model, model.encode(images))
        else:
            decoded = model(images)
        # Cropped only; the host tracks at model resolution and `labels_to_frame` upsamples.
        outputs = {"panoptic": self._crop(jax.vmap(self._panoptic)(decoded))}
        depth = self._depth(decoded)
        if depth is not None:
            outputs["depth"] = depth
        if self._return_raw:
            outputs["raw"] = self._raw(decoded)
        return outputs


_FRAME_KEYS = (
    keys.PRED_SEMANTIC_LOGITS,
    keys.PRED_CENTER_HEATMAP,
    keys.PRED_OFFSET_MAP,
    keys.PRED_DEPTH,
)


def _panoptic(pred: dict, **options) -> jax.Array:
    return panoptic_from_predictions(
        pred[keys.PRED_SEMANTIC_LOGITS],
        pred[keys.PRED_CENTER_HEATMAP],
        pred[keys.PRED_OFFSET_MAP],
        **options,
    )
