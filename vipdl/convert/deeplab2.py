"""deeplab2 (TF2) checkpoints -> vipdl workdirs, strictly (docs/model_zoo.md).

A deeplab2 checkpoint names every variable by its object-graph path, e.g.
`semantic_decoder/_aspp/_aspp_conv1/_conv_bn_act/_conv/kernel/.ATTRIBUTES/VARIABLE_VALUE`. This
module maps every such key of a Panoptic-DeepLab or ViP-DeepLab model (or of an encoder-only
ImageNet checkpoint) to the vipdl variable it fills, checks that the two fit exactly, and writes
an ordinary vipdl workdir:

* every vipdl parameter and BatchNorm statistic is filled exactly once, with a value whose shape
  was checked against the vipdl variable;
* every checkpoint entry is either used or matched by an explicit ignore rule (`IGNORE_RULES`:
  optimizer state, step counters, the object graph); anything else is an error naming the keys;
* a checkpoint of another architecture (meta-architecture, backbone, depth head, number of
  classes) is refused before any tensor is read, with the configs that would match it.

The model is built abstractly (`nnx.eval_shape`) and filled one tensor at a time, so converting
holds about one copy of the weights in memory. How the mapping is proven to compute what deeplab2
computes: docs/model_zoo.md#how-the-conversion-is-verified.

    result = convert_checkpoint("ckpt/ckpt-60000", config, "runs/vip_r50")  # -> workdir
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from flax import nnx

from vipdl.convert import deeplab2_encoders

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
ENCODER_PREFIX = "encoder/"
# TF Model Garden's vision trainer stores the deeplab2 encoder under this prefix (deeplab2's
# runner_utils special-cases it the same way).
MODEL_GARDEN_ENCODER_PREFIX = "backbone/_encoder/"
CONVERSION_FILE = "deeplab2_conversion.json"

Path = tuple[Any, ...]  # a path into nnx.state(model): str attribute names and int list indices

_WEIGHTS = (nnx.Param, nnx.BatchStat)
_MAX_LISTED = 8

# (reason, predicate) for checkpoint entries that are not model variables. Everything a deeplab2
# trainer saves besides `model.checkpoint_items` falls under one of these.
IGNORE_RULES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("optimizer state", lambda k: k.startswith(("optimizer/", "backbone_optimizer/"))),
    ("optimizer slot", lambda k: "/.OPTIMIZER_SLOT/" in k),
    ("step counter", lambda k: k.startswith(("global_step/", "save_counter/"))),
    ("object graph", lambda k: k == "_CHECKPOINTABLE_OBJECT_GRAPH"),
)


# --------------------------------------------------------------------------------------------
# Reading checkpoints


class CheckpointSource(Protocol):
    """Read access to a checkpoint: key -> (shape, dtype) without reading values; one tensor."""

    name: str

    def variables(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]: ...

    def read(self, key: str) -> np.ndarray: ...


class TFCheckpoint:
    """A TF checkpoint opened with `tf.train.load_checkpoint` (reads one tensor per call)."""

    def __init__(self, reader: Any, prefix: str):
        self._reader = reader
        self.name = prefix

    def variables(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        shapes = self._reader.get_variable_to_shape_map()
        dtypes = self._reader.get_variable_to_dtype_map()
        return {
            k: (tuple(int(d) for d in shapes[k]), np.dtype(dtypes[k].as_numpy_dtype))
            for k in sorted(shapes)
        }

    def read(self, key: str) -> np.ndarray:
        return np.asarray(self._reader.get_tensor(key))


class ArrayCheckpoint:
    """An in-memory checkpoint `{key: array}`; values may be `jax.ShapeDtypeStruct` (shape only)."""

    def __init__(self, arrays: Mapping[str, Any], name: str = "<arrays>"):
        self._arrays = dict(arrays)
        self.name = name

    def variables(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in sorted(self._arrays.items())}

    def read(self, key: str) -> np.ndarray:
        value = self._arrays[key]
        if isinstance(value, jax.ShapeDtypeStruct):
            raise ValueError(f"{self.name}: {key} has a shape but no value")
        return np.asarray(value)


def _index_step(index_file: str) -> int:
    match = re.search(r"-(\d+)\.index$", index_file)
    return int(match.group(1)) if match else -1


def find_checkpoint_prefix(path: str | os.PathLike) -> str:
    """The TF checkpoint prefix meant by `path`.

    `path` is a prefix (`.../ckpt-60000`, with `ckpt-60000.index` next to it), its `.index` file,
    or a directory (an unpacked model-zoo archive): there the checkpoint its `checkpoint` state
    file names, else the `*.index` with the highest step.

    Raises:
      FileNotFoundError: nothing at `path`, or a directory without a checkpoint (the message lists
        what a checkpoint looks like).
    """
    path = os.path.abspath(os.fspath(path))
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    if path.endswith((".tar.gz", ".tgz", ".tar")) and os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is an archive; unpack it first (tar xzf {os.path.basename(path)}) and pass "
            "the unpacked directory"
        )
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        if os.path.isfile(state):
            with open(state) as f:
                match = re.search(r'^model_checkpoint_path:\s*"(.*)"', f.read(), re.M)
            if match:
                prefix = os.path.join(path, match.group(1))
                if os.path.isfile(prefix + ".index"):
                    return prefix
        indices = sorted(
            (f for f in os.listdir(path) if f.endswith(".index")),
            key=lambda f: (_index_step(f), f),
        )
        if indices:
            return os.path.join(path, indices[-1][: -len(".index")])
        raise FileNotFoundError(
            f"no TF checkpoint in directory {path}: expected files like ckpt-60000.index and "
            "ckpt-60000.data-00000-of-00001 (an unpacked deeplab2 model-zoo archive)"
        )
    raise FileNotFoundError(
        f"deeplab2 checkpoint {path} not found: give a checkpoint prefix (PREFIX.index must exist) "
        "or a directory holding one"
    )


def open_tf_checkpoint(path: str | os.PathLike) -> TFCheckpoint:
    """Opens a deeplab2 checkpoint (prefix or directory, see `find_checkpoint_prefix`).

    TensorFlow is imported here only: the rest of vipdl never needs it.
    """
    prefix = find_checkpoint_prefix(path)
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"cannot read TF checkpoint {prefix}: {e}") from None
    return TFCheckpoint(reader, prefix)


# --------------------------------------------------------------------------------------------
# deeplab2 names of vipdl variables

# deeplab2 (Keras) BatchNorm variable -> vipdl `layers.BatchNorm` attribute.
_BN = (("gamma", "scale"), ("beta", "bias"), ("moving_mean", "mean"), ("moving_variance", "var"))


def _batch_norm(d2: str, path: Path) -> dict[str, Path]:
    return {f"{d2}/{k}": (*path, v) for k, v in _BN}


def _conv_bn(d2: str, path: Path) -> dict[str, Path]:
    """deeplab2 `Conv2DSame` + BN (`_conv`, `_batch_norm`) -> vipdl `ConvBN` (`conv`, `bn`)."""
    return {f"{d2}/_conv/kernel": (*path, "conv", "kernel"), **_batch_norm(f"{d2}/_batch_norm",
                                                                           (*path, "bn"))}


def _separable(d2: str, path: Path) -> dict[str, Path]:
    """deeplab2 `SeparableConv2DSame` (`_depthwise`, `_pointwise`) -> vipdl `SeparableConvBN`."""
    return {
        f"{d2}/_depthwise/_depthwise_conv/depthwise_kernel": (*path, "depthwise", "kernel"),
        **_batch_norm(f"{d2}/_depthwise/_batch_norm", (*path, "depthwise_bn")),
        **_conv_bn(f"{d2}/_pointwise", (*path, "pointwise")),
    }


def _decoder(d2: str, path: Path, decoder: nnx.Module) -> dict[str, Path]:
    """deeplab2 `PanopticDeepLabSingleDecoder` -> vipdl `PanopticDeepLabDecoder`."""
    aspp = (*path, "aspp")
    names = {
        **_conv_bn(f"{d2}/_aspp/_conv_bn_act", (*aspp, "conv1x1")),
        **_conv_bn(f"{d2}/_aspp/_aspp_pool/_conv_bn_act", (*aspp, "pool_conv")),
        **_conv_bn(f"{d2}/_aspp/_proj_conv_bn_act", (*aspp, "project")),
    }
    for i in range(len(decoder.aspp.atrous)):
        names |= _conv_bn(f"{d2}/_aspp/_aspp_conv{i + 1}/_conv_bn_act", (*aspp, "atrous", i))
    # Low-level features in deeplab2's order (res3 first), numbered from 1.
    for i in range(len(decoder.projections)):
        names |= _conv_bn(f"{d2}/_low_level_conv{i + 1}", (*path, "projections", i))
        names |= _separable(f"{d2}/_fusion_conv{i + 1}/_conv1_bn_act", (*path, "fusions", i))
    return names


def _head(d2_without_last: str, d2_last: str, path: Path) -> dict[str, Path]:
    """deeplab2 head (`conv_block` + `final_conv`) -> vipdl `PredictionHead` (`conv`, `final`)."""
    return {
        **_separable(f"{d2_without_last}/_conv1_bn_act", (*path, "conv")),
        f"{d2_last}/kernel": (*path, "final", "kernel"),
        f"{d2_last}/bias": (*path, "final", "bias"),
    }


def model_names(model: nnx.Module) -> dict[str, Path]:
    """{deeplab2 variable name (no `/.ATTRIBUTES/...` suffix): path in `nnx.state(model)`}.

    Covers every parameter and BatchNorm statistic of a `PanopticDeepLab` / `ViPDeepLab` exactly
    once (checked); the encoder's names come from `deeplab2_encoders.encoder_names`.
    """
    names = {
        ENCODER_PREFIX + k: ("encoder", *p)
        for k, p in deeplab2_encoders.encoder_names(model.encoder).items()
    }
    names |= _decoder("semantic_decoder", ("semantic_decoder",), model.semantic_decoder)
    names |= _head("semantic_head_without_last_layer", "semantic_last_layer", ("semantic_head",))
    names |= _decoder("instance_decoder", ("instance_decoder",), model.instance_decoder)
    names |= _head("instance_center_head_without_last_layer", "instance_center_head_last_layer",
                   ("center_head",))
    names |= _head("instance_regression_head_without_last_layer",
                   "instance_regression_head_last_layer", ("offset_head",))
    if getattr(model, "depth_head", None) is not None:
        names |= _head("depth_head_without_last_layer", "depth_head_last_layer", ("depth_head",))
    if hasattr(model, "next_decoder"):
        names |= _decoder("next_instance_decoder", ("next_decoder",), model.next_decoder)
        names |= _head("next_instance_regression_head_without_last_layer",
                       "next_instance_regression_head_last_layer", ("next_offset_head",))
    _check_covers(names, model)
    return names


def _check_covers(names: dict[str, Path], model: nnx.Module) -> None:
    """The mapping must be a bijection onto the model's parameters and statistics."""
    paths = {tuple(p) for p, _ in nnx.to_flat_state(nnx.state(model, _WEIGHTS))}
    counts = collections.Counter(names.values())
    twice = sorted(_join(p) for p, n in counts.items() if n > 1)
    uncovered = sorted(_join(p) for p in paths - set(counts))
    unknown = sorted(_join(p) for p in set(counts) - paths)
    if twice or uncovered or unknown:
        raise RuntimeError(
            f"deeplab2 naming of {type(model).__name__} is incomplete: "
            f"unnamed {_listed(uncovered)}, nonexistent {_listed(unknown)}, "
            f"named twice {_listed(twice)}"
        )


def _join(path: Iterable[Any]) -> str:
    return "/".join(str(p) for p in path)


def _listed(items: Sequence[str], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return f"[{shown}{more}]" if items else "[]"


# --------------------------------------------------------------------------------------------
# Architectures: what a checkpoint holds, what a config builds, which configs match


META_ARCHS = {"vip_deeplab": "ViP-DeepLab", "panoptic_deeplab": "Panoptic-DeepLab",
              "encoder_only": "encoder only (ImageNet backbone)"}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What a checkpoint holds or a model is, as far as the weights tell.

    Output stride, ASPP rates and the training crop change no weight shape, so they cannot be
    read from a checkpoint; the configs carry them (docs/model_zoo.md).

    Attributes:
      meta_arch: "vip_deeplab", "panoptic_deeplab" or "encoder_only".
      backbone: vipdl backbone name whose deeplab2 variables the checkpoint's encoder has exactly;
        None if none does (`encoder_kind` then describes it).
      encoder_kind: a description of the encoder from its key names (stem, stages/blocks).
      use_depth: has a depth head.
      num_classes: semantic classes (None for encoder-only checkpoints).
    """

    meta_arch: str
    backbone: str | None
    encoder_kind: str
    use_depth: bool = False
    num_classes: int | None = None

    def describe(self) -> str:
        backbone = self.backbone or f"unrecognised ({self.encoder_kind})"
        if self.meta_arch == "encoder_only":
            return f"{META_ARCHS[self.meta_arch]}, backbone {backbone}"
        depth = "with" if self.use_depth else "without"
        return (f"{META_ARCHS[self.meta_arch]} {depth} depth head, backbone {backbone}, "
                f"{self.num_classes} classes")


@dataclasses.dataclass(frozen=True)
class PublishedCheckpoint:
    """One checkpoint of deeplab2's model zoo and the vipdl configs that build its architecture."""

    archive: str  # File name users download, without ".tar.gz".
    meta_arch: str
    backbone: str
    configs: tuple[str, ...]
    use_depth: bool = False
    num_classes: int | None = 19


_PDL_BACKBONE_CONFIGS = {
    "resnet50": "configs/panoptic_deeplab_cityscapes_resnet50.py",
    "resnet50_beta": "configs/panoptic_deeplab_cityscapes_r50.py",
    "wide_resnet41": "configs/panoptic_deeplab_cityscapes_wr41.py",
    "mobilenet_v3_large": "configs/panoptic_deeplab_cityscapes_mnv3l.py",
    "mobilenet_v3_small": "configs/panoptic_deeplab_cityscapes_mnv3s.py",
}
_VIP_BACKBONE_CONFIGS = {
    "resnet50_beta": ("configs/vip_deeplab_cityscapes_dvps_r50.py",
                      "configs/vip_deeplab_semkitti_dvps_r50.py"),
    "wide_resnet41": ("configs/vip_deeplab_cityscapes_dvps_wr41.py",),
}


def _imagenet(archive: str, backbone: str) -> PublishedCheckpoint:
    configs = tuple(c for c in (_PDL_BACKBONE_CONFIGS.get(backbone),
                                *_VIP_BACKBONE_CONFIGS.get(backbone, ())) if c)
    return PublishedCheckpoint(archive, "encoder_only", backbone, configs, num_classes=None)


# docs/model_zoo.md lists the same checkpoints (tested).
PUBLISHED: tuple[PublishedCheckpoint, ...] = (
    PublishedCheckpoint("resnet50_beta_os32_vip_deeplab_cityscapes_dvps_train", "vip_deeplab",
                        "resnet50_beta", ("configs/vip_deeplab_cityscapes_dvps_r50.py",),
                        use_depth=True),
    PublishedCheckpoint("wide_resnet41_os16_vip_deeplab_cityscapes_dvps_train", "vip_deeplab",
                        "wide_resnet41", ("configs/vip_deeplab_cityscapes_dvps_wr41.py",),
                        use_depth=True),
    PublishedCheckpoint("resnet50_beta_os32_vip_deeplab_semkitti_dvps_train", "vip_deeplab",
                        "resnet50_beta", ("configs/vip_deeplab_semkitti_dvps_r50.py",),
                        use_depth=True),
    PublishedCheckpoint("mobilenet_v3_small_os16_panoptic_deeplab_cityscapes_dwo",
                        "panoptic_deeplab", "mobilenet_v3_small",
                        (_PDL_BACKBONE_CONFIGS["mobilenet_v3_small"],)),
    PublishedCheckpoint("mobilenet_v3_large_os16_panoptic_deeplab_cityscapes_dwo",
                        "panoptic_deeplab", "mobilenet_v3_large",
                        (_PDL_BACKBONE_CONFIGS["mobilenet_v3_large"],)),
    PublishedCheckpoint("resnet50_os32_panoptic_deeplab_cityscapes_trainfine", "panoptic_deeplab",
                        "resnet50", (_PDL_BACKBONE_CONFIGS["resnet50"],)),
    PublishedCheckpoint("resnet50_beta_os32_panoptic_deeplab_cityscapes_trainfine",
                        "panoptic_deeplab", "resnet50_beta",
                        (_PDL_BACKBONE_CONFIGS["resnet50_beta"],)),
    PublishedCheckpoint("wide_resnet41_os16_panoptic_deeplab_cityscapes_trainfine",
                        "panoptic_deeplab", "wide_resnet41",
                        (_PDL_BACKBONE_CONFIGS["wide_resnet41"],)),
    _imagenet("resnet50_imagenet1k", "resnet50"),
    _imagenet("resnet50_imagenet1k_strong_training_strategy", "resnet50"),
    _imagenet("resnet50_beta_imagenet1k_strong_training_strategy", "resnet50_beta"),
    _imagenet("wide_resnet41_imagenet1k_strong_training_strategy", "wide_resnet41"),
    _imagenet("mobilenet_v3_large_imagenet1k", "mobilenet_v3_large"),
    _imagenet("mobilenet_v3_small_imagenet1k", "mobilenet_v3_small"),
)


def matching_configs(arch: Architecture) -> list[str]:
    """vipdl configs (paths in the repository) that build the architecture `arch`."""
    out: list[str] = []
    for p in PUBLISHED:
        if p.backbone != arch.backbone:
            continue
        if arch.meta_arch == "encoder_only" or (
            (p.meta_arch, p.use_depth, p.num_classes)
            == (arch.meta_arch, arch.use_depth, arch.num_classes)
        ):
            out += [c for c in p.configs if c not in out]
    return out


def model_architecture(model: nnx.Module) -> Architecture:
    """The `Architecture` of a (possibly abstract) `PanopticDeepLab` / `ViPDeepLab`."""
    config = model.config
    return Architecture(
        meta_arch="vip_deeplab" if hasattr(model, "next_decoder") else "panoptic_deeplab",
        backbone=config.backbone,
        encoder_kind=config.backbone,
        use_depth=bool(config.use_depth),
        num_classes=int(config.num_classes),
    )


def _encoder_kind(names: Iterable[str]) -> str:
    """A description of a deeplab2 encoder from its variable names (relative to `encoder/`)."""
    names = set(names)
    if any(n.startswith("_blocks/") for n in names):
        blocks = {n.split("/")[1] for n in names if n.startswith("_blocks/")}
        return f"MobileNet-style, {len(blocks)} blocks"
    if any(n.startswith("_stem/_conv1_bn_act/") for n in names):
        return "ResNet with a three-conv (beta) stem"
    if any(n.startswith("_stage1/") for n in names):
        return "Wide-ResNet (stages 1-5)"
    if "_stem/_conv/kernel" in names:
        return "ResNet with a single-conv stem"
    return "no known stem" if names else "no encoder variables"


def _backbone_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """{deeplab2 encoder variable name: vipdl shape} of backbone `name` (built abstractly)."""
    from vipdl.models import backbones

    encoder = nnx.eval_shape(
        lambda: backbones.create_backbone(name, output_stride=32, rngs=nnx.Rngs(0))
    )
    flat = dict(nnx.to_flat_state(nnx.state(encoder, _WEIGHTS)))
    return {k: tuple(flat[p].get_value().shape)
            for k, p in deeplab2_encoders.encoder_names(encoder).items()}


def _fits(name: str, shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        _converted(name, np.broadcast_to(np.zeros((), np.float32), shape), target)
    except ValueError:
        return False
    return True


def _detect_backbone(encoder: Mapping[str, tuple[int, ...]]) -> str | None:
    """The vipdl backbone whose deeplab2 variables are exactly `encoder`'s (name -> shape)."""
    from vipdl.models import backbones

    for name in backbones.BACKBONES:
        shapes = _backbone_shapes(name)
        if set(shapes) == set(encoder) and all(_fits(k, encoder[k], shapes[k]) for k in encoder):
            return name
    return None


# --------------------------------------------------------------------------------------------
# Conversion


@dataclasses.dataclass
class Conversion:
    """The outcome of `convert_weights`.

    Attributes:
      weights: nested dict like `nnx.to_pure_dict(nnx.state(model, (nnx.Param,
        nnx.BatchStat)))` holding float32 numpy arrays; for encoder-only checkpoints only its
        "encoder" entry.
      architecture: what the checkpoint holds.
      used: checkpoint keys that filled a variable, sorted.
      ignored: {ignore reason: checkpoint keys}, per `IGNORE_RULES` and `ignore_prefixes`.
      num_values: number of scalars written.
    """

    weights: dict
    architecture: Architecture
    used: list[str]
    ignored: dict[str, list[str]]
    num_values: int

    @property
    def encoder_only(self) -> bool:
        return self.architecture.meta_arch == "encoder_only"

    @property
    def num_arrays(self) -> int:
        return len(self.used)


def _ignore_reason(key: str, ignore_prefixes: Sequence[str]) -> str | None:
    for reason, rule in IGNORE_RULES:
        if rule(key):
            return reason
    if any(key.startswith(p) for p in ignore_prefixes):
        return "ignored by request"
    return None


def _canonical(key: str) -> str | None:
    """The deeplab2 variable name of a checkpoint key (Model Garden prefix folded), or None."""
    if not key.endswith(SUFFIX):
        return None
    name = key[: -len(SUFFIX)]
    if name.startswith(MODEL_GARDEN_ENCODER_PREFIX):
        name = ENCODER_PREFIX + name[len(MODEL_GARDEN_ENCODER_PREFIX):]
    return name


def _converted(key: str, array: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray:
    name = key[: -len(SUFFIX)] if key.endswith(SUFFIX) else key
    if name.endswith("/depthwise_kernel") and not (array.ndim == 4 and array.shape[3] == 1):
        # deeplab2 always stores [kh, kw, C, 1]; a kernel already in vipdl's [kh, kw, 1, C]
        # layout would otherwise pass the shape check untransposed.
        raise ValueError(f"deeplab2 variable {key!r}: depthwise kernel of shape {array.shape}, "
                         "expected [kh, kw, C, 1]")
    return deeplab2_encoders.to_vipdl_value(key, array, target_shape)


def _checkpoint_architecture(
    names: Mapping[str, tuple[int, ...]], model_encoder: Mapping[str, tuple[int, ...]],
    model_backbone: str,
) -> Architecture:
    """What the checkpoint variables `names` (deeplab2 name -> shape) hold.

    `model_encoder` (deeplab2 name relative to `encoder/` -> vipdl shape) is the config's
    encoder: when the checkpoint's encoder fits it, the backbone is `model_backbone` and no
    other backbone needs to be built.
    """
    encoder = {k[len(ENCODER_PREFIX):]: s for k, s in names.items()
               if k.startswith(ENCODER_PREFIX)}
    if set(encoder) == set(model_encoder) and all(
        _fits(k, encoder[k], model_encoder[k]) for k in encoder
    ):
        backbone = model_backbone
    else:
        backbone = _detect_backbone(encoder) if encoder else None
    if any(k.startswith("next_instance_decoder/") for k in names):
        meta = "vip_deeplab"
    elif any(k.startswith(("semantic_decoder/", "semantic_last_layer/")) for k in names):
        meta = "panoptic_deeplab"
    else:
        meta = "encoder_only" if encoder else "panoptic_deeplab"
    # The bias tells the class count too when the kernel is what is missing.
    classes = names.get("semantic_last_layer/kernel") or names.get("semantic_last_layer/bias")
    return Architecture(
        meta_arch=meta,
        backbone=backbone,
        encoder_kind=_encoder_kind(encoder),
        use_depth="depth_head_last_layer/kernel" in names,
        num_classes=int(classes[-1]) if classes and meta != "encoder_only" else None,
    )


def _differences(
    found: Architecture, wanted: Architecture, shapes: Mapping[str, tuple[int, ...]],
    model_encoder: Mapping[str, tuple[int, ...]],
) -> dict[str, str]:
    """{aspect: the checkpoint entry that shows it} for every architecture difference."""
    out = {}
    full = found.meta_arch != "encoder_only"
    if full and found.meta_arch != wanted.meta_arch:
        has = "has" if found.meta_arch == "vip_deeplab" else "has no"
        out["meta-architecture"] = f"the checkpoint {has} next_instance_decoder/ variables"
    if full and found.use_depth != wanted.use_depth:
        has = "has" if found.use_depth else "has no"
        out["depth head"] = f"the checkpoint {has} depth_head_last_layer/kernel"
    if full and found.num_classes not in (None, wanted.num_classes):
        shape = list(shapes.get("semantic_last_layer/kernel", ()))
        out["number of classes"] = (f"semantic_last_layer/kernel {shape} in the checkpoint, "
                                    f"{wanted.num_classes} classes in the config")
    encoder = {k[len(ENCODER_PREFIX):]: v for k, v in shapes.items()
               if k.startswith(ENCODER_PREFIX)}
    # Kernels first: their shapes say most about the layer.
    order = lambda k: (not k.endswith("kernel"), k)
    extra = sorted(set(encoder) - set(model_encoder), key=order)
    missing = sorted(set(model_encoder) - set(encoder), key=order)
    if found.backbone != wanted.backbone and (found.backbone is not None or extra or missing):
        if extra:
            evidence = (f"{ENCODER_PREFIX}{extra[0]} {list(encoder[extra[0]])} is not in a "
                        f"{wanted.backbone} encoder ({len(extra)} such keys)")
        elif missing:
            evidence = (f"{ENCODER_PREFIX}{missing[0]} of a {wanted.backbone} encoder is missing "
                        f"({len(missing)} such keys)")
        else:
            key = next(k for k in sorted(encoder) if not _fits(k, encoder[k], model_encoder[k]))
            evidence = (f"{ENCODER_PREFIX}{key} is {list(encoder[key])} in the checkpoint, "
                        f"{list(model_encoder[key])} in a {wanted.backbone} encoder")
        out["backbone"] = evidence
    return out


def _mismatch_message(source: str, found: Architecture, wanted: Architecture,
                      details: list[str]) -> str:
    lines = [
        f"deeplab2 checkpoint {source} does not fit the config's model.",
        f"  checkpoint: {found.describe()}",
        f"  config:     {wanted.describe()}",
    ]
    configs = matching_configs(found)
    if configs:
        lines.append("  configs that build the checkpoint's architecture: " + ", ".join(configs))
    elif found.meta_arch != "encoder_only":
        overrides = [f"--config.model.meta_arch={found.meta_arch}",
                     f"--config.model.use_depth={found.use_depth}"]
        if found.backbone:
            overrides.insert(1, f"--config.model.backbone={found.backbone}")
        lines.append(f"  no config in configs/ builds it; try {' '.join(overrides)} with a "
                     f"dataset of {found.num_classes} classes")
    return "\n".join(lines + details)


def _checkpoint_keys(
    source: CheckpointSource, variables: Mapping[str, Any], ignore_prefixes: Sequence[str]
) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
    """Sorts the checkpoint's keys: ({deeplab2 name: key}, {ignore reason: keys}, keys that
    are neither a variable nor ignored)."""
    ignored: dict[str, list[str]] = {}
    names: dict[str, str] = {}  # deeplab2 name -> checkpoint key
    unknown: list[str] = []
    for key in variables:
        reason = _ignore_reason(key, ignore_prefixes)
        if reason is not None:
            ignored.setdefault(reason, []).append(key)
            continue
        name = _canonical(key)
        if name is None:
            unknown.append(key)
        elif name in names:
            raise ValueError(
                f"deeplab2 checkpoint {source.name}: {names[name]} and {key} hold the same "
                "variable (both encoder/ and backbone/_encoder/ keys)"
            )
        else:
            names[name] = key
    return names, ignored, unknown


def _variable_problems(
    variables: Mapping[str, Any], names: Mapping[str, str], unknown: Sequence[str],
    expected: Mapping[str, Path], targets: Mapping[Path, tuple[int, ...]],
) -> list[str]:
    """The message lines of every variable the model lacks, the checkpoint lacks or that does
    not fit (shape / dtype); empty when the checkpoint fills the model exactly."""
    missing = sorted(set(expected) - set(names))
    extra = sorted(set(names) - set(expected))
    bad = []
    for n in sorted(set(expected) & set(names)):
        key, (shape, dtype) = names[n], variables[names[n]]
        target = targets[expected[n]]
        if not np.issubdtype(dtype, np.floating):
            bad.append(f"    {key}: dtype {dtype}, expected floating point")
        elif not _fits(key, shape, target):
            bad.append(f"    {key}: checkpoint {list(shape)}, vipdl {_join(expected[n])} "
                       f"{list(target)}")
    details = []
    if missing:
        details.append(f"  missing in the checkpoint ({len(missing)}): "
                       + _listed([n + SUFFIX for n in missing]))
    if extra or unknown:
        keys = sorted([names[n] for n in extra] + list(unknown))
        details.append(f"  neither used nor ignored ({len(keys)}): {_listed(keys)}")
    if bad:
        details.append(f"  shape/dtype mismatches ({len(bad)}):")
        details += bad[:_MAX_LISTED] + ([f"    ... ({len(bad)} in all)"]
                                        if len(bad) > _MAX_LISTED else [])
    return details


def _filled_weights(
    source: CheckpointSource, model: nnx.Module, encoder_only: bool, names: Mapping[str, str],
    expected: Mapping[str, Path], targets: Mapping[Path, tuple[int, ...]],
) -> tuple[dict, int]:
    """The model's weight tree filled from the checkpoint, one tensor at a time, and the number
    of scalars written."""
    tree = nnx.to_pure_dict(nnx.state(model, _WEIGHTS))
    if encoder_only:
        tree = {"encoder": tree["encoder"]}
    filled: set[Path] = set()
    num_values = 0
    for n in sorted(expected):
        key, path = names[n], expected[n]
        if path in filled:
            raise RuntimeError(f"{_join(path)} filled twice (last from {key})")
        value = _converted(key, source.read(key), targets[path])
        value = np.ascontiguousarray(value, dtype=np.float32)
        if value.shape != targets[path]:
            raise ValueError(f"{key}: read shape {value.shape}, expected {targets[path]}")
        node = tree
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        filled.add(path)
        num_values += value.size
    left = [_join(p) for p, leaf in _flat_items(tree) if not isinstance(leaf, np.ndarray)]
    if left:
        raise RuntimeError(f"variables left unfilled: {_listed(left)}")
    return tree, num_values


def convert_weights(
    source: CheckpointSource,
    model: nnx.Module,
    *,
    ignore_prefixes: Sequence[str] = (),
) -> Conversion:
    """Maps a deeplab2 checkpoint onto `model`'s variables, strictly (module docstring).

    Args:
      source: the checkpoint (`open_tf_checkpoint`, or `ArrayCheckpoint` for arrays in memory).
      model: a `PanopticDeepLab` / `ViPDeepLab`, usually abstract (`nnx.eval_shape`); only its
        structure and shapes are used, it is not modified.
      ignore_prefixes: extra key prefixes to skip (e.g. a classifier head stored next to an
        ImageNet backbone); reported under "ignored by request".

    Returns:
      A `Conversion` whose `weights` fill every parameter and BatchNorm statistic of the model
      (of its encoder only, for encoder-only checkpoints).

    Raises:
      ValueError: the checkpoint holds another architecture (says which, and which configs match),
        lacks variables of the model, has entries neither used nor ignored, or a variable whose
        shape or dtype does not fit; the message names the keys (first few and the count).
    """
    variables = source.variables()
    names, ignored, unknown = _checkpoint_keys(source, variables, ignore_prefixes)
    shapes = {n: variables[k][0] for n, k in names.items()}

    expected = model_names(model)
    wanted = model_architecture(model)
    targets = {tuple(p): tuple(v.get_value().shape)
               for p, v in nnx.to_flat_state(nnx.state(model, _WEIGHTS))}
    model_encoder = {n[len(ENCODER_PREFIX):]: targets[p] for n, p in expected.items()
                     if n.startswith(ENCODER_PREFIX)}
    found = _checkpoint_architecture(shapes, model_encoder, wanted.backbone)
    encoder_only = found.meta_arch == "encoder_only"
    if encoder_only:
        expected = {n: p for n, p in expected.items() if n.startswith(ENCODER_PREFIX)}

    # Architecture first: one wrong choice makes hundreds of keys differ.
    aspects = _differences(found, wanted, shapes, model_encoder)
    if aspects:
        details = [f"  differs in: {', '.join(aspects)}"]
        details += [f"    {aspect}: {evidence}" for aspect, evidence in aspects.items()]
        raise ValueError(_mismatch_message(source.name, found, wanted, details))
    details = _variable_problems(variables, names, unknown, expected, targets)
    if details:
        raise ValueError(_mismatch_message(source.name, found, wanted, details))

    tree, num_values = _filled_weights(source, model, encoder_only, names, expected, targets)
    return Conversion(tree, found, sorted(names[n] for n in expected), ignored, num_values)


def _flat_items(tree: dict, prefix: Path = ()) -> Iterable[tuple[Path, Any]]:
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat_items(v, (*prefix, k))
        else:
            yield (*prefix, k), v


# --------------------------------------------------------------------------------------------
# Workdirs


def _replace_dir(new: str, target: str) -> None:
    """Renames `new` to `target`, removing an old `target` only once `new` is in place."""
    old = None
    if os.path.lexists(target):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-",
                               dir=os.path.dirname(target))
        os.rmdir(old)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def convert_checkpoint(
    checkpoint: str | os.PathLike | CheckpointSource,
    config: Any,
    workdir: str | os.PathLike,
    *,
    overwrite: bool = False,
    ignore_prefixes: Sequence[str] = (),
) -> Conversion:
    """Converts a deeplab2 checkpoint into a vipdl workdir for `config` (an ml_collections config).

    The workdir holds `config.json`, an Orbax checkpoint at step 0 in the layout training writes
    (model weights only, no optimizer or data state) and `deeplab2_conversion.json` (source and
    key counts). Full-model checkpoints load with `VideoPredictor.from_checkpoint(workdir)`,
    `scripts/evaluate.py --workdir` and `scripts/predict_video.py --workdir`; encoder-only
    (ImageNet) ones warm-start training through `--config.init.checkpoint=<workdir>`.

    Everything is written to a staging directory next to `workdir` and renamed at the end, so a
    failure leaves nothing half-written.

    Args:
      checkpoint: a deeplab2 checkpoint prefix or directory (or an opened `CheckpointSource`).
      config: the vipdl config whose model the checkpoint must fit (see `PUBLISHED`).
      workdir: the directory to create.
      overwrite: replace an existing `workdir`.
      ignore_prefixes: see `convert_weights`.

    Raises:
      FileExistsError: `workdir` exists and `overwrite` is False.
      FileNotFoundError: no checkpoint at `checkpoint`.
      ValueError: the checkpoint does not fit the config's model (see `convert_weights`).
    """
    from vipdl import checkpointing, from_config

    workdir = os.path.abspath(os.fspath(workdir))
    if os.path.lexists(workdir) and not overwrite:
        raise FileExistsError(f"workdir {workdir} already exists; pass --overwrite to replace it")
    source = (checkpoint if hasattr(checkpoint, "variables")
              else open_tf_checkpoint(checkpoint))
    model = from_config.abstract_model(config)
    conversion = convert_weights(source, model, ignore_prefixes=ignore_prefixes)

    parent = os.path.dirname(workdir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(workdir)}.partial-", dir=parent)
    try:
        # mkdtemp makes the directory private; a workdir gets the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        checkpointing.save_config(config, staging)
        checkpointing.save_model_weights(staging, conversion.weights, step=0)
        record = {
            "source": source.name,
            "architecture": dataclasses.asdict(conversion.architecture),
            "encoder_only": conversion.encoder_only,
            "keys_used": conversion.num_arrays,
            "keys_ignored": {k: len(v) for k, v in conversion.ignored.items()},
            "values_written": conversion.num_values,
        }
        with open(os.path.join(staging, CONVERSION_FILE), "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        _replace_dir(staging, workdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return conversion
