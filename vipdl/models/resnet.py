"""ResNet backbones in deeplab2's layout (docs/architecture.md#backbones), returning multi-scale endpoints.

deeplab2's ResNet-50 is a post-activation ResNet v1.5 with the max-pool removed: the stem conv
has stride 2 and the first block of every stage (stage 2 included) strides in its 3x3 conv.
Blocks return the un-activated residual sum; the next block (and the endpoint) applies ReLU.
`resnet50_beta` replaces the 7x7 stem by the three-conv Inception stem ending in 128 channels.
Output stride 16 or 8 turns the last stride(s) into atrous convolutions.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vipdl.models.layers import ConvBN

ENDPOINTS = ("res2", "res3", "res4", "res5")


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """Static architecture of a ResNet backbone.

    Attributes:
        stem: "resnet" (7x7/2 conv + BN) or "resnet_beta" (3x3/2, 3x3, 3x3 convs, BN + ReLU
            between them, BN at the end).
        stem_channels: output channels of each stem conv (one entry for "resnet", three for
            "resnet_beta").
        widths: bottleneck width of stages 2..5; stage outputs are 4x these.
        blocks: number of bottleneck blocks of stages 2..5.
    """

    stem: str
    stem_channels: tuple[int, ...]
    widths: tuple[int, int, int, int]
    blocks: tuple[int, int, int, int]

    def __post_init__(self):
        expected = {"resnet": 1, "resnet_beta": 3}
        if self.stem not in expected:
            raise ValueError(f"ResNetSpec.stem must be resnet or resnet_beta, got {self.stem!r}")
        if len(self.stem_channels) != expected[self.stem]:
            raise ValueError(
                f"ResNetSpec.stem_channels: {self.stem} needs {expected[self.stem]} entries, "
                f"got {self.stem_channels}"
            )
        if len(self.widths) != 4 or len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(
                f"ResNetSpec: widths and blocks need 4 entries (blocks >= 1), got "
                f"{self.widths} and {self.blocks}"
            )

    @property
    def endpoint_channels(self) -> dict[str, int]:
        return {name: 4 * w for name, w in zip(ENDPOINTS, self.widths)}


def tiny_spec(width: int = 16, blocks: tuple[int, int, int, int] = (1, 2, 2, 1)) -> ResNetSpec:
    """The small CPU backbone: a ResNet-beta with base width `width` (16 -> 64..512 channels).

    The stem is halved relative to the stage widths because at stride 2 it dominates the cost
    on CPU; the multi-scale structure (res2..res5 at strides 4..32) is the same as ResNet-50.
    """
    half = max(width // 2, 1)
    return ResNetSpec(
        stem="resnet_beta",
        stem_channels=(half, half, width),
        widths=(width, 2 * width, 4 * width, 8 * width),
        blocks=blocks,
    )


BACKBONES: dict[str, ResNetSpec] = {
    "resnet50": ResNetSpec("resnet", (64,), (64, 128, 256, 512), (3, 4, 6, 3)),
    "resnet50_beta": ResNetSpec("resnet_beta", (64, 64, 128), (64, 128, 256, 512), (3, 4, 6, 3)),
    "resnet_tiny": tiny_spec(),
}


def backbone_spec(
    name: str,
    *,
    width: int | None = None,
    blocks: tuple[int, int, int, int] | None = None,
) -> ResNetSpec:
    """Looks up a backbone by name; `width`/`blocks` override the tiny variant's knobs.

    `width` is only meaningful for "resnet_tiny" (the reference ResNets have fixed widths);
    `blocks` may override any of them.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}")
    spec = BACKBONES[name]
    if width is not None:
        if name != "resnet_tiny":
            raise ValueError(f"backbone_width only applies to resnet_tiny, not {name!r}")
        spec = tiny_spec(width, spec.blocks)
    if blocks is not None:
        spec = dataclasses.replace(spec, blocks=tuple(blocks))
    return spec


class Bottleneck(nnx.Module):
    """Post-activation bottleneck: `relu(x)` -> 1x1 -> 3x3 (stride, dilation) -> 1x1 (+ shortcut).

    Input is the previous block's un-activated sum `[b, h, w, in_channels]`; output the
    un-activated sum `[b, h/stride, w/stride, 4 * width]`. The last BN's gamma starts at 0.
    """

    def __init__(
        self,
        in_channels: int,
        width: int,
        *,
        stride: int,
        rate: int,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        out_channels = 4 * width
        self.stride = stride
        self.conv1 = ConvBN(in_channels, width, 1, dtype=dtype, rngs=rngs)
        self.conv2 = ConvBN(width, width, 3, stride=stride, rate=rate, dtype=dtype, rngs=rngs)
        self.conv3 = ConvBN(
            width, out_channels, 1, relu=False, zero_init_bn_scale=True, dtype=dtype, rngs=rngs
        )
        self.shortcut = (
            ConvBN(in_channels, out_channels, 1, stride=stride, relu=False, dtype=dtype, rngs=rngs)
            if in_channels != out_channels
            else None
        )

    def __call__(self, x: jax.Array, *, groups: int = 1) -> jax.Array:
        a = jax.nn.relu(x)
        if self.shortcut is not None:
            shortcut = self.shortcut(a, groups=groups)
        elif self.stride > 1:
            shortcut = a[:, :: self.stride, :: self.stride, :]
        else:
            shortcut = a
        y = self.conv1(a, groups=groups)
        y = self.conv2(y, groups=groups)
        y = self.conv3(y, groups=groups)
        return y + shortcut


class Stage(nnx.Module):
    """A group of bottleneck blocks; the first one carries the stride (or the atrous switch)."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        num_blocks: int,
        *,
        input_stride: int,
        output_stride: int,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        # deeplab2 axial_block_groups rule: stride only while the input stride is below the
        # target output stride; otherwise dilate by (accumulated original stride) / OS, with the
        # first block still using the rate of its input stride.
        current = input_stride
        blocks = []
        for i in range(num_blocks):
            stride = 2 if (i == 0 and input_stride < output_stride) else 1
            rate = current // output_stride if current > output_stride else 1
            blocks.append(
                Bottleneck(
                    in_channels if i == 0 else 4 * width,
                    width,
                    stride=stride,
                    rate=rate,
                    dtype=dtype,
                    rngs=rngs,
                )
            )
            if i == 0:
                current *= 2
        self.blocks = nnx.List(blocks)

    def __call__(self, x: jax.Array, *, groups: int = 1) -> jax.Array:
        for block in self.blocks:
            x = block(x, groups=groups)
        return x


class ResNet(nnx.Module):
    """Multi-scale ResNet encoder.

    `__call__(images [b, h, w, 3]) -> {"res2": [b, h/4, w/4, 4*w2], ..., "res5": [b, h/OS, ...]}`
    (sizes rounded up for odd inputs: 513 -> 257 -> 129 -> 65 -> 33 -> 17). Endpoints are
    `ReLU(stage output)`, in the compute `dtype`.
    """

    def __init__(
        self,
        spec: ResNetSpec,
        *,
        output_stride: int = 32,
        dtype: jnp.dtype = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.spec = spec
        self.output_stride = output_stride
        self.remat = remat
        if spec.stem == "resnet":
            self.stem = nnx.List(
                [ConvBN(3, spec.stem_channels[0], 7, stride=2, relu=False, dtype=dtype, rngs=rngs)]
            )
        else:
            c1, c2, c3 = spec.stem_channels
            self.stem = nnx.List(
                [
                    ConvBN(3, c1, 3, stride=2, dtype=dtype, rngs=rngs),
                    ConvBN(c1, c2, 3, dtype=dtype, rngs=rngs),
                    ConvBN(c2, c3, 3, relu=False, dtype=dtype, rngs=rngs),
                ]
            )
        in_channels = spec.stem_channels[-1]
        stages = []
        for i, (width, n) in enumerate(zip(spec.widths, spec.blocks)):
            stages.append(
                Stage(
                    in_channels,
                    width,
                    n,
                    input_stride=2 ** (i + 1),
                    output_stride=output_stride,
                    dtype=dtype,
                    rngs=rngs,
                )
            )
            in_channels = 4 * width
        self.stages = nnx.List(stages)

    @property
    def endpoint_channels(self) -> dict[str, int]:
        return self.spec.endpoint_channels

    def __call__(self, images: jax.Array, *, groups: int = 1) -> dict[str, jax.Array]:
        """Encodes normalised images `[b, h, w, 3]`; `groups` as in `BatchNorm`."""
        x = images
        for conv in self.stem:
            x = conv(x, groups=groups)
        endpoints = {}
        for name, stage in zip(ENDPOINTS, self.stages):
            if self.remat:
                # Recompute the stage's activations in the backward pass instead of storing them.
                x = nnx.remat(lambda s, y: s(y, groups=groups))(stage, x)
            else:
                x = stage(x, groups=groups)
            endpoints[name] = jax.nn.relu(x)
        return endpoints
