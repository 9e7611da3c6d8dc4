"""MobileNetV3-Large / -Small in deeplab2's layout, returning res2..res5 endpoints.

A sequence of blocks: a 3x3/2 conv stem, inverted bottlenecks (optional 1x1 expansion ->
k x k depthwise -> optional squeeze-and-excite -> linear 1x1 projection, identity shortcut when
stride 1 and widths match), and a final 1x1 conv. Activations are ReLU or hard-swish per
block. deeplab2 takes an inverted bottleneck's endpoint from inside the block: the activated
depthwise output (the widest tensor of the block), not the projected block output; a plain conv
block's endpoint is its activated output. The facts and numbers are in
docs/architecture.md#backbones.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vipdl.models.layers import BatchNorm, ConvBN, DepthwiseConv, he_normal

ENDPOINTS = ("res2", "res3", "res4", "res5")


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One MobileNet block.

    Attributes:
        kind: "conv" (conv + BN + activation) or "ib" (inverted bottleneck).
        kernel: kernel size of the conv / the depthwise conv.
        stride: the block's stride (1 or 2) before any atrous conversion.
        filters: output channels before the width multiplier.
        activation: "relu" or "hard_swish".
        se_ratio: squeeze-and-excite reduction of the expanded width (None = no SE).
        expand_ratio: expanded width / input width of an inverted bottleneck.
        endpoint: whether this block gives the next "res<k>" endpoint.
    """

    kind: str
    kernel: int
    stride: int
    filters: int
    activation: str
    se_ratio: float | None = None
    expand_ratio: float | None = None
    endpoint: bool = False


def _conv(k, s, f, act, endpoint=False):
    return BlockSpec("conv", k, s, f, act, endpoint=endpoint)


def _ib(k, s, f, act, se, expand, endpoint=False):
    return BlockSpec("ib", k, s, f, act, se, expand, endpoint)


# MobileNetV3 block tables as deeplab2 defines them (Howard et al. 2019, Tables 1 and 2).
MOBILENET_V3_LARGE = (
    _conv(3, 2, 16, "hard_swish"),
    _ib(3, 1, 16, "relu", None, 1.0, endpoint=True),
    _ib(3, 2, 24, "relu", None, 4.0),
    _ib(3, 1, 24, "relu", None, 3.0, endpoint=True),
    _ib(5, 2, 40, "relu", 0.25, 3.0),
    _ib(5, 1, 40, "relu", 0.25, 3.0),
    _ib(5, 1, 40, "relu", 0.25, 3.0, endpoint=True),
    _ib(3, 2, 80, "hard_swish", None, 6.0),
    _ib(3, 1, 80, "hard_swish", None, 2.5),
    _ib(3, 1, 80, "hard_swish", None, 2.3),
    _ib(3, 1, 80, "hard_swish", None, 2.3),
    _ib(3, 1, 112, "hard_swish", 0.25, 6.0),
    _ib(3, 1, 112, "hard_swish", 0.25, 6.0, endpoint=True),
    _ib(5, 2, 160, "hard_swish", 0.25, 6.0),
    _ib(5, 1, 160, "hard_swish", 0.25, 6.0),
    _ib(5, 1, 160, "hard_swish", 0.25, 6.0),
    _conv(1, 1, 960, "hard_swish", endpoint=True),
)
MOBILENET_V3_SMALL = (
    _conv(3, 2, 16, "hard_swish", endpoint=True),
    _ib(3, 2, 16, "relu", 0.25, 1.0, endpoint=True),
    _ib(3, 2, 24, "relu", None, 72.0 / 16),
    _ib(3, 1, 24, "relu", None, 88.0 / 24, endpoint=True),
    _ib(5, 2, 40, "hard_swish", 0.25, 4.0),
    _ib(5, 1, 40, "hard_swish", 0.25, 6.0),
    _ib(5, 1, 40, "hard_swish", 0.25, 6.0),
    _ib(5, 1, 48, "hard_swish", 0.25, 3.0),
    _ib(5, 1, 48, "hard_swish", 0.25, 3.0, endpoint=True),
    _ib(5, 2, 96, "hard_swish", 0.25, 6.0),
    _ib(5, 1, 96, "hard_swish", 0.25, 6.0),
    _ib(5, 1, 96, "hard_swish", 0.25, 6.0),
    _conv(1, 1, 576, "hard_swish", endpoint=True),
)
BACKBONES: dict[str, tuple[BlockSpec, ...]] = {
    "mobilenet_v3_large": MOBILENET_V3_LARGE,
    "mobilenet_v3_small": MOBILENET_V3_SMALL,
}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a width to the nearest multiple of `divisor` (at least `min_value`), never more
    than 10% below `value` (deeplab2 / TF-Slim rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def hard_swish(x: jax.Array) -> jax.Array:
    """`x * relu6(x + 3) / 6`, as deeplab2 computes it."""
    return x * jnp.clip(x + 3.0, 0.0, 6.0) * (1.0 / 6.0)


ACTIVATIONS = {"relu": jax.nn.relu, "hard_swish": hard_swish}


class SqueezeExcite(nnx.Module):
    """`x * sigmoid(W2 relu(W1 mean_hw(x) + b1) + b2)` with 1x1 convs (with bias).

    `[b, h, w, channels] -> [b, h, w, channels]`; deeplab2 gates with the plain sigmoid here.
    """

    def __init__(self, channels: int, reduced: int, *, dtype: jnp.dtype, rngs: nnx.Rngs):
        kwargs = dict(kernel_init=he_normal, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.reduce = nnx.Conv(channels, reduced, (1, 1), **kwargs)
        self.expand = nnx.Conv(reduced, channels, (1, 1), **kwargs)

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True, dtype=jnp.float32).astype(x.dtype)
        gate = jax.nn.sigmoid(self.expand(jax.nn.relu(self.reduce(pooled))))
        return x * gate.astype(x.dtype)


class InvertedBottleneck(nnx.Module):
    """Expand 1x1 (if expand_ratio > 1) -> depthwise k x k (stride, rate) -> SE -> project 1x1.

    `__call__(x [b, h, w, in]) -> (out [b, h/stride, w/stride, out], depthwise_out
    [b, h/stride, w/stride, expanded])`; BN after every conv, the activation after expansion and
    depthwise, none after the projection; identity shortcut when `residual`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        expand_ratio: float,
        kernel_size: int,
        stride: int,
        rate: int,
        se_ratio: float | None,
        activation: str,
        residual: bool,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        self.activation = activation
        self.residual = residual
        if expand_ratio > 1:
            expanded = make_divisible(in_channels * expand_ratio)
            self.expand = ConvBN(in_channels, expanded, 1, relu=False, dtype=dtype, rngs=rngs)
        else:
            expanded = in_channels
            self.expand = None
        self.expanded_channels = expanded
        self.depthwise = DepthwiseConv(
            expanded, kernel_size, stride=stride, rate=rate, dtype=dtype, rngs=rngs
        )
        self.depthwise_bn = BatchNorm(expanded, dtype=dtype)
        self.se = (
            SqueezeExcite(
                expanded, make_divisible(max(1, int(expanded * se_ratio))), dtype=dtype, rngs=rngs
            )
            if se_ratio
            else None
        )
        self.project = ConvBN(expanded, out_channels, 1, relu=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, groups: int = 1) -> tuple[jax.Array, jax.Array]:
        act = ACTIVATIONS[self.activation]
        y = act(self.expand(x, groups=groups)) if self.expand is not None else x
        depthwise_out = act(self.depthwise_bn(self.depthwise(y), groups=groups))
        y = self.se(depthwise_out) if self.se is not None else depthwise_out
        y = self.project(y, groups=groups)
        return (y + x if self.residual else y), depthwise_out


def _block_fn(block: nnx.Module, activation: str, groups: int):
    """`f(block, x) -> (output, endpoint)` for one block (the form `nnx.remat` wraps)."""
    if isinstance(block, InvertedBottleneck):
        return lambda b, x: b(x, groups=groups)

    def conv_block(b, x):
        y = ACTIVATIONS[activation](b(x, groups=groups))
        return y, y

    return conv_block


class MobileNetV3(nnx.Module):
    """Multi-scale MobileNetV3 encoder.

    `__call__(images [b, h, w, 3] in [-1, 1]) -> {"res2": [b, h/4, w/4, c2], ...,
    "res5": [b, h/OS, w/OS, c5]}` (sizes rounded up for odd inputs) in the compute `dtype`;
    channels in `endpoint_channels` (Large: 72, 120, 672, 960; Small: 16, 88, 144, 576).
    deeplab2's `res1` (stride 2) is not returned.

    Output stride 16 / 8: once the running stride reaches it, later blocks keep stride 1 and
    the blocks after a would-be stride-2 block dilate their depthwise convs by the skipped
    factor (the would-be strided block itself keeps rate 1), as deeplab2 does.
    """

    def __init__(
        self,
        blocks: tuple[BlockSpec, ...] = MOBILENET_V3_LARGE,
        *,
        output_stride: int = 32,
        width_multiplier: float = 1.0,
        dtype: jnp.dtype = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if sum(b.endpoint for b in blocks) != 5 or not blocks[-1].endpoint:
            raise ValueError("MobileNetV3: blocks need 5 endpoints, the last block being one")
        self.output_stride = output_stride
        self.remat = remat
        current_stride, rate, in_channels = 1, 1, 3
        modules, activations, endpoints, channels = [], [], [], {}
        for spec in blocks:
            if current_stride == output_stride:
                layer_stride, layer_rate = 1, rate
                rate *= spec.stride
            else:
                layer_stride, layer_rate = spec.stride, 1
                current_stride *= spec.stride
            filters = make_divisible(spec.filters * width_multiplier, 8, min_value=8)
            if spec.kind == "conv":
                block = ConvBN(
                    in_channels,
                    filters,
                    spec.kernel,
                    stride=layer_stride,
                    rate=layer_rate,
                    relu=False,
                    dtype=dtype,
                    rngs=rngs,
                )
                endpoint_channels = filters
            elif spec.kind == "ib":
                block = InvertedBottleneck(
                    in_channels,
                    filters,
                    expand_ratio=spec.expand_ratio,
                    kernel_size=spec.kernel,
                    stride=layer_stride,
                    rate=layer_rate,
                    se_ratio=spec.se_ratio,
                    activation=spec.activation,
                    residual=spec.stride == 1 and in_channels == filters,
                    dtype=dtype,
                    rngs=rngs,
                )
                endpoint_channels = block.expanded_channels
            else:
                raise ValueError(f"MobileNetV3: block kind must be conv or ib, got {spec.kind!r}")
            modules.append(block)
            activations.append(spec.activation)
            name = None
            if spec.endpoint:
                # The first endpoint is deeplab2's res1 (stride 2), which the decoders never use.
                level = sum(b is not None for b in endpoints) + 1
                name = f"res{level}"
                if level >= 2:
                    channels[name] = endpoint_channels
            endpoints.append(name)
            in_channels = filters
        self.blocks = nnx.List(modules)
        self.activations = tuple(activations)
        self.endpoint_names = tuple(endpoints)
        self._endpoint_channels = tuple(channels.items())

    @property
    def endpoint_channels(self) -> dict[str, int]:
        return dict(self._endpoint_channels)

    def __call__(self, images: jax.Array, *, groups: int = 1) -> dict[str, jax.Array]:
        """Encodes normalised images `[b, h, w, 3]`; `groups` as in `BatchNorm`."""
        x = images
        endpoints = {}
        for block, act, name in zip(self.blocks, self.activations, self.endpoint_names):
            call = _block_fn(block, act, groups)
            if self.remat:
                # Recompute the block's activations in the backward pass instead of storing them.
                x, endpoint = nnx.remat(call)(block, x)
            else:
                x, endpoint = call(block, x)
            if name in ENDPOINTS:
                endpoints[name] = endpoint
        return endpoints
