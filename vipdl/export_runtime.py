"""Running an exported model: the manifest and the StableHLO pair step (docs/export.md#runtime).

`vipdl.export` writes a directory holding the serialized computation and `manifest.json`. This
module is the small part a deployment needs to run a StableHLO export with jax: it reads and
checks the manifest, deserializes the computation with `jax.export`, checks the inputs, and
adapts the pair step to `vipdl.inference.VideoPredictor` (`VideoPredictor.from_export`), whose
host stitching then runs unchanged. It never imports the model code (`vipdl.models`) and needs
no checkpoint: the weights are constants inside the serialized computation.

The exported function (docs/export.md#inside): frames t and t+1, uint8 `[b, height, width, 3]`
each, named `frame_t` and `frame_t1` -> a dict of int32 label maps `panoptic` (frame t),
`concat_next` (frame t+1's half of the two-frame canvas, ids shared with t) and `next_panoptic`
(frame t+1 on its own), each `[b, resized_h, resized_w]`, plus `depth` (frame t+1, float32
`[b, height, width]`) for depth models and the `raw_*` heads when exported with raw outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vipdl import video_io
from vipdl.data.descriptors import DatasetDescriptor, LabelConvention
from vipdl.postprocess.panoptic import PostprocessOptions

MANIFEST_NAME = "manifest.json"
STABLEHLO_NAME = "model.stablehlo"
FORMATS = ("stablehlo", "saved_model")
MANIFEST_KIND = "vipdl-export"
MANIFEST_VERSION = 1
INPUT_NAMES = ("frame_t", "frame_t1")
MAP_NAMES = ("panoptic", "concat_next", "next_panoptic")
BATCH_SYMBOL = "b"  # The symbolic batch dimension in manifest shapes.


class ExportError(ValueError):
    """An export directory, its manifest or the inputs given to it are not what was expected."""


# ---------------------------------------------------------------------------------------------
# The manifest.


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, shape, dtype and meaning of one input or output of the exported function.

    Attributes:
      name: signature name (TF) / dict key (jax).
      shape: dimensions; the string `BATCH_SYMBOL` ("b") for a symbolic batch size.
      dtype: numpy dtype name, e.g. "uint8".
      description: what the tensor holds.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    description: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype} {_dims(self.shape)}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "description": self.description}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> TensorSpec:
        _require(d, ("name", "shape", "dtype"), where)
        shape = tuple(v if isinstance(v, str) else int(v) for v in d["shape"])
        return cls(str(d["name"]), shape, str(d["dtype"]), str(d.get("description", "")))


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Everything needed to call an export and to interpret its outputs (`manifest.json`).

    Attributes:
      format: "stablehlo" (`jax.export`) or "saved_model" (TensorFlow).
      artifact: path of the computation relative to the export directory ("model.stablehlo";
        "." for a SavedModel, which is the export directory itself).
      inputs, outputs: the signature, in call order / by name.
      batch: the fixed batch size, or None when the batch is symbolic.
      geometry: frame size the export takes, size after resizing, model input size.
      dataset: classes, colours, things, void label and label divisor of the predictions.
      postprocess: the Panoptic-DeepLab post-processing options compiled into the export.
      raw_outputs: whether the raw heads are outputs.
      platforms: XLA platforms the computation was lowered for ("cpu", "cuda", "tpu").
      custom_calls: custom-call targets found in the StableHLO (all on the allow-list).
      versions: vipdl, jax, jaxlib (and tensorflow) versions and the StableHLO target version.
      source: where the weights came from (workdir, checkpoint, model config); informational.
    """

    format: str
    artifact: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch: int | None
    geometry: video_io.FrameGeometry
    dataset: DatasetDescriptor
    postprocess: PostprocessOptions
    raw_outputs: bool = False
    platforms: tuple[str, ...] = ("cpu",)
    custom_calls: tuple[str, ...] = ()
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    source: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def labels(self) -> LabelConvention:
        return self.dataset.labels

    def output(self, name: str) -> TensorSpec | None:
        return next((o for o in self.outputs if o.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = self.dataset
        g = self.geometry
        return {
            "kind": MANIFEST_KIND,
            "manifest_version": MANIFEST_VERSION,
            "format": self.format,
            "artifact": self.artifact,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "batch": self.batch,
            "geometry": {"frame_hw": list(g.frame_hw), "resized_hw": list(g.resized_hw),
                         "padded_hw": list(g.padded_hw)},
            "dataset": {
                "name": d.name, "class_names": list(d.class_names),
                "colormap": [list(c) for c in d.colormap], "thing_ids": list(d.thing_ids),
                "ignore_label": d.ignore_label, "label_divisor": d.label_divisor,
                "annotation_stride": d.annotation_stride,
                "eval_window_frames": list(d.eval_window_frames),
                "has_depth": d.has_depth, "max_depth": d.max_depth,
            },
            "postprocess": dataclasses.asdict(self.postprocess),
            "raw_outputs": self.raw_outputs,
            "platforms": list(self.platforms),
            "custom_calls": list(self.custom_calls),
            "versions": dict(self.versions),
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = MANIFEST_NAME) -> Manifest:
        """Parses `to_dict`'s output; errors name `where` and the offending key."""
        if not isinstance(d, Mapping):
            raise ExportError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if d.get("kind") != MANIFEST_KIND:
            raise ExportError(f"{where}: 'kind' must be {MANIFEST_KIND!r}, got {d.get('kind')!r}"
                              " (not a vipdl export manifest)")
        version = d.get("manifest_version")
        if not isinstance(version, int) or version > MANIFEST_VERSION:
            raise ExportError(f"{where}: 'manifest_version' {version!r} is not supported by this "
                              f"vipdl (reads up to {MANIFEST_VERSION}); upgrade vipdl")
        _require(d, ("format", "artifact", "inputs", "outputs", "batch", "geometry", "dataset",
                     "postprocess"), where)
        if d["format"] not in FORMATS:
            raise ExportError(f"{where}: 'format' must be one of {FORMATS}, got {d['format']!r}")
        g, ds, p = d["geometry"], d["dataset"], d["postprocess"]
        _require(g, ("frame_hw", "resized_hw", "padded_hw"), f"{where}: 'geometry'")
        _require(ds, ("name", "class_names", "colormap", "thing_ids", "ignore_label",
                      "label_divisor"), f"{where}: 'dataset'")
        try:
            dataset = DatasetDescriptor(
                name=str(ds["name"]), class_names=tuple(ds["class_names"]),
                colormap=tuple(tuple(int(v) for v in c) for c in ds["colormap"]),
                thing_ids=tuple(int(t) for t in ds["thing_ids"]),
                ignore_label=int(ds["ignore_label"]), label_divisor=int(ds["label_divisor"]),
                annotation_stride=int(ds.get("annotation_stride", 1)),
                eval_window_frames=tuple(int(k) for k in ds.get("eval_window_frames", (1,))),
                has_depth=bool(ds.get("has_depth", False)),
                max_depth=float(ds.get("max_depth", 88.0)),
            )
            postprocess = PostprocessOptions(**p)
        except (TypeError, ValueError) as e:
            raise ExportError(f"{where}: bad 'dataset' or 'postprocess': {e}") from None
        batch = d["batch"]
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise ExportError(f"{where}: 'batch' must be null (symbolic) or >= 1, got {batch!r}")
        return cls(
            format=d["format"],
            artifact=str(d["artifact"]),
            inputs=tuple(TensorSpec.from_dict(s, f"{where}: 'inputs'") for s in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(s, f"{where}: 'outputs'") for s in d["outputs"]),
            batch=batch,
            geometry=video_io.FrameGeometry(*(tuple(int(v) for v in g[k])
                                              for k in ("frame_hw", "resized_hw", "padded_hw"))),
            dataset=dataset,
            postprocess=postprocess,
            raw_outputs=bool(d.get("raw_outputs", False)),
            platforms=tuple(d.get("platforms", ("cpu",))),
            custom_calls=tuple(d.get("custom_calls", ())),
            versions=dict(d.get("versions", {})),
            source=dict(d.get("source", {})),
        )

    def write(self, directory: str | os.PathLike) -> Path:
        from vipdl import formats

        path = Path(directory) / MANIFEST_NAME
        formats.atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def read(cls, directory: str | os.PathLike) -> Manifest:
        """The manifest of an export directory."""
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {directory} is not a vipdl export (scripts/export.py)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ExportError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data, where=str(path))


def _require(d: Mapping[str, Any], names: Sequence[str], where: str) -> None:
    if not isinstance(d, Mapping):
        raise ExportError(f"{where}: expected a JSON object, got {type(d).__name__}")
    missing = [n for n in names if n not in d]
    if missing:
        raise ExportError(f"{where}: missing key(s) {missing}")


def check_frames(specs: Sequence[TensorSpec], arrays: Sequence[Any]) -> list[np.ndarray]:
    """The arrays as numpy, after checking them against the input specs.

    Raises:
      ExportError: naming the input, the expected dtype and shape and what was given.
    """
    out = []
    batch = None
    for spec, array in zip(specs, arrays):
        array = np.asarray(array)
        want = [None if isinstance(s, str) else s for s in spec.shape]
        ok = array.dtype == np.dtype(spec.dtype) and array.ndim == len(want) and all(
            w is None or w == s for w, s in zip(want, array.shape))
        if not ok:
            raise ExportError(f"input {spec.name}: expected {spec.dtype} {_dims(spec.shape)}, "
                              f"got {array.dtype} {_dims(array.shape)}")
        if batch is not None and array.shape[0] != batch:
            raise ExportError(f"input {spec.name}: batch {array.shape[0]} differs from "
                              f"{specs[0].name}'s {batch}; pairs come as equal batches")
        batch = array.shape[0]
        out.append(array)
    return out


# ---------------------------------------------------------------------------------------------
# The StableHLO pair step.


class ExportedPairStep:
    """A StableHLO export loaded with `jax.export`: frames (t, t+1) -> the pair's label maps.

    Usage:
        step = ExportedPairStep.load("exports/synthetic")
        out = step(frame_t, frame_t1)  # uint8 [b, H, W, 3] each -> dict of arrays
    """

    def __init__(self, manifest: Manifest, exported: jax.export.Exported,
                 directory: str | os.PathLike | None = None):
        self.manifest = manifest
        self.exported = exported
        self.directory = None if directory is None else Path(directory)
        self._call = jax.jit(exported.call)
        self._functions: dict[bool, _PredictorFunctions] = {}

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ExportedPairStep:
        """Reads `directory/manifest.json` and deserializes the StableHLO next to it.

        Raises:
          FileNotFoundError: no manifest or artifact.
          ExportError: a SavedModel export, a manifest that does not match the artifact, or an
            artifact lowered for other platforms than this process's backend.
        """
        manifest = Manifest.read(directory)
        if manifest.format != "stablehlo":
            raise ExportError(
                f"{directory} holds a {manifest.format} export; VideoPredictor.from_export and "
                "ExportedPairStep run StableHLO exports (run a SavedModel with TensorFlow, "
                "docs/export.md#tensorflow)")
        path = Path(directory) / manifest.artifact
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (named by {MANIFEST_NAME})")
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
        except Exception as e:  # Expired, too new, or corrupt: jax raises several types.
            raise ExportError(
                f"{path}: jax {jax.__version__} cannot load it (exported with jax "
                f"{manifest.versions.get('jax', '?')}; artifacts load in jax releases up to 6 "
                f"months newer and 3 weeks older, docs/export.md#compatibility): {e}") from e
        backend = jax.default_backend()
        if backend not in exported.platforms:
            raise ExportError(
                f"{path} was lowered for {list(exported.platforms)}; this process runs on "
                f"{backend!r}; export again with --platforms including {backend}")
        got = [f"{a.dtype} {_dims(a.shape)}" for a in exported.in_avals]
        want = [f"{s.dtype} {_dims(s.shape)}" for s in manifest.inputs]
        if got != want:
            raise ExportError(f"{path}: inputs {got} do not match {MANIFEST_NAME}'s {want}")
        return cls(manifest, exported, directory)

    @property
    def descriptor(self) -> DatasetDescriptor:
        return self.manifest.dataset

    @property
    def geometry(self) -> video_io.FrameGeometry:
        return self.manifest.geometry

    @property
    def postprocess(self) -> PostprocessOptions:
        return self.manifest.postprocess

    def __call__(self, frame_t: Any, frame_t1: Any) -> dict[str, jax.Array]:
        """Runs the export on a batch of pairs (asynchronously, like any jax call).

        Args:
          frame_t, frame_t1: uint8 `[b, height, width, 3]`, `b` the exported batch size (any
            size if the batch is symbolic), height and width those of the export.

        Returns:
          The output dict of the manifest (`manifest.outputs`), as jax arrays.

        Raises:
          ExportError: wrong dtype or shape, naming the expected ones.
        """
        frame_t, frame_t1 = check_frames(self.manifest.inputs, (frame_t, frame_t1))
        return self._call(frame_t, frame_t1)

    def predictor_functions(self, frame_hw: tuple[int, int], *,
                            return_depth: bool = True) -> _PredictorFunctions:
        """The device functions `VideoPredictor` runs for frames of `frame_hw`.

        Raises:
          ExportError: the export takes frames of another size.
        """
        if tuple(frame_hw) != self.geometry.frame_hw:
            h, w = self.geometry.frame_hw
            raise ExportError(
                f"this export takes frames of {h}x{w} (height x width), the video's frames are "
                f"{frame_hw[0]}x{frame_hw[1]}; export again with --height {frame_hw[0]} "
                f"--width {frame_hw[1]}")
        if return_depth not in self._functions:
            self._functions[return_depth] = _PredictorFunctions(self, return_depth)
        return self._functions[return_depth]


def _dims(shape: Sequence[Any]) -> str:
    return f"[{', '.join(str(d) for d in shape)}]"


class _PredictorFunctions:
    """`vipdl.inference._DeviceFunctions`'s interface on top of an exported pair step.

    The live predictor caches the previous frame's features; here the cache is the previous
    frame itself and the export encodes both frames of each pair. The weights argument
    (`state`) is unused: they are inside the export.
    """

    def __init__(self, step: ExportedPairStep, return_depth: bool):
        self.geometry = step.geometry
        self._step = step
        self._depth = return_depth and step.manifest.output("depth") is not None

    def _pairs(self, frames_t: np.ndarray, frames_t1: np.ndarray) -> dict[str, jax.Array]:
        fixed = self._step.manifest.batch
        n = len(frames_t)
        if fixed is not None and n != fixed:  # Pad to the exported batch; sliced back below.
            if n > fixed:
                raise ExportError(f"this export takes batches of {fixed} pairs, got {n}; use "
                                  f"batch_size={fixed} or export with --batch symbolic")
            pad = [(0, fixed - n)] + [(0, 0)] * 3
            frames_t, frames_t1 = (np.pad(f, pad, mode="edge") for f in (frames_t, frames_t1))
        out = self._step(frames_t, frames_t1)
        names = MAP_NAMES + (("depth",) if self._depth else ())
        return {k: out[k][:n] for k in names}

    def prime(self, state, frame: np.ndarray):
        del state
        frame = np.asarray(frame)
        # Depth of frame 0 is frame t+1's depth of the pair (f0, f0).
        depth = self._pairs(frame, frame)["depth"] if self._depth else None
        return frame, depth

    def step(self, state, cache: np.ndarray, frames: np.ndarray):
        """Pairs (prev, n_0), (n_0, n_1), ... for the batch of new frames n_i."""
        del state
        frames = np.asarray(frames)
        frames_t = np.concatenate([cache, frames[:-1]], axis=0)
        return self._pairs(frames_t, frames), frames[-1:]

    def single(self, state, frames: np.ndarray):
        """Per-frame maps for the IoU tracker: frame t+1's standalone map of the pair (f, f)."""
        del state
        frames = np.asarray(frames)
        out = self._pairs(frames, frames)
        single = {"panoptic": out["next_panoptic"]}
        if self._depth:
            single["depth"] = out["depth"]
        return single

    def labels_to_frame(self, labels: np.ndarray) -> np.ndarray:
        """Host: a `[resized_h, resized_w]` label map -> `[frame_h, frame_w]` (nearest)."""
        return video_io.labels_to_frame_np(labels, self.geometry)
