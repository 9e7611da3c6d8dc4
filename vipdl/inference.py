"""Streaming video inference: frames in, tracked panoptic maps out.

`VideoPredictor` runs ViP-DeepLab over a video the way the reference sequence runner does
(docs/postprocessing.md#two-frame-inference and docs/postprocessing.md#sequence-stitching; deeplab2 `ViP_DeepLab_Demo.ipynb`), without ever holding the video:

* Each frame is encoded exactly once. The jitted device step takes the cached features and
  decoded outputs of the previous frame plus `batch_size` new frames, and returns, per pair
  (t, t+1), the frame-t panoptic map `P` and the stitched frame-(t+1) map `Q` of the two-frame
  canvas (docs/postprocessing.md#two-frame-inference: H x 2W canvas post-processing, standalone post-processing of t+1, mutual-IoU
  stitcher), cropped/resized back to the frame size. Only these int32 maps (and optional
  depth) cross to the host, and the next step is dispatched before the host waits for the
  previous one, so host work overlaps device work.
* `vipdl.postprocess.stitching.VideoStitcher` turns the per-pair ids into sequence-level track
  ids on the host (docs/postprocessing.md#sequence-stitching).
* Frame 0 is `P` of the first pair, frame t+1 is `Q` of pair (t, t+1). The reference notebook
  also appends a copy of the last frame to get the last frame's depth; depth only depends on
  the frame itself, so here every frame's depth comes from its own decoder pass instead. A
  one-frame video is run as the pair (f0, f0).
* `tracker="iou"` is the tracking-free baseline (docs/postprocessing.md#iou-tracker): per-frame Panoptic-DeepLab
  post-processing on the device and `vipdl.postprocess.iou_tracker.IoUTracker` on the host.

Frames of any size are mapped onto the model input by `vipdl.video_io.compute_geometry` (pad
bottom/right with 127.5; resize down first if larger than the eval size) and the outputs are
mapped back on the device (see `vipdl.video_io`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from vipdl import export_runtime, keys, predictor_cache, video_io
from vipdl.data.descriptors import DatasetDescriptor, LabelConvention
from vipdl.postprocess import iou_tracker, labels, stitching, two_frame
from vipdl.postprocess.panoptic import PostprocessOptions, find_centers, panoptic_from_predictions

if TYPE_CHECKING:
    from flax import nnx

Tracker = Literal["vip", "iou"]
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RawOutputs:
    """A frame's model outputs at working resolution (`VideoPredictor(return_raw=True)`).

    Working resolution is the frame resized to fit the model input, before padding
    (`video_io.FrameGeometry.resized_hw`, `[h, w]` below); it is the frame size when the frame
    fits. `vipdl.editing` builds soft mattes from these arrays.

    Attributes:
      ids: int64 `[h, w]`, the tracked segments at working resolution as wide ids
        `class << 32 | track` (`FramePrediction.segments[segment_map]` is this map resized
        nearest-neighbour to the frame).
      semantic_probs: float32 `[h, w, num_classes]`, softmax of the semantic logits.
      center_heatmap: float32 `[h, w]`.
      offsets: float32 `[h, w, 2]`, (dy, dx) to the instance center in working pixels.
      centers: int32 `[k, 2]` (y, x) of the frame's kept centers (threshold, NMS and top-k of
        the predictor's `PostprocessOptions` on the padded input, so a center may lie in the
        padding, outside `[h, w]`); valid ones first.
      center_valid: bool `[k]`.
    """

    ids: np.ndarray
    semantic_probs: np.ndarray
    center_heatmap: np.ndarray
    offsets: np.ndarray
    centers: np.ndarray
    center_valid: np.ndarray


@dataclasses.dataclass(frozen=True)
class FramePrediction:
    """The prediction for one frame, as a segment table (docs/inference.md#track-ids).

    Attributes:
      index: 0-based frame index in the input stream.
      segment_map: int32 `[height, width]` at the frame's size, each pixel's row in `segments`.
      segments: int64 `[k]` wide ids `class << 32 | track` of the frame's segments; track ids
        are consistent over the whole video and unbounded (track 0 = stuff or crowd, void =
        class `ignore_label`).
      depth: float32 `[height, width]` metres, or None if the model has no depth head.
      image: uint8 `[height, width, 3]`, the input frame (for overlays).
      label_divisor: the dataset's D, for `panoptic`.
      raw: the model outputs at working resolution with `return_raw=True`, else None.
    """

    index: int
    segment_map: np.ndarray
    segments: np.ndarray
    depth: np.ndarray | None
    image: np.ndarray
    label_divisor: int
    raw: RawOutputs | None = None

    @functools.cached_property
    def semantic(self) -> np.ndarray:
        """int32 `[height, width]` class of every pixel (void = `ignore_label`)."""
        return (self.segments >> labels.TRACK_BITS).astype(np.int32)[self.segment_map]

    @functools.cached_property
    def track(self) -> np.ndarray:
        """int32 `[height, width]` track id of every pixel (0 = stuff, crowd or void)."""
        return (self.segments & labels.TRACK_MASK).astype(np.int32)[self.segment_map]

    @functools.cached_property
    def panoptic(self) -> np.ndarray:
        """int32 `[height, width]` `class * label_divisor + track`, the training-label
        convention.

        Raises:
          TrackIdOverflowError: a track id of this frame is >= label_divisor (long videos
            can have more tracks than that; use `semantic` and `track`).
        """
        narrow = labels.wide_to_panoptic(self.segments, self.label_divisor,
                                         what=f"frame {self.index}")
        return narrow[self.segment_map]


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
            limit (default 10, docs/postprocessing.md#iou-tracker) or the `VideoStitcher` re-identification window
            (default 0 = off, as the reference). None = those defaults.
          stitching_mode: `VideoStitcher` mode, "clean" (default) or "reference" (the
            notebook's literal procedure, docs/postprocessing.md#sequence-stitching).
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
        exported = isinstance(model, export_runtime.ExportedPairStep)  # See `from_export`.
        if tracker == "vip" and not exported:
            missing = (model.missing_streaming_methods if isinstance(model, _CachedWeights) else
                       [m for m in _STREAMING_METHODS if not hasattr(model, m)])
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
        self._exported = self._cached = None
        self._graphdef = None
        if exported:
            if self.return_raw:
                raise ValueError("return_raw=True needs the model itself; an exported model "
                                 "returns panoptic maps and heads only")
            self._exported, self._state = model, None
        elif isinstance(model, _CachedWeights):
            self._cached, self._state = model, model.device_weights()
        else:
            self._graphdef, self._state = _split(model)
        self._compiled: dict[tuple[int, int], _Functions] = {}
        self.timings = Timings()

    def load_weights(self, model: nnx.Module) -> None:
        """Takes the weights of `model`, which must have this predictor's architecture.

        The compiled device functions are kept, so evaluating a model during training costs one
        compilation per frame size for the whole run. `model` is switched to eval mode.

        Raises:
          ValueError: when `model`'s structure (layers, shapes, flags) differs.
        """
        graphdef, state = _split(model)
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
        cache_dir: str | os.PathLike | None = None,
        **overrides: Any,
    ) -> VideoPredictor:
        """Builds the model of a config and restores its trained weights.

        Args:
          workdir_or_config: a training workdir (its saved config is read with
            `vipdl.checkpointing.load_config`), or a config (`ml_collections.ConfigDict`).
          checkpoint: checkpoint directory; defaults to the workdir. Required with a config.
          which: "latest" or "best" checkpoint of that directory.
          cache_dir: a start-up cache directory (`vipdl.predictor_cache`, the CLIs pass the
            compilation cache's, docs/inference.md#start-up): the first run of a checkpoint
            stores its weights and traced device functions there and later runs start from
            them, without Orbax, model construction or tracing. None: no cache.
          **overrides: constructor arguments replacing the config's values (e.g. `tracker`,
            `batch_size`, `postprocess`).

        Raises:
          ValueError: the checkpoint does not match the config (the mismatched parameters are
            named), or no checkpoint was given with a config.
        """
        if isinstance(workdir_or_config, (str, os.PathLike)):
            source = _CheckpointSource(workdir=Path(workdir_or_config), config=None,
                                       checkpoint=checkpoint or workdir_or_config, which=which)
        else:
            if checkpoint is None:
                raise ValueError("from_checkpoint: a config needs an explicit checkpoint path")
            source = _CheckpointSource(workdir=None, config=workdir_or_config,
                                       checkpoint=checkpoint, which=which)
        if cache_dir is not None:
            weights = _CachedWeights.open(source, predictor_cache.Store(cache_dir))
            kwargs = dict(weights.settings)
            kwargs.update(overrides)
            return cls(weights, **kwargs)
        from vipdl import from_config

        config = source.load_config()
        model = from_config.restored_model(config, source.checkpoint, which=which)
        return cls.from_config(config, model, **overrides)

    @classmethod
    def from_config(cls, config: Any, model: nnx.Module, **overrides: Any) -> VideoPredictor:
        """A predictor for `model` with the dataset, eval size and post-processing of `config`.

        `overrides` replace constructor arguments (e.g. `tracker`, `batch_size`).
        """
        kwargs = _settings_from_config(config)
        kwargs.update(overrides)
        return cls(model, **kwargs)

    @classmethod
    def from_export(cls, directory: str | os.PathLike, **overrides: Any) -> VideoPredictor:
        """A predictor running a StableHLO export of `vipdl.export` (docs/export.md#runtime).

        The exported pair step replaces the model; host stitching (or IoU tracking) is the
        same as for a live model. Neither the model code nor a checkpoint is needed: this
        path imports `vipdl.export_runtime`, never `vipdl.models`. Frames must have the size
        the model was exported for. Each pair encodes both of its frames (the live predictor
        encodes each frame once); `tracker="iou"` runs the pair (f, f) per frame.

        Args:
          directory: the export directory (`manifest.json` + `model.stablehlo`).
          **overrides: constructor arguments (e.g. `batch_size`, `tracker`, `stitching_mode`);
            the dataset and post-processing options come from the manifest.

        Raises:
          FileNotFoundError, vipdl.export_runtime.ExportError: not a StableHLO export, or a
            `batch_size` the export does not take.
        """
        step = export_runtime.ExportedPairStep.load(directory)
        kwargs = dict(descriptor=step.descriptor, postprocess=step.postprocess,
                      batch_size=step.manifest.batch or 1)
        kwargs.update(overrides)
        fixed = step.manifest.batch
        if fixed is not None and kwargs["batch_size"] > fixed:
            raise export_runtime.ExportError(
                f"{directory} was exported for batches of {fixed}; got batch_size="
                f"{kwargs['batch_size']}")
        return cls(step, **kwargs)

    # -----------------------------------------------------------------------------------------
    # Prediction.

    def predict(
        self,
        frames: Iterable[np.ndarray] | str | os.PathLike,
        *,
        resume: dict[str, np.ndarray] | None = None,
    ) -> PredictionStream:
        """Streams predictions for a video.

        Args:
          frames: an iterable of frames (uint8 `[height, width, 3]`; greyscale, grey+alpha,
            RGBA and uint16 are converted, see `video_io.to_rgb_uint8`), or a path to a video
            file, an image folder or an image. Frames are pulled lazily, one device batch
            ahead of what has been yielded.
          resume: `PredictionStream.state()` of an interrupted run of this predictor. `frames`
            then starts with the last frame that run yielded (it restores the model's
            previous-frame state and is not yielded again); predictions continue with the next
            index and the same track ids, as if the run had not stopped.

        Returns:
          An iterator of one `FramePrediction` per frame, in order, whose `state()` can resume
          it.

        Raises:
          ValueError: no frames, frames of different sizes, or a `resume` state of another
            tracker or frame size.
        """
        if isinstance(frames, (str, os.PathLike)):
            frames = video_io.read_frames(frames)
        return PredictionStream(self, frames, resume)

    def _stream(self, frames: Iterable[np.ndarray], resume, tracking) -> Iterator[FramePrediction]:
        stream = _checked_frames(frames)
        first = next(stream, None)
        if first is None:
            raise video_io.VideoReadError("predict: the input holds no frames")
        fns = self._functions(first.shape[:2])
        if resume is not None:
            tracking.check(resume, self, first.shape[:2])
        run = self._run_vip if self.tracker == "vip" else self._run_iou
        yield from run(fns, first, stream, resume, tracking)

    def _functions(self, frame_hw: tuple[int, int]) -> _Functions:
        if self._exported is not None:
            return self._exported.predictor_functions(frame_hw,
                                                      return_depth=bool(self.return_depth))
        if frame_hw in self._compiled:
            return self._compiled[frame_hw]
        geometry = video_io.compute_geometry(
            frame_hw, self.eval_crop_size_hw, output_stride=self.output_stride
        )
        if self._cached is not None:
            self._compiled[frame_hw] = self._cached.functions(_FunctionSpec(
                names=("prime", "step") + (("raw",) if self.return_raw else ())
                if self.tracker == "vip" else ("single",),
                geometry=geometry, labels=self.descriptor.labels, options=self.postprocess,
                return_depth=bool(self.return_depth), return_raw=self.return_raw,
                batch_size=self.batch_size))
        else:
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

    def _prediction(self, fns: _Functions, index: int, table: tuple[np.ndarray, np.ndarray],
                    depth, image, raw_batch: dict | None, i: int) -> FramePrediction:
        """The frame's prediction from its segment table (working resolution); `raw_batch`
        holds the raw outputs of the device batch the frame is element `i` of."""
        segment_map, segments = table
        raw = None
        if raw_batch is not None:
            raw = RawOutputs(ids=segments[segment_map],
                             **{k: np.asarray(v[i]) for k, v in raw_batch.items()})
        return FramePrediction(index, fns.labels_to_frame(segment_map), segments,
                               None if depth is None else np.asarray(depth), image,
                               self.descriptor.label_divisor, raw)

    def _run_vip(self, fns: _Functions, first: np.ndarray, stream: Iterator[np.ndarray],
                 resume, tracking) -> Iterator[FramePrediction]:
        kwargs = {} if self.memory_frames is None else {"memory_frames": self.memory_frames}
        stitcher = stitching.VideoStitcher(
            thing_ids=self.descriptor.thing_ids,
            label_divisor=self.descriptor.label_divisor,
            ignore_label=self.descriptor.ignore_label,
            mode=self.stitching_mode,
            **kwargs,
        )
        index = 0
        if resume is not None:
            stitcher.load_state_dict(tracking.tracker_state(resume))
            index = int(resume["frames"])
        tracking.bind(stitcher, fns.geometry.frame_hw, index)

        def calls():
            if resume is not None:
                # The previous frame's cache, computed by the same compiled step as in the
                # uninterrupted run, so the resumed predictions are identical.
                cache, first_depth = fns.prime_by_step(self._state, first, self.batch_size), None
            else:
                cache, first_depth = fns.prime(self._state, first[None])
            # Frame 0's raw outputs, taken before the first step donates the cache.
            first_raw = fns.raw(cache[1]) if self.return_raw and resume is None else None
            stepped = False
            for stacked, new_frames in self._batches(stream):
                outputs, cache = fns.step(self._state, cache, stacked)
                # The first step also emits frame 0, with the depth of the priming pass.
                yield outputs, (new_frames, None if stepped else (first_depth, first_raw))
                stepped = True
            if not stepped and resume is None:
                # One-frame video: the pair (f0, f0), as the reference runs it.
                stacked = np.repeat(first[None], self.batch_size, axis=0)
                outputs, cache = fns.step(self._state, cache, stacked)
                yield outputs, ([], (first_depth, first_raw))

        for host, (new_frames, first_outputs) in self._pipelined(calls()):
            first_depth, first_raw = first_outputs or (None, None)
            if index == 0:
                t0 = time.perf_counter()
                table = stitcher.first_segments(host["panoptic"][0])
                pred = self._prediction(
                    fns, 0, table, None if first_depth is None else np.asarray(first_depth)[0],
                    first, None if first_raw is None else jax.device_get(first_raw), 0)
                self.timings.stitching += time.perf_counter() - t0
                self.timings.frames += 1
                index = 1
                tracking.advance(index)
                yield pred
            depth = host.get("depth")
            for i, frame in enumerate(new_frames):
                t0 = time.perf_counter()
                table = stitcher.update_segments(
                    host["panoptic"][i], host["concat_next"][i], host["next_panoptic"][i]
                )
                pred = self._prediction(fns, index, table, None if depth is None else depth[i],
                                        frame, host.get("raw"), i)
                self.timings.stitching += time.perf_counter() - t0
                self.timings.frames += 1
                index += 1
                tracking.advance(index)
                yield pred

    def _run_iou(self, fns: _Functions, first: np.ndarray, stream: Iterator[np.ndarray],
                 resume, tracking) -> Iterator[FramePrediction]:
        kwargs = {} if self.memory_frames is None else {"max_inactive_frames": self.memory_frames}
        tracker = iou_tracker.IoUTracker(
            thing_ids=self.descriptor.thing_ids,
            label_divisor=self.descriptor.label_divisor,
            **kwargs,
        )
        index = 0
        if resume is not None:
            tracker.load_state_dict(tracking.tracker_state(resume))
            index = int(resume["frames"])
            frames = stream  # The first frame was the last one of the interrupted run.
        else:
            frames = itertools.chain([first], stream)
        tracking.bind(tracker, fns.geometry.frame_hw, index)

        def calls():
            for stacked, new_frames in self._batches(frames):
                yield fns.single(self._state, stacked), new_frames

        for host, new_frames in self._pipelined(calls()):
            depth = host.get("depth")
            for i, frame in enumerate(new_frames):
                t0 = time.perf_counter()
                table = tracker.update_segments(host["panoptic"][i])
                pred = self._prediction(fns, index, table, None if depth is None else depth[i],
                                        frame, host.get("raw"), i)
                self.timings.stitching += time.perf_counter() - t0
                self.timings.frames += 1
                index += 1
                tracking.advance(index)
                yield pred


class PredictionStream(Iterator[FramePrediction]):
    """The predictions of one video (an iterator), and the state to resume it.

    `state()` between two `next()` calls describes the tracking after the last yielded frame:
    a dict of numpy arrays (save it with `np.savez`) for `VideoPredictor.predict(...,
    resume=state)`.
    """

    def __init__(self, predictor: VideoPredictor, frames: Iterable[np.ndarray], resume):
        self._predictor = predictor
        self._tracker = None
        self._frame_hw: tuple[int, int] | None = None
        self._frames = 0
        self._iterator = predictor._stream(frames, resume, self)

    def __iter__(self) -> PredictionStream:
        return self

    def __next__(self) -> FramePrediction:
        return next(self._iterator)

    def close(self) -> None:
        """Stops the stream (closes the frame source)."""
        self._iterator.close()

    # Called by the predictor's generator.
    def bind(self, tracker, frame_hw: tuple[int, int], frames: int) -> None:
        self._tracker, self._frame_hw, self._frames = tracker, tuple(frame_hw), frames

    def advance(self, frames: int) -> None:
        self._frames = frames

    @property
    def frames(self) -> int:
        """Frames yielded so far, counting those of the run this one resumes."""
        return self._frames

    def state(self) -> dict[str, np.ndarray]:
        """Tracking state after the last yielded frame (numpy arrays only)."""
        return self.snapshot()()

    def snapshot(self):
        """A `() -> state()` of the state after the last yielded frame, O(1) to take and
        valid after the stream moves on (build the arrays only when saving)."""
        if self._tracker is None:
            raise ValueError("state(): no frame has been predicted yet")
        tracker, frames, frame_hw = self._tracker.snapshot(), self._frames, self._frame_hw
        p = self._predictor

        def build() -> dict[str, np.ndarray]:
            out = {f"tracker/{k}": v for k, v in tracker().items()}
            out.update({
                "frames": np.int64(frames),
                "tracker": np.array(p.tracker),
                "stitching_mode": np.array(p.stitching_mode),
                "frame_hw": np.array(frame_hw, np.int64),
            })
            return out

        return build

    @property
    def num_tracks(self) -> int:
        """Track ids handed out so far in this video (0 before the first frame)."""
        if self._tracker is None:
            return 0
        if isinstance(self._tracker, stitching.VideoStitcher) and self._tracker.mode == "reference":
            return self._tracker.max_track_id
        return self._tracker.num_tracks

    @staticmethod
    def tracker_state(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("tracker/")}

    @staticmethod
    def check(state: dict[str, np.ndarray], predictor: VideoPredictor,
              frame_hw: tuple[int, int]) -> None:
        """Raises ValueError when `state` cannot continue with this predictor and frames."""
        for key in ("frames", "tracker", "stitching_mode", "frame_hw"):
            if key not in state:
                raise ValueError(f"resume state lacks {key!r}; is it a PredictionStream.state()?")
        saved = (str(state["tracker"]), str(state["stitching_mode"]))
        if saved != (predictor.tracker, predictor.stitching_mode):
            raise ValueError(
                f"resume state is of tracker/stitching mode {saved}, the predictor uses "
                f"{(predictor.tracker, predictor.stitching_mode)}"
            )
        if tuple(int(v) for v in state["frame_hw"]) != tuple(frame_hw):
            raise ValueError(
                f"resume state is of {tuple(state['frame_hw'].tolist())} frames, the input has "
                f"{tuple(frame_hw)} frames"
            )


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


@functools.lru_cache(maxsize=16)
def _device_functions(graphdef, geometry: video_io.FrameGeometry, labels: LabelConvention,
                      options: PostprocessOptions, return_depth: bool,
                      return_raw: bool = False) -> _DeviceFunctions:
    # Shared by predictors of equal model structure and settings (e.g. a new predictor per
    # evaluation round in training), so they compile once; weights are an argument.
    return _DeviceFunctions(graphdef, geometry, labels, options, return_depth, return_raw)


class _Functions:
    """What `VideoPredictor` runs for one frame size (static shapes): `prime`, `step` and `raw`
    (tracker "vip") or `single` (tracker "iou"), each `(weights, ...)`, and the host helpers."""

    geometry: video_io.FrameGeometry

    def prime_by_step(self, state, frame: np.ndarray, batch_size: int):
        """The cache of `frame` computed by `step` (a resumed run primes exactly as the
        interrupted one computed that frame): one step from a zero cache, outputs dropped."""
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                             self.cache_shape(state, frame[None]))
        _, cache = self.step(state, zeros, np.repeat(frame[None], batch_size, axis=0))
        return cache

    def cache_shape(self, state, frame: np.ndarray):
        """Shapes and dtypes of `prime`'s cache (the first of its outputs)."""
        return jax.eval_shape(self.prime, state, frame)[0]

    def labels_to_frame(self, labels: np.ndarray) -> np.ndarray:
        """Host: a `[resized_h, resized_w]` label map -> `[frame_h, frame_w]` (nearest)."""
        if self.geometry.needs_resize:
            return video_io.resize_nearest_np(labels, self.geometry.frame_hw)
        return labels


class _DeviceFunctions(_Functions):
    """The jitted device functions of a model, traced in this process. `state` is the
    `(weights, rest)` pair of `_split`."""

    def __init__(self, graphdef, geometry: video_io.FrameGeometry, labels: LabelConvention,
                 options: PostprocessOptions, return_depth: bool, return_raw: bool = False):
        self.geometry = geometry
        self._return_raw = return_raw
        self._graphdef = graphdef
        self._labels, self._options = labels, options
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
        return frames_to_model_input(frames, self.geometry)

    def _crop(self, labels: jax.Array) -> jax.Array:
        return labels[:, : self.geometry.resized_hw[0], : self.geometry.resized_hw[1]]

    def _values_to_frame(self, values: jax.Array) -> jax.Array:
        return values_to_frame(values, self.geometry)

    # --- model pieces ---------------------------------------------------------------------

    def _decode(self, model, features) -> dict:
        return decode_frame(model, features, self.geometry)

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

    def _model(self, state):
        from flax import nnx

        return nnx.merge(self._graphdef, *state)

    def _prime(self, state, frame: jax.Array):
        model = self._model(state)
        features = model.encode(self._to_model_input(frame))
        decoded = self._decode(model, features)
        return (features, decoded), self._depth(decoded)

    def _step(self, state, cache, frames: jax.Array):
        """Pairs (prev, n_0), (n_0, n_1), ... for the batch of new frames n_i."""
        model = self._model(state)
        prev_features, prev_decoded = cache
        features = model.encode(self._to_model_input(frames))
        decoded = self._decode(model, features)

        def shifted(prev, new):  # [prev, new_0, ..., new_{b-2}]: frame t of each pair.
            return jnp.concatenate([prev, new[:-1]], axis=0)

        features_t = jax.tree.map(shifted, prev_features, features)
        decoded_t = jax.tree.map(shifted, prev_decoded, decoded)
        outputs, _ = pair_panoptic(
            model, (features_t, decoded_t), (features, decoded), geometry=self.geometry,
            labels=self._labels, options=self._options,
        )
        depth = self._depth(decoded)
        if depth is not None:
            outputs["depth"] = depth
        if self._return_raw:
            outputs["raw"] = self._raw(decoded)
        new_cache = jax.tree.map(lambda x: x[-1:], (features, decoded))
        return outputs, new_cache

    def _single(self, state, frames: jax.Array):
        model = self._model(state)
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


# ---------------------------------------------------------------------------------------------
# Models and their weights.

_STREAMING_METHODS = ("encode", "decode_frame", "decode_next")


def _split(model: nnx.Module) -> tuple[Any, tuple[Any, Any]]:
    """An eval-mode model -> (graphdef, (weights, rest)): parameters and BatchNorm statistics,
    then everything else (RNG streams), which inference never reads."""
    # Imported here: a predictor started from the start-up cache never needs flax.
    from flax import nnx

    model.eval()
    graphdef, weights, rest = nnx.split(model, (nnx.Param, nnx.BatchStat), ...)
    return graphdef, (weights, rest)


def _settings_from_config(config: Any) -> dict[str, Any]:
    """`VideoPredictor` arguments a training config gives: dataset, eval size, post-processing,
    tracker, output stride."""
    from vipdl import from_config

    return dict(
        descriptor=from_config.descriptor(config),
        eval_crop_size_hw=from_config.eval_crop_size_hw(config),
        postprocess=from_config.postprocess_options(config),
        tracker="vip" if from_config.is_vip(config) else "iou",
        output_stride=from_config.model_config(config).output_stride,
    )


def _settings_to_dict(settings: dict[str, Any]) -> dict[str, Any]:
    crop = settings["eval_crop_size_hw"]
    return dict(descriptor=settings["descriptor"].to_dict(),
                eval_crop_size_hw=None if crop is None else list(crop),
                postprocess=dataclasses.asdict(settings["postprocess"]),
                tracker=settings["tracker"], output_stride=settings["output_stride"])


def _settings_from_dict(d: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        crop = d["eval_crop_size_hw"]
        return dict(descriptor=DatasetDescriptor.from_dict(d["descriptor"]),
                    eval_crop_size_hw=None if crop is None else tuple(int(v) for v in crop),
                    postprocess=PostprocessOptions(**d["postprocess"]),
                    tracker=str(d["tracker"]), output_stride=int(d["output_stride"]))
    except (KeyError, TypeError, ValueError) as e:
        raise predictor_cache.CacheError(f"{where}: bad predictor settings ({e})") from e


@dataclasses.dataclass(frozen=True)
class _CheckpointSource:
    """Where `VideoPredictor.from_checkpoint` takes a model from: a workdir's config or a config
    object, and a checkpoint path."""

    workdir: Path | None
    config: Any
    checkpoint: str | os.PathLike
    which: str

    def load_config(self) -> Any:
        if self.config is not None:
            return self.config
        from vipdl import checkpointing

        return checkpointing.load_config(self.workdir)

    def config_text(self) -> str:
        if self.config is not None:
            return self.config.to_json_best_effort(sort_keys=True)
        path = self.workdir / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; is {self.workdir} a vipdl training workdir?")
        return path.read_text()

    def step_dir(self) -> Path:
        found = predictor_cache.quick_step_dir(self.checkpoint, self.which)
        if found is not None:
            return found
        from vipdl import checkpointing

        return Path(checkpointing.resolve_step_dir(os.fspath(self.checkpoint), self.which))


@dataclasses.dataclass(frozen=True)
class _FunctionSpec:
    """Everything the device functions of one frame size depend on besides the weights."""

    names: tuple[str, ...]
    geometry: video_io.FrameGeometry
    labels: LabelConvention
    options: PostprocessOptions
    return_depth: bool
    return_raw: bool
    batch_size: int

    def key(self) -> str:
        return predictor_cache.function_key(dataclasses.asdict(self))


class _CachedWeights:
    """A checkpoint's weights read from the start-up cache (`vipdl.predictor_cache`), and its
    device functions: deserialized when the entry has them, else traced from the model (restored
    from the checkpoint only then), stored, and run in their deserialized form, so this run and
    the next compile the same program (one compilation-cache entry)."""

    def __init__(self, entry: predictor_cache.Entry, source: _CheckpointSource, step_dir: Path,
                 weights: list[np.ndarray], model: nnx.Module | None = None):
        """Raises `predictor_cache.CacheError` when the entry's settings cannot be read."""
        self.entry, self.source, self.step_dir = entry, source, step_dir
        self.settings = _settings_from_dict(  # `VideoPredictor` arguments.
            entry.settings, f"{entry.path or 'start-up cache entry'}/{predictor_cache.ENTRY_FILE}")
        self._weights = weights
        self._model = model

    @classmethod
    def open(cls, source: _CheckpointSource, store: predictor_cache.Store) -> _CachedWeights:
        """The entry of `source`'s checkpoint, created (from a restored model) when missing."""
        step_dir = source.step_dir()
        name = predictor_cache.entry_name(step_dir, source.config_text())
        entry = store.open(name)
        if entry is not None:
            try:
                return cls(entry, source, step_dir, entry.weights())
            except predictor_cache.CacheError as e:
                store.discard(entry.path, e)
        from vipdl import from_config

        config = source.load_config()
        model = from_config.restored_model(config, os.fspath(step_dir))
        settings = dict(_settings_to_dict(_settings_from_config(config)),
                        streaming=all(hasattr(model, m) for m in _STREAMING_METHODS))
        paths, leaves = _weight_leaves(model)
        weights = [np.asarray(w) for w in leaves]
        entry = store.create(name, settings=settings, weight_paths=paths, weights=weights,
                             source={"step_dir": os.fspath(step_dir)})
        return cls(entry, source, step_dir, weights, model)

    @property
    def missing_streaming_methods(self) -> list[str]:
        return [] if self.entry.settings.get("streaming") else list(_STREAMING_METHODS)

    def device_weights(self) -> list[jax.Array]:
        return [jax.device_put(w) for w in self._weights]

    def functions(self, spec: _FunctionSpec) -> _ExportedFunctions:
        key = spec.key()
        try:
            exported = self.entry.functions(key)
        except predictor_cache.CacheError as e:
            log.warning("start-up cache: %s; tracing again", e)
            exported = None
        if exported is None:
            blobs = {k: e.serialize() for k, e in _export_functions(self._live_model(), spec).items()}
            try:
                self.entry.store_functions(key, blobs)
            except OSError as e:  # A full or read-only disk costs the next run time only.
                log.warning("start-up cache: cannot store the traced functions: %s", e)
            exported = {k: jax.export.deserialize(bytearray(b)) for k, b in blobs.items()}
        return _ExportedFunctions(spec.geometry, exported)

    def _live_model(self) -> nnx.Module:
        if self._model is None:
            from vipdl import from_config

            model = from_config.restored_model(self.source.load_config(), os.fspath(self.step_dir))
            paths, _ = _weight_leaves(model)
            if tuple(paths) != self.entry.weight_paths:
                raise predictor_cache.CacheError(
                    f"{self.entry.path}: the cached weights do not match the model of the config "
                    "(delete the cache directory)")
            self._model = model
        return self._model


def _weight_leaves(model: nnx.Module) -> tuple[list[str], list[jax.Array]]:
    """The model's weights as ("a/b/kernel" paths, arrays), in `_split`'s flattening order."""
    _, (weights, _) = _split(model)
    flat = jax.tree_util.tree_flatten_with_path(weights)[0]
    paths = ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
             for path, _ in flat]
    return paths, [leaf for _, leaf in flat]


def _export_functions(model: nnx.Module, spec: _FunctionSpec) -> dict[str, jax.export.Exported]:
    """`jax.export`s `model`'s device functions for `spec`, the weights a flat list argument."""
    graphdef, (weights, rest) = _split(model)
    leaves, treedef = jax.tree.flatten(weights)
    fns = _DeviceFunctions(graphdef, spec.geometry, spec.labels, spec.options, spec.return_depth,
                           spec.return_raw)

    def state(w):
        return jax.tree.unflatten(treedef, w), rest

    w = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    h, wd = spec.geometry.frame_hw
    one = jax.ShapeDtypeStruct((1, h, wd, 3), jnp.uint8)
    batch = jax.ShapeDtypeStruct((spec.batch_size, h, wd, 3), jnp.uint8)
    out = {}
    if "prime" in spec.names:
        prime = jax.jit(lambda w, f: fns._prime(state(w), f))
        out["prime"] = jax.export.export(prime)(w, one)
        cache = jax.eval_shape(prime, w, one)[0]
        step = jax.jit(lambda w, c, f: fns._step(state(w), c, f))
        out["step"] = jax.export.export(step)(w, cache, batch)
        if "raw" in spec.names:
            out["raw"] = jax.export.export(jax.jit(fns._raw))(cache[1])
    if "single" in spec.names:
        single = jax.jit(lambda w, f: fns._single(state(w), f))
        out["single"] = jax.export.export(single)(w, batch)
    return out


class _ExportedFunctions(_Functions):
    """Device functions deserialized from the start-up cache (see `_export_functions`).

    Each is compiled (or loaded from the compilation cache) ahead of its first call, all at once
    in threads: XLA compiles without holding the GIL, so on a cold cache `step`, the largest,
    no longer waits for `prime` (1.3 s of a 2-core CPU start with the demo model).
    """

    def __init__(self, geometry: video_io.FrameGeometry,
                 exported: dict[str, jax.export.Exported]):
        self.geometry = geometry
        self._exported = exported
        pool = concurrent.futures.ThreadPoolExecutor(len(exported))
        self._compiled = {name: pool.submit(_compile_exported, e, donate_first_input=name == "step")
                          for name, e in exported.items()}
        pool.shutdown(wait=False)

    def __getattr__(self, name: str):
        """`prime`, `step`, `single`, `raw`: the compiled function (waits for its compilation)."""
        compiled = self.__dict__.get("_compiled", {})
        if name not in compiled:
            raise AttributeError(f"the cached functions hold no {name!r}")
        return compiled[name].result()

    def cache_shape(self, state, frame: np.ndarray):
        e = self._exported["prime"]
        return jax.tree.unflatten(e.out_tree, e.out_avals)[0]


def _compile_exported(exported: jax.export.Exported, donate_first_input: bool):
    """The compiled call of an exported function; `donate_first_input`: its argument after the
    weights (the feature cache of `step`, replaced by each call) is donated."""
    args, kwargs = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    call = jax.jit(exported.call, donate_argnums=(1,) if donate_first_input else ())
    return call.lower(*args, **kwargs).compile()


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


# ---------------------------------------------------------------------------------------------
# The per-pair computation as pure functions: `_DeviceFunctions` runs them with a feature cache,
# `vipdl.export` traces `pair_step` into a deployable artifact. The model code is imported only
# where it runs, so a predictor built from an export (`VideoPredictor.from_export`) never loads
# it (docs/export.md#runtime).


def frames_to_model_input(frames: jax.Array, geometry: video_io.FrameGeometry) -> jax.Array:
    """uint8 (or raw 0..255 float) `[b, frame_h, frame_w, 3]` -> float32 `[b, *padded_hw, 3]`.

    Resized down (align-corners bilinear) when the frame is larger than the model input, then
    padded bottom/right with `video_io.PAD_VALUE`, as `video_io.frame_to_model_input_np`.
    """
    from vipdl.models.layers import resize_align_corners

    g = geometry
    images = frames.astype(jnp.float32)
    if g.needs_resize:
        images = resize_align_corners(images, g.resized_hw)
    pad_h, pad_w = g.padded_hw[0] - g.resized_hw[0], g.padded_hw[1] - g.resized_hw[1]
    return jnp.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)),
                   constant_values=video_io.PAD_VALUE)


def values_to_frame(values: jax.Array, geometry: video_io.FrameGeometry) -> jax.Array:
    """float `[b, *padded_hw]` (e.g. depth) -> float32 `[b, *frame_hw]`: crop, resize back."""
    from vipdl.models.layers import resize_align_corners

    g = geometry
    values = values[:, : g.resized_hw[0], : g.resized_hw[1]].astype(jnp.float32)
    return resize_align_corners(values, g.frame_hw) if g.needs_resize else values


def decode_frame(model, features, geometry: video_io.FrameGeometry) -> dict:
    """The per-frame heads (`_FRAME_KEYS`) of encoded frames, at `geometry.padded_hw`."""
    out = model.decode_frame(features, geometry.padded_hw)
    return {k: v for k, v in out.items() if k in _FRAME_KEYS}


def pair_panoptic(model, encoded_t, encoded_t1, *, geometry: video_io.FrameGeometry,
                  labels: LabelConvention, options: PostprocessOptions
                  ) -> tuple[dict[str, jax.Array], jax.Array]:
    """The three label maps the host stitcher needs, for a batch of pairs (t, t+1).

    Args:
      model: a `ViPDeepLab` (uses `decode_next`).
      encoded_t, encoded_t1: `(features, decode_frame(...))` of frames t and t+1, batch b each.
      geometry: how the frames sit in the model input.
      labels, options: label convention and post-processing options.

    Returns:
      ({"panoptic": frame t's map, "concat_next": frame t+1's half of the two-frame canvas
      (ids shared with t), "next_panoptic": frame t+1's standalone map}, each int32
      `[b, *resized_hw]`; the next-frame offsets float32 `[b, *padded_hw, 2]`).
      Maps are cropped to the (resized) frame but not resized: the host stitches at model
      resolution, like the reference, and resizes the stitched map.
    """
    (features_t, decoded_t), (features_t1, decoded_t1) = encoded_t, encoded_t1
    next_offsets = model.decode_next(features_t, features_t1, geometry.padded_hw)
    if isinstance(next_offsets, dict):
        next_offsets = next_offsets[keys.PRED_NEXT_OFFSET_MAP]
    opts = dict(thing_ids=labels.thing_ids, label_divisor=labels.label_divisor,
                ignore_label=labels.ignore_label, options=options)

    def per_pair(pred_t, pred_t1, next_offset):
        panoptic_t, concat_next = two_frame.two_frame_panoptic(pred_t, pred_t1, next_offset, **opts)
        return panoptic_t, concat_next, _panoptic(pred_t1, **opts)

    maps = jax.vmap(per_pair)(decoded_t, decoded_t1, next_offsets)
    rh, rw = geometry.resized_hw
    names = ("panoptic", "concat_next", "next_panoptic")
    return {name: m[:, :rh, :rw] for name, m in zip(names, maps)}, next_offsets


def pair_step(model, frames_t: jax.Array, frames_t1: jax.Array, *,
              geometry: video_io.FrameGeometry, labels: LabelConvention,
              options: PostprocessOptions) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """Frames (t, t+1) -> the maps of `pair_panoptic`, encoding both frames in one batch.

    Args:
      frames_t, frames_t1: uint8 `[b, *geometry.frame_hw, 3]`.

    Returns:
      (the maps of `pair_panoptic` plus "depth" float32 `[b, *frame_hw]` of frame t+1 when the
      model predicts depth, as the live predictor returns it; the raw heads of the pair, at
      model resolution `[b, *padded_hw, ...]`: frame t's `_FRAME_KEYS` and
      `keys.PRED_NEXT_OFFSET_MAP`, as `model(concat(t, t+1))` returns them).
    """
    frames = jnp.concatenate([frames_t, frames_t1], axis=0)
    features = model.encode(frames_to_model_input(frames, geometry))
    decoded = decode_frame(model, features, geometry)
    # Split [2b, ...] as [2, b, ...]: also valid for a symbolic batch size b.
    halves = jax.tree.map(lambda x: x.reshape((2, -1) + x.shape[1:]), (features, decoded))
    first, second = (jax.tree.map(lambda x, i=i: x[i], halves) for i in (0, 1))
    maps, next_offsets = pair_panoptic(model, first, second, geometry=geometry, labels=labels,
                                       options=options)
    if keys.PRED_DEPTH in second[1]:
        maps["depth"] = values_to_frame(second[1][keys.PRED_DEPTH], geometry)
    raw = dict(first[1])
    raw[keys.PRED_NEXT_OFFSET_MAP] = next_offsets
    return maps, raw
