"""The backbone factory: one name -> one encoder module (docs/architecture.md#backbones).

Every backbone is an `nnx.Module` with
  * `endpoint_channels: dict[str, int]` for "res2".."res5", and
  * `__call__(images [b, h, w, 3] normalised to [-1, 1], *, groups=1) -> {"res2": ..., "res5": ...}`
    at strides 4, 8, 16 and `output_stride` (sizes rounded up for odd inputs), in the compute
    dtype. `groups` splits the batch into interleaved groups whose BatchNorms keep separate
    statistics (ViP-DeepLab's two frames).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from vipdl.models import mobilenet, resnet, wide_resnet

BACKBONES: tuple[str, ...] = tuple(
    sorted((*resnet.BACKBONES, "wide_resnet41", *mobilenet.BACKBONES))
)


def create_backbone(
    name: str,
    *,
    output_stride: int,
    width: int | None = None,
    blocks: tuple[int, ...] | None = None,
    dtype: jnp.dtype = jnp.float32,
    remat: bool = False,
    rngs: nnx.Rngs,
) -> nnx.Module:
    """Builds the backbone `name` (one of `BACKBONES`).

    `width` and `blocks` are the tiny ResNet's knobs (see `resnet.backbone_spec`); for
    "wide_resnet41" `width` is the base width f (stage widths f..16f, stem 2f; deeplab2: 32)
    and `blocks` the five blocks-per-stage counts. MobileNets take neither.
    """
    if name in resnet.BACKBONES:
        spec = resnet.backbone_spec(name, width=width, blocks=blocks)
        return resnet.ResNet(spec, output_stride=output_stride, dtype=dtype, remat=remat, rngs=rngs)
    if name == "wide_resnet41":
        spec = wide_resnet.WIDE_RESNET41
        if width is not None:
            spec = dataclasses.replace(
                spec, stem_channels=2 * width, filters=tuple(width * 2**i for i in range(5))
            )
        if blocks is not None:
            spec = dataclasses.replace(spec, blocks=tuple(blocks))
        return wide_resnet.WideResNet(
            spec, output_stride=output_stride, dtype=dtype, remat=remat, rngs=rngs
        )
    if name in mobilenet.BACKBONES:
        if width is not None or blocks is not None:
            raise ValueError(
                f"backbone_width / backbone_blocks do not apply to {name!r} (got {width}, {blocks})"
            )
        return mobilenet.MobileNetV3(
            mobilenet.BACKBONES[name],
            output_stride=output_stride,
            dtype=dtype,
            remat=remat,
            rngs=rngs,
        )
    raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {name!r}")
