"""Names of deeplab2's encoder variables -> paths of the matching vipdl variables.

deeplab2 (TF2) checkpoints name every variable by its object-graph path, e.g.
`encoder/_stage2/_block1/_conv1_bn_act/_conv/kernel/.ATTRIBUTES/VARIABLE_VALUE`. The functions
here take the part after `encoder/` and before `/.ATTRIBUTES/VARIABLE_VALUE`
(`_stage2/_block1/_conv1_bn_act/_conv/kernel`) and return the path of the corresponding variable
in `nnx.state(encoder)`, BatchNorm moving statistics included. The layout of every value is the
same in both frameworks (HWIO conv kernels, per-channel vectors) except depthwise kernels, which
deeplab2 stores as `[kh, kw, C, 1]` and vipdl as `[kh, kw, 1, C]` (see `to_vipdl_value`).
The architecture and naming facts are in docs/architecture.md#backbones.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vipdl.models import mobilenet, resnet, wide_resnet

Path = tuple  # a path into `nnx.state(module)`, e.g. ("stem", 0, "conv", "kernel")

# deeplab2 (Keras) BatchNorm variable -> vipdl `layers.BatchNorm` attribute.
_BN = {"gamma": "scale", "beta": "bias", "moving_mean": "mean", "moving_variance": "var"}


def _batch_norm(d2: str, path: Path) -> dict[str, Path]:
    return {f"{d2}/{k}": (*path, v) for k, v in _BN.items()}


def _conv_bn(d2: str, path: Path) -> dict[str, Path]:
    """deeplab2 `Conv2DSame` with BN (`<d2>/_conv`, `<d2>/_batch_norm`) -> vipdl `ConvBN`."""
    return {
        f"{d2}/_conv/kernel": (*path, "conv", "kernel"),
        **_batch_norm(f"{d2}/_batch_norm", (*path, "bn")),
    }


def _resnet_names(encoder: resnet.ResNet) -> dict[str, Path]:
    names: dict[str, Path] = {}
    if encoder.spec.stem == "resnet":
        # One 7x7 conv whose `_conv` / `_batch_norm` sit directly under `_stem`.
        names |= _conv_bn("_stem", ("stem", 0))
    else:
        for i, d2 in enumerate(("_conv1_bn_act", "_conv2_bn_act", "_conv3_bn")):
            names |= _conv_bn(f"_stem/{d2}", ("stem", i))
    for s, stage in enumerate(encoder.stages):
        for b, block in enumerate(stage.blocks):
            d2 = f"_stage{s + 2}/_block{b + 1}"
            path = ("stages", s, "blocks", b)
            names |= _conv_bn(f"{d2}/_conv1_bn_act", (*path, "conv1"))
            names |= _conv_bn(f"{d2}/_conv2_bn_act", (*path, "conv2"))
            names |= _conv_bn(f"{d2}/_conv3_bn", (*path, "conv3"))
            if block.shortcut is not None:
                names |= _conv_bn(f"{d2}/_shortcut", (*path, "shortcut"))
    return names


def _wide_resnet_names(encoder: wide_resnet.WideResNet) -> dict[str, Path]:
    names = _conv_bn("_stem", ("stem",))
    for s, stage in enumerate(encoder.stages):
        for b, block in enumerate(stage.blocks):
            d2 = f"_stage{s + 1}/_block{b + 1}"
            path = ("stages", s, "blocks", b)
            if isinstance(block, wide_resnet.BottleneckBlock):
                convs = ("_conv1_bn_act", "_conv2_bn_act", "_conv3_bn")
            else:
                convs = ("_conv1_bn_act", "_conv2_bn")
            for i, conv in enumerate(convs):
                names |= _conv_bn(f"{d2}/{conv}", (*path, f"conv{i + 1}"))
            if block.shortcut is not None:
                names |= _conv_bn(f"{d2}/_shortcut", (*path, "shortcut"))
    return names


def _mobilenet_names(encoder: mobilenet.MobileNetV3) -> dict[str, Path]:
    names: dict[str, Path] = {}
    for i, block in enumerate(encoder.blocks):
        d2, path = f"_blocks/{i}", ("blocks", i)
        if not isinstance(block, mobilenet.InvertedBottleneck):
            names |= _conv_bn(d2, path)
            continue
        if block.expand is not None:
            names |= _conv_bn(f"{d2}/_conv1_bn_act", (*path, "expand"))
        names[f"{d2}/_conv2_bn_act/_depthwise_conv/depthwise_kernel"] = (
            *path,
            "depthwise",
            "kernel",
        )
        names |= _batch_norm(f"{d2}/_conv2_bn_act/_batch_norm", (*path, "depthwise_bn"))
        if block.se is not None:
            for d2_conv, conv in (("_se_reduce", "reduce"), ("_se_expand", "expand")):
                for leaf in ("kernel", "bias"):
                    names[f"{d2}/_squeeze_excitation/{d2_conv}/{leaf}"] = (*path, "se", conv, leaf)
        names |= _conv_bn(f"{d2}/_conv3_bn", (*path, "project"))
    return names


def encoder_names(encoder: nnx.Module) -> dict[str, Path]:
    """{deeplab2 variable name relative to `encoder/`: path in `nnx.state(encoder)`}.

    Covers every `nnx.Param` and `nnx.BatchStat` of the encoder exactly once; the only other
    state, Wide-ResNet's drop-path RNG keys, has no deeplab2 counterpart. Supported: `resnet.ResNet` (resnet50, resnet50_beta, resnet_tiny), `WideResNet` and
    `MobileNetV3`.
    """
    if isinstance(encoder, resnet.ResNet):
        return _resnet_names(encoder)
    if isinstance(encoder, wide_resnet.WideResNet):
        return _wide_resnet_names(encoder)
    if isinstance(encoder, mobilenet.MobileNetV3):
        return _mobilenet_names(encoder)
    raise TypeError(f"encoder_names: no deeplab2 naming for {type(encoder).__name__}")


def _strip(name: str) -> str:
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    return name[: -len(suffix)] if name.endswith(suffix) else name


def to_vipdl_value(
    deeplab2_name: str, array: np.ndarray, target_shape: tuple[int, ...]
) -> np.ndarray:
    """Returns deeplab2 variable `deeplab2_name`'s value laid out as the vipdl variable.

    The only layout change is a depthwise kernel's `[kh, kw, C, 1]` -> `[kh, kw, 1, C]`; any
    other shape mismatch raises a ValueError naming the variable and both shapes.
    """
    array = np.asarray(array)
    target_shape = tuple(int(d) for d in target_shape)
    if array.shape == target_shape:
        return array
    leaf = _strip(deeplab2_name).rsplit("/", 1)[-1]
    if (
        leaf == "depthwise_kernel"
        and array.ndim == 4
        and array.shape[3] == 1
        and target_shape == (*array.shape[:2], 1, array.shape[2])
    ):
        return np.transpose(array, (0, 1, 3, 2))
    raise ValueError(
        f"deeplab2 variable {deeplab2_name!r}: shape {array.shape} does not fit the vipdl "
        f"variable of shape {target_shape}"
        + (" (depthwise kernels must be [kh, kw, C, 1])" if leaf == "depthwise_kernel" else "")
    )


def load_encoder_weights(
    encoder: nnx.Module, checkpoint: dict[str, np.ndarray], prefix: str = "encoder/"
) -> None:
    """Copies the `prefix` entries of a deeplab2 checkpoint `{key: array}` into `encoder` in place.

    Keys may carry the `/.ATTRIBUTES/VARIABLE_VALUE` suffix; entries outside `prefix` (decoders,
    `global_step`, optimizer slots) are ignored. Every encoder variable must be present and
    every `prefix` variable used, otherwise a ValueError lists the offenders.
    """
    names = encoder_names(encoder)
    given = {
        _strip(k)[len(prefix) :]: v
        for k, v in checkpoint.items()
        if k.startswith(prefix) and ".OPTIMIZER_SLOT" not in k
    }
    missing = sorted(set(names) - set(given))
    unused = sorted(set(given) - set(names))
    if missing or unused:
        raise ValueError(
            f"deeplab2 checkpoint does not match the {type(encoder).__name__} encoder: "
            f"missing {[prefix + k for k in missing[:5]]}{' ...' if len(missing) > 5 else ''} "
            f"({len(missing)}), unused {[prefix + k for k in unused[:5]]}"
            f"{' ...' if len(unused) > 5 else ''} ({len(unused)})"
        )
    for name, path in names.items():
        var = variable_at(encoder, path)
        value = to_vipdl_value(prefix + name, given[name], var.get_value().shape)
        var.set_value(jnp.asarray(value, var.get_value().dtype))


def variable_at(module: nnx.Module, path: Path) -> nnx.Variable:
    """The variable at `path` of `nnx.state(module)` (attribute names and list indices)."""
    node = module
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    return node
