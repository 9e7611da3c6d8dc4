"""Export a ViP-DeepLab model with its post-processing: StableHLO or TF SavedModel.

What is exported is the per-pair step of `vipdl.inference.VideoPredictor`
(`vipdl.inference.pair_step`): frames t and t+1 as uint8 -> frame t's panoptic map, frame t+1's
half of the two-frame canvas and frame t+1's standalone map (everything the host stitcher
needs), plus frame t+1's depth for depth models and, on request, the raw heads. Conversion to
float, resizing and padding to the model input are inside, so a caller feeds plain frames. The
signature and meaning of every tensor are in `vipdl.export_runtime` and docs/export.md#inside.

* `format="stablehlo"`: `jax.export` serialization (`model.stablehlo`) with the weights as
  constants, symbolic batch by default. Runs with nothing but jax
  (`jax.export.deserialize(...).call(frame_t, frame_t1)`), or through
  `VideoPredictor.from_export`, which adds the host stitching without the model code.
* `format="saved_model"`: a TensorFlow SavedModel (`jax2tf`, weights as variables) with a
  `serving_default` signature, loadable with plain `tf.saved_model.load` and TF Serving.
  The StableHLO inside is serialized for the StableHLO version of the installed TensorFlow.

Both write `manifest.json` (`vipdl.export_runtime.Manifest`). Every export lists the custom
calls of its StableHLO and fails on any outside `ALLOWED_CUSTOM_CALLS` (docs/export.md#custom-calls).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import vipdl
from vipdl import formats, inference, keys, video_io
from vipdl.data.descriptors import DatasetDescriptor
from vipdl.export_runtime import (
    BATCH_SYMBOL,
    FORMATS,
    INPUT_NAMES,
    MAP_NAMES,
    STABLEHLO_NAME,
    ExportError,
    Manifest,
    TensorSpec,
)
from vipdl.postprocess.panoptic import PostprocessOptions

# Custom calls an export may contain. `shape_assertion` carries jax's shape-polymorphism checks
# (e.g. "b >= 1") and is evaluated by the loader itself (jax or TF's XlaCallModule) when the
# symbolic batch is bound; anything else would tie the artifact to one runtime's kernels.
ALLOWED_CUSTOM_CALLS = frozenset({"shape_assertion"})

_DESCRIPTIONS = {
    "frame_t": "frame t, RGB",
    "frame_t1": "frame t+1, RGB",
    "panoptic": "frame t: class * label_divisor + instance, at the resized frame size",
    "concat_next": "frame t+1 from the two-frame canvas: instance ids shared with frame t",
    "next_panoptic": "frame t+1 post-processed on its own",
    "depth": "frame t+1 depth in metres, at the frame size",
    "raw_semantic_probabilities": "frame t class probabilities (softmax of the logits)",
    "raw_center_heatmap": "frame t instance-center heatmap",
    "raw_offset_map": "frame t (dy, dx) from each pixel to its instance center",
    "raw_next_offset_map": "frame t+1 (dy, dx) from each pixel to its center in frame t",
    "raw_depth": "frame t depth in metres",
}
_RAW = {
    "raw_center_heatmap": keys.PRED_CENTER_HEATMAP,
    "raw_offset_map": keys.PRED_OFFSET_MAP,
    "raw_next_offset_map": keys.PRED_NEXT_OFFSET_MAP,
    "raw_depth": keys.PRED_DEPTH,
}


class TFLiteConversionError(ExportError):
    """TFLite conversion failed; `errors` holds the converter's error lines."""

    def __init__(self, message: str, errors: Sequence[str]):
        super().__init__(message)
        self.errors = tuple(errors)


# ---------------------------------------------------------------------------------------------
# The exported function.


def pair_function(model: nnx.Module, *, geometry: video_io.FrameGeometry,
                  descriptor: DatasetDescriptor, postprocess: PostprocessOptions,
                  raw_outputs: bool = False) -> tuple[Callable, list[jax.Array]]:
    """The function that is exported, with the weights as its first argument.

    Args:
      model: a `ViPDeepLab` (switched to eval mode).
      geometry: frame size, resized size and model input size.
      descriptor: the dataset (label convention) of the model.
      postprocess: post-processing options.
      raw_outputs: also return the raw heads (`raw_*`, see `_DESCRIPTIONS`).

    Returns:
      (`fn(weights, frame_t, frame_t1) -> {name: array}`, the weights: a flat list of the
      model's parameters and BatchNorm statistics). Frames are uint8 `[b, *frame_hw, 3]`.
    """
    if not all(hasattr(model, m) for m in ("encode", "decode_frame", "decode_next")):
        raise ExportError(
            f"export needs a ViP-DeepLab model (encode, decode_frame, decode_next); "
            f"{type(model).__name__} is a single-frame model")
    model.eval()
    graphdef, weights, rest = nnx.split(model, (nnx.Param, nnx.BatchStat), ...)
    leaves, treedef = jax.tree.flatten(weights)
    rh, rw = geometry.resized_hw

    def fn(leaves, frame_t, frame_t1):
        m = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)
        maps, raw = inference.pair_step(m, frame_t, frame_t1, geometry=geometry,
                                        labels=descriptor.labels, options=postprocess)
        out = dict(maps)
        if raw_outputs:
            logits = raw[keys.PRED_SEMANTIC_LOGITS].astype(jnp.float32)
            out["raw_semantic_probabilities"] = jax.nn.softmax(logits, axis=-1)[:, :rh, :rw]
            for name, key in _RAW.items():
                if key in raw:
                    out[name] = raw[key][:, :rh, :rw].astype(jnp.float32)
        return out

    return fn, leaves


def custom_call_targets(mlir_text: str) -> tuple[str, ...]:
    """The custom-call targets of a StableHLO module (`Exported.mlir_module()`), sorted."""
    pretty = re.findall(r"stablehlo\.custom_call\s+@([\w.$-]+)", mlir_text)
    generic = re.findall(r'call_target_name\s*=\s*"([^"]+)"', mlir_text)
    return tuple(sorted(set(pretty) | set(generic)))


def check_custom_calls(targets: Iterable[str], allowed: Iterable[str] | None = None) -> None:
    """Raises `ExportError` naming every target outside `allowed` (`ALLOWED_CUSTOM_CALLS`)."""
    allowed = ALLOWED_CUSTOM_CALLS if allowed is None else allowed
    bad = sorted(set(targets) - set(allowed))
    if bad:
        raise ExportError(
            f"the exported StableHLO calls custom targets {bad} outside the allow-list "
            f"{sorted(allowed)}; they would tie the artifact to one runtime's kernels "
            "(docs/export.md#custom-calls)")


# ---------------------------------------------------------------------------------------------
# Exporting.


def export(model: nnx.Module, out_dir: str | os.PathLike, *, descriptor: DatasetDescriptor,
           frame_hw: tuple[int, int], format: str = "stablehlo",
           eval_crop_size_hw: tuple[int, int] | None = None, output_stride: int = 32,
           postprocess: PostprocessOptions | None = None, batch: int | None = None,
           raw_outputs: bool = False, platforms: Sequence[str] = ("cpu",),
           overwrite: bool = False, source: dict[str, Any] | None = None) -> Manifest:
    """Exports `model`'s pair step for frames of `frame_hw` to `out_dir`.

    Args:
      model: a `ViPDeepLab` with its trained weights.
      out_dir: the export directory (written atomically: a failed export leaves no partial
        directory and keeps a previous export).
      descriptor: the model's dataset (classes, things, void, label divisor).
      frame_hw: size of the frames the export takes (fixed).
      format: "stablehlo" or "saved_model".
      eval_crop_size_hw: the model input size; larger frames are resized down inside the
        export (`vipdl.video_io.compute_geometry`). None: pad to `output_stride * k + 1`.
      output_stride: used when `eval_crop_size_hw` is None.
      postprocess: post-processing options (default: deeplab2's).
      batch: pairs per call; None = symbolic (any batch; StableHLO only, see docs/export.md).
      raw_outputs: also output the raw heads.
      platforms: XLA platforms to lower for ("cpu", "cuda", "tpu").
      overwrite: replace an existing non-empty `out_dir`.
      source: provenance for the manifest (workdir, checkpoint, ...).

    Returns:
      The written `Manifest`.

    Raises:
      ExportError: bad arguments, a custom call outside the allow-list, or a symbolic batch
        for a SavedModel.
      FileExistsError: `out_dir` holds files and `overwrite` is False.
    """
    if format not in FORMATS:
        raise ExportError(f"format must be one of {FORMATS}, got {format!r}")
    if batch is not None and (int(batch) != batch or batch < 1):
        raise ExportError(f"batch must be >= 1 or None (symbolic), got {batch!r}")
    if batch is None and format == "saved_model":
        raise ExportError(
            "a SavedModel needs a fixed batch (e.g. batch=1): TensorFlow's XlaCallModule cannot "
            "specialise a symbolic batch inside StableHLO's top_k decomposition "
            "(docs/export.md#limits)")
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    postprocess = PostprocessOptions() if postprocess is None else postprocess
    platforms = tuple(platforms)
    geometry = video_io.compute_geometry(tuple(frame_hw), eval_crop_size_hw,
                                         output_stride=output_stride)
    fn, weights = pair_function(model, geometry=geometry, descriptor=descriptor,
                                postprocess=postprocess, raw_outputs=raw_outputs)
    dim = jax.export.symbolic_shape(BATCH_SYMBOL)[0] if batch is None else int(batch)
    frame = jax.ShapeDtypeStruct((dim, *geometry.frame_hw, 3), jnp.uint8)
    versions = {"vipdl": vipdl.__version__, "jax": jax.__version__,
                "jaxlib": _jaxlib_version(), "stablehlo_producer": _stablehlo_version()}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        if format == "stablehlo":
            # Weights closed over: constants of the module, so the artifact is self-contained.
            exported = jax.export.export(
                jax.jit(lambda ft, ft1: fn(weights, ft, ft1)), platforms=platforms)(frame, frame)
            artifact = STABLEHLO_NAME
        else:
            specs = [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in weights]
            exported = jax.export.export(jax.jit(fn), platforms=platforms)(specs, frame, frame)
            artifact = "."
        calls = custom_call_targets(exported.mlir_module())
        check_custom_calls(calls)
        versions["calling_convention"] = str(exported.calling_convention_version)
        outputs = jax.tree.unflatten(exported.out_tree, exported.out_avals)
        if format == "stablehlo":
            formats.atomic_write_bytes(staging / artifact, bytes(exported.serialize()))
        else:
            versions.update(_write_saved_model(fn, weights, frame.shape, outputs, platforms,
                                               staging))
        manifest = Manifest(
            format=format,
            artifact=artifact,
            inputs=tuple(_spec(name, frame) for name in INPUT_NAMES),
            outputs=tuple(_spec(name, outputs[name]) for name in _output_order(outputs)),
            batch=None if batch is None else int(batch),
            geometry=geometry,
            dataset=descriptor,
            postprocess=postprocess,
            raw_outputs=raw_outputs,
            platforms=platforms,
            custom_calls=calls,
            versions=versions,
            # JSON-normalised (tuples -> lists) so that the manifest round-trips exactly.
            source=json.loads(json.dumps(source or {})),
        )
        manifest.write(staging)
        formats.replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def export_workdir(workdir: str | os.PathLike, out_dir: str | os.PathLike, *,
                   format: str = "stablehlo", frame_hw: tuple[int, int] | None = None,
                   batch: int | None = None, raw_outputs: bool = False,
                   checkpoint: str | os.PathLike | None = None, which: str = "latest",
                   platforms: Sequence[str] = ("cpu",), overwrite: bool = False) -> Manifest:
    """Exports the model of a training workdir (its config and checkpoint).

    Args:
      workdir: a training workdir (`config.json` + checkpoints), e.g. one written by
        `scripts/train.py` or by `scripts/convert_checkpoint.py`.
      frame_hw: frame size; default the config's `data.eval_crop_size_hw`.
      checkpoint, which: checkpoint directory (default the workdir) and "latest" / "best".
      Others: as `export`.
    """
    from vipdl import checkpointing, from_config

    workdir = Path(workdir)
    _check_out_dir(Path(out_dir), overwrite)  # Before the (slow) model load.
    config = checkpointing.load_config(str(workdir))
    if not from_config.is_vip(config):
        raise ExportError(
            f"{workdir}: config.model.meta_arch is {config.model.meta_arch!r}; export needs a "
            "ViP-DeepLab model ('vip_deeplab')")
    checkpoint = workdir if checkpoint is None else Path(checkpoint)
    # Shape-only model filled from the checkpoint: no initialiser runs.
    model = from_config.restored_model(config, str(checkpoint), which=which)
    crop = from_config.eval_crop_size_hw(config)
    model_config = from_config.model_config(config)
    return export(
        model, out_dir, descriptor=from_config.descriptor(config),
        frame_hw=crop if frame_hw is None else tuple(frame_hw), format=format,
        eval_crop_size_hw=crop, output_stride=model_config.output_stride,
        postprocess=from_config.postprocess_options(config), batch=batch,
        raw_outputs=raw_outputs, platforms=platforms, overwrite=overwrite,
        source={"workdir": str(workdir.resolve()), "checkpoint": str(Path(checkpoint).resolve()),
                "which": which, "model": dataclasses.asdict(model_config)},
    )


def convert_to_tflite(saved_model_dir: str | os.PathLike) -> bytes:
    """TFLite flatbuffer of a SavedModel export.

    Raises:
      TFLiteConversionError: naming the ops the converter rejected (docs/export.md#tflite).
    """
    import tensorflow as tf

    try:
        return tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()
    except Exception as e:  # The converter raises ConverterError, RuntimeError, ValueError...
        text = str(e)
        errors = sorted({m.strip() for m in re.findall(r"error: ([^\n]+)", text)
                         if "failed while converting" not in m})
        ops = sorted(set(re.findall(r"'([\w.]+)' op", "\n".join(errors))))
        raise TFLiteConversionError(
            f"TFLite conversion of {saved_model_dir} failed; blocking op(s): "
            f"{ops or 'unknown'}; converter errors: {errors or [text[-500:]]}", errors) from e


# ---------------------------------------------------------------------------------------------
# Helpers.


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already holds files; pass --overwrite to replace them")


def _spec(name: str, aval: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else BATCH_SYMBOL for d in aval.shape)
    return TensorSpec(name, shape, np.dtype(aval.dtype).name, _DESCRIPTIONS.get(name, ""))


def _output_order(outputs: dict[str, Any]) -> list[str]:
    order = [*MAP_NAMES, "depth", "raw_semantic_probabilities", *_RAW]
    return [n for n in order if n in outputs]


def _jaxlib_version() -> str:
    import jaxlib

    return getattr(jaxlib, "__version__", "unknown")


def _stablehlo_version() -> str:
    try:
        from jaxlib.mlir.dialects import stablehlo
    except ImportError:
        return "unknown"
    return stablehlo.get_current_version()


def _default_stablehlo_target() -> str | None:
    """The StableHLO version `jax.export` serializes for (about four weeks old)."""
    try:
        from jaxlib.mlir.dialects import stablehlo
    except ImportError:
        return None
    return stablehlo.get_version_from_compatibility_requirement(
        stablehlo.StablehloCompatibilityRequirement.WEEK_4)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(v) for v in version.split("."))


@contextlib.contextmanager
def _stablehlo_target(version: str):
    """Makes `jax.export` serialize for StableHLO `version` instead of its ~4-week-old default.

    TensorFlow's XlaCallModule deserializes with the StableHLO of its own release, which can be
    older than what jax targets (e.g. TF 2.21 reads 1.13.7, jax 0.10.2 writes 1.15.0 and its
    `composite_v2` op); downgrading the target makes the module loadable there.
    """
    from unittest import mock

    from jax._src.export import _export

    hlo = getattr(_export, "hlo", None)
    if not hasattr(hlo, "get_version_from_compatibility_requirement"):
        raise ExportError(
            f"jax {jax.__version__} no longer has the hook vipdl uses to target StableHLO "
            f"{version} for TensorFlow; use a jax version listed in pyproject.toml")
    with mock.patch.object(hlo, "get_version_from_compatibility_requirement",
                           lambda requirement: version):
        yield


def _write_saved_model(fn: Callable, weights: list[jax.Array], frame_shape: tuple[int, ...],
                       outputs: dict[str, Any], platforms: tuple[str, ...],
                       directory: Path) -> dict[str, str]:
    """Writes the TF SavedModel of `fn` to `directory`; returns version entries."""
    import tensorflow as tf
    from jax.experimental import jax2tf
    from tensorflow.compiler.mlir.stablehlo import stablehlo as tf_stablehlo

    # The older of TensorFlow's version and the one jax would target anyway.
    target = tf_stablehlo.get_current_version()
    default = _default_stablehlo_target()
    if default is not None and _version_tuple(default) < _version_tuple(target):
        target = default
    module = tf.Module()
    module.weights = [tf.Variable(np.asarray(w), trainable=False) for w in weights]
    converted = jax2tf.convert(fn, native_serialization_platforms=platforms,
                               with_gradient=False)
    spec = [tf.TensorSpec(frame_shape, tf.uint8, name=name) for name in INPUT_NAMES]

    @tf.function(autograph=False, input_signature=spec)
    def serve(frame_t, frame_t1):
        result = converted(module.weights, frame_t, frame_t1)
        return {name: result[name] for name in outputs}

    module.serve = serve
    with _stablehlo_target(target):  # jax2tf serializes while the signature is traced.
        signature = serve.get_concrete_function()
        tf.saved_model.save(module, str(directory),
                            signatures={"serving_default": signature})
    return {"tensorflow": tf.__version__, "stablehlo_target": target}
