"""Wide-ResNet-41 in deeplab2's layout (SWideRNet-(1, 1, 1)), returning res2..res5 endpoints.

A 3x3/2 stem conv (64 channels, BN, no activation), then five residual stages. Stages 1-4 use
"basic" blocks (two 3x3 convs of equal width), stage 5 bottlenecks (1x1 -> 3x3 -> 1x1 at widths
f, 2f, 4f). Like the ResNets, blocks are post-activation: each takes the previous block's
un-activated sum and applies ReLU first, and the endpoints are the ReLU of the stage outputs.
Every residual branch goes through stochastic depth (drop path) in training. The facts and
numbers are in docs/architecture.md#backbones.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from vipdl.models.layers import ConvBN

ENDPOINTS = ("res2", "res3", "res4", "res5")


@dataclasses.dataclass(frozen=True)
class WideResNetSpec:
    """Static architecture of a Wide-ResNet backbone.

    Attributes:
        stem_channels: output channels of the 3x3/2 stem conv.
        filters: deeplab2's base width of stages 1..5; basic-block stages output 4x this (both
            convs at 4f), the bottleneck stage 5 uses f, 2f and 4f.
        blocks: number of residual blocks of stages 1..5.
        drop_path_keep_prob: keep probability of the deepest blocks (stride 32).
        drop_path_schedule: "linear" (keep probability falls linearly with the block's stride
            level, see `drop_path_keep_prob`) or "constant".
    """

    stem_channels: int = 64
    filters: tuple[int, int, int, int, int] = (32, 64, 128, 256, 512)
    blocks: tuple[int, int, int, int, int] = (3, 3, 6, 3, 3)
    drop_path_keep_prob: float = 0.8
    drop_path_schedule: str = "linear"

    def __post_init__(self):
        if len(self.filters) != 5 or len(self.blocks) != 5 or min(self.blocks) < 1:
            raise ValueError(
                f"WideResNetSpec: filters and blocks need 5 entries (blocks >= 1), got "
                f"{self.filters} and {self.blocks}"
            )
        if not 0.0 < self.drop_path_keep_prob <= 1.0:
            raise ValueError(
                f"WideResNetSpec.drop_path_keep_prob must be in (0, 1], got "
                f"{self.drop_path_keep_prob}"
            )
        if self.drop_path_schedule not in ("linear", "constant"):
            raise ValueError(
                f"WideResNetSpec.drop_path_schedule must be linear or constant, got "
                f"{self.drop_path_schedule!r}"
            )

    @property
    def endpoint_channels(self) -> dict[str, int]:
        return {name: 4 * f for name, f in zip(ENDPOINTS, self.filters[1:])}


# deeplab2 `wide_resnet41` as configured for Cityscapes-DVPS ViP-DeepLab (keep 0.8, linear).
WIDE_RESNET41 = WideResNetSpec()


def drop_path_keep_prob(spec: WideResNetSpec, stride: int) -> float:
    """Keep probability of a block whose (original, non-atrous) input stride is `stride`.

    deeplab2 applies drop path from stride 4 on; the "linear" schedule interpolates from 1 at
    stride 2 to `drop_path_keep_prob` at stride 32 in log2 steps: 0.95, 0.9, 0.85, 0.8 for
    strides 4, 8, 16, 32 with keep 0.8.
    """
    if stride < 4:
        return 1.0
    if spec.drop_path_schedule == "constant":
        return spec.drop_path_keep_prob
    level = math.log2(stride) - 1
    return 1.0 - (1.0 - spec.drop_path_keep_prob) * level / 4


class DropPath(nnx.Module):
    """Stochastic depth: zeroes whole samples of a residual branch with probability 1 - keep.

    Training: `x * mask / keep` with one Bernoulli(keep) draw per sample (broadcast over h, w,
    c); eval (`deterministic`, set by `.eval()` / `nnx.view`): identity.
    """

    def __init__(self, keep_prob: float, *, rngs: nnx.Rngs):
        self.keep_prob = keep_prob
        self.dropout = nnx.Dropout(1.0 - keep_prob, broadcast_dims=(1, 2, 3), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dropout(x)


class _ResidualBlock(nnx.Module):
    """`relu(x)` -> residual branch -> drop path, plus the (projected / subsampled) shortcut."""

    stride: int
    shortcut: ConvBN | None
    drop_path: DropPath | None

    def residual(self, a: jax.Array, groups: int) -> jax.Array:
        raise NotImplementedError

    def __call__(self, x: jax.Array, *, groups: int = 1) -> jax.Array:
        a = jax.nn.relu(x)
        if self.shortcut is not None:
            shortcut = self.shortcut(a, groups=groups)
        elif self.stride > 1:
            shortcut = a[:, :: self.stride, :: self.stride, :]
        else:
            shortcut = a
        y = self.residual(a, groups)
        if self.drop_path is not None:
            y = self.drop_path(y)
        return y + shortcut


class BasicBlock(_ResidualBlock):
    """Post-activation basic block: `relu(x)` -> 3x3 (stride, rate) -> 3x3 (rate2) (+ shortcut).

    `[b, h, w, in_channels]` (un-activated) -> `[b, h/stride, w/stride, channels]` (un-activated
    sum). The second conv's BN gamma starts at 0.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        stride: int,
        rate: int,
        second_rate: int,
        keep_prob: float,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        self.stride = stride
        self.conv1 = ConvBN(
            in_channels, channels, 3, stride=stride, rate=rate, dtype=dtype, rngs=rngs
        )
        self.conv2 = ConvBN(
            channels,
            channels,
            3,
            rate=second_rate,
            relu=False,
            zero_init_bn_scale=True,
            dtype=dtype,
            rngs=rngs,
        )
        self.shortcut = (
            ConvBN(in_channels, channels, 1, stride=stride, relu=False, dtype=dtype, rngs=rngs)
            if in_channels != channels
            else None
        )
        self.drop_path = DropPath(keep_prob, rngs=rngs) if keep_prob < 1.0 else None

    def residual(self, a: jax.Array, groups: int) -> jax.Array:
        return self.conv2(self.conv1(a, groups=groups), groups=groups)


class BottleneckBlock(_ResidualBlock):
    """Post-activation bottleneck `relu(x)` -> 1x1 (f) -> 3x3 (2f; stride, rate) -> 1x1 (4f).

    `[b, h, w, in_channels]` -> `[b, h/stride, w/stride, 4f]`; the last BN's gamma starts at 0.
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        *,
        stride: int,
        rate: int,
        keep_prob: float,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        out_channels = 4 * filters
        self.stride = stride
        self.conv1 = ConvBN(in_channels, filters, 1, dtype=dtype, rngs=rngs)
        self.conv2 = ConvBN(
            filters, 2 * filters, 3, stride=stride, rate=rate, dtype=dtype, rngs=rngs
        )
        self.conv3 = ConvBN(
            2 * filters,
            out_channels,
            1,
            relu=False,
            zero_init_bn_scale=True,
            dtype=dtype,
            rngs=rngs,
        )
        self.shortcut = (
            ConvBN(in_channels, out_channels, 1, stride=stride, relu=False, dtype=dtype, rngs=rngs)
            if in_channels != out_channels
            else None
        )
        self.drop_path = DropPath(keep_prob, rngs=rngs) if keep_prob < 1.0 else None

    def residual(self, a: jax.Array, groups: int) -> jax.Array:
        y = self.conv1(a, groups=groups)
        y = self.conv2(y, groups=groups)
        return self.conv3(y, groups=groups)


class WideStage(nnx.Module):
    """One stage of blocks at one resolution; the first block carries the stride (or dilation).

    deeplab2's rule: a stage strides only while its input stride is below the output stride;
    otherwise block i dilates by (original stride before block i) / OS. A basic block's second
    conv in the first block already uses the dilation of the stage's output.
    """

    def __init__(
        self,
        spec: WideResNetSpec,
        index: int,
        in_channels: int,
        *,
        output_stride: int,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        filters = spec.filters[index]
        # Stage 1 runs at the stem's stride 2 without striding; stages 2..5 halve.
        input_stride, stage_stride = (2, 1) if index == 0 else (2**index, 2)
        bottleneck = index == 4
        current = input_stride
        blocks = []
        for i in range(spec.blocks[index]):
            stride = stage_stride if (i == 0 and input_stride < output_stride) else 1
            rate = current // output_stride if current > output_stride else 1
            if i == 0 and input_stride * stage_stride > output_stride:
                second_rate = input_stride * stage_stride // output_stride
            else:
                second_rate = rate
            keep = drop_path_keep_prob(spec, current)
            block_in = in_channels if i == 0 else 4 * filters
            if bottleneck:
                block = BottleneckBlock(
                    block_in,
                    filters,
                    stride=stride,
                    rate=rate,
                    keep_prob=keep,
                    dtype=dtype,
                    rngs=rngs,
                )
            else:
                block = BasicBlock(
                    block_in,
                    4 * filters,
                    stride=stride,
                    rate=rate,
                    second_rate=second_rate,
                    keep_prob=keep,
                    dtype=dtype,
                    rngs=rngs,
                )
            blocks.append(block)
            if i == 0:
                current *= stage_stride
        self.blocks = nnx.List(blocks)

    def __call__(self, x: jax.Array, *, groups: int = 1) -> jax.Array:
        for block in self.blocks:
            x = block(x, groups=groups)
        return x


class WideResNet(nnx.Module):
    """Multi-scale Wide-ResNet encoder.

    `__call__(images [b, h, w, 3] in [-1, 1]) -> {"res2": [b, h/4, w/4, 4*f2], ...,
    "res5": [b, h/OS, w/OS, 4*f5]}` (sizes rounded up for odd inputs), `ReLU(stage output)` in
    the compute `dtype`. Stage 1's output (stride 2, deeplab2's `res1`) is not returned.
    The module starts in training mode (drop path active, batch statistics); `.eval()` for
    inference.
    """

    def __init__(
        self,
        spec: WideResNetSpec = WIDE_RESNET41,
        *,
        output_stride: int = 16,
        dtype: jnp.dtype = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.spec = spec
        self.output_stride = output_stride
        self.remat = remat
        self.stem = ConvBN(3, spec.stem_channels, 3, stride=2, relu=False, dtype=dtype, rngs=rngs)
        stages = []
        in_channels = spec.stem_channels
        for index in range(5):
            stages.append(
                WideStage(
                    spec, index, in_channels, output_stride=output_stride, dtype=dtype, rngs=rngs
                )
            )
            in_channels = 4 * spec.filters[index]
        self.stages = nnx.List(stages)

    @property
    def endpoint_channels(self) -> dict[str, int]:
        return self.spec.endpoint_channels

    def __call__(self, images: jax.Array, *, groups: int = 1) -> dict[str, jax.Array]:
        """Encodes normalised images `[b, h, w, 3]`; `groups` as in `BatchNorm`."""
        x = self.stem(images, groups=groups)
        endpoints = {}
        for index, stage in enumerate(self.stages):
            if self.remat:
                # Recompute the stage's activations in the backward pass instead of storing them.
                x = nnx.remat(lambda s, y: s(y, groups=groups))(stage, x)
            else:
                x = stage(x, groups=groups)
            if index >= 1:
                endpoints[ENDPOINTS[index - 1]] = jax.nn.relu(x)
        return endpoints
