"""The backbone factory: one name -> one encoder module (docs/architecture.md#backbones).

Every backbone is an `nnx.Module` with
  * `endpoint_channels: dict[str, int]` for "res2".."res5", and
  * `__call__(images [b, h, w, 3] normalised to [-1, 1], *, groups=1) -> {"res2": ..., "res5": ...}`
    at strides 4, 8, 16 and `output_stride` (sizes rounded up for odd inputs), in the compute
    dtype. `groups` splits the batch into interleaved groups whose BatchNorms keep separate
    statistics (ViP-DeepLab's two frames).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from vipdl.models import resnet

BACKBONES: tuple[str, ...] = tuple(sorted(resnet.BACKBONES))


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

    `width` and `blocks` are the tiny ResNet's knobs (see `resnet.backbone_spec`).
    """
    if name in resnet.BACKBONES:
        spec = resnet.backbone_spec(name, width=width, blocks=blocks)
        return resnet.ResNet(spec, output_stride=output_stride, dtype=dtype, remat=remat, rngs=rngs)
    raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {name!r}")
