"""ASPP and the Panoptic-DeepLab single decoder (docs/architecture.md#aspp, docs/architecture.md#decoder)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vipdl.models.layers import ConvBN, SeparableConvBN, resize_align_corners, scale_size


def aspp_pool_size(crop_size_hw: Sequence[int], output_stride: int) -> tuple[int, int]:
    """ASPP pooling window for a training crop: `int((s - 1) / OS + 1)` per axis.

    513x1025 at OS32 gives (17, 33), 385x1281 gives (13, 41) -- the size of res5 at that crop,
    so training sees global pooling while larger eval inputs get a sliding window (docs/architecture.md#aspp).
    """
    if len(crop_size_hw) != 2:
        raise ValueError(
            f"aspp_pool_size: crop_size_hw must be (height, width), got {crop_size_hw}"
        )
    return (
        scale_size(crop_size_hw[0], 1.0 / output_stride),
        scale_size(crop_size_hw[1], 1.0 / output_stride),
    )


def average_pool_valid(x: jax.Array, pool_hw: tuple[int, int]) -> jax.Array:
    """Stride-1 VALID average pooling `[b, h, w, c] -> [b, h - ph + 1, w - pw + 1, c]`.

    The window is clipped to the feature size, so a window at least as large as the map is
    global pooling (`[b, 1, 1, c]`). The reference would fail on such inputs; clipping lets
    inputs smaller than the training crop run.
    """
    h, w = x.shape[1:3]
    ph, pw = min(pool_hw[0], h), min(pool_hw[1], w)
    if (ph, pw) == (h, w):
        return jnp.mean(x, axis=(1, 2), keepdims=True, dtype=jnp.float32).astype(x.dtype)
    summed = jax.lax.reduce_window(
        x.astype(jnp.float32), 0.0, jax.lax.add, (1, ph, pw, 1), (1, 1, 1, 1), "VALID"
    )
    return (summed / (ph * pw)).astype(x.dtype)


class ASPP(nnx.Module):
    """Atrous spatial pyramid pooling over the high-level feature.

    Five branches of `channels` each -- 1x1 conv, three 3x3 atrous convs (`rates`), and average
    pooling -> 1x1 conv -> align-corners resize back -- concatenated, projected by a 1x1 conv and
    followed by dropout (training only). Every conv is conv + BN + ReLU.

    `pool_size_hw=None` pools globally; otherwise a fixed stride-1 VALID window (docs/architecture.md#aspp).
    `[b, h, w, in_channels] -> [b, h, w, channels]`.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 256,
        rates: Sequence[int] = (3, 6, 9),
        *,
        pool_size_hw: tuple[int, int] | None = None,
        dropout_rate: float = 0.1,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if len(rates) != 3:
            raise ValueError(f"ASPP needs exactly 3 atrous rates, got {rates}")
        self.pool_size_hw = None if pool_size_hw is None else tuple(pool_size_hw)
        self.conv1x1 = ConvBN(in_channels, channels, 1, dtype=dtype, rngs=rngs)
        self.atrous = nnx.List(
            [ConvBN(in_channels, channels, 3, rate=r, dtype=dtype, rngs=rngs) for r in rates]
        )
        self.pool_conv = ConvBN(in_channels, channels, 1, dtype=dtype, rngs=rngs)
        self.project = ConvBN(5 * channels, channels, 1, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h, w = x.shape[1:3]
        branches = [self.conv1x1(x)] + [conv(x) for conv in self.atrous]
        pool_hw = (h, w) if self.pool_size_hw is None else self.pool_size_hw
        pooled = self.pool_conv(average_pool_valid(x, pool_hw))
        branches.append(resize_align_corners(pooled, (h, w)).astype(pooled.dtype))
        y = self.project(jnp.concatenate(branches, axis=-1))
        return self.dropout(y)


class PanopticDeepLabDecoder(nnx.Module):
    """ASPP on the high-level feature, then one fusion step per low-level feature.

    For each low-level feature (coarser first, e.g. res3 then res2): project it by 1x1 conv,
    resize the running feature to its size (align-corners), concatenate and fuse with one 5x5
    separable conv. Output `[b, h_last, w_last, decoder_channels]` at the last feature's stride.
    """

    def __init__(
        self,
        high_channels: int,
        low_channels: Sequence[int],
        low_projections: Sequence[int],
        *,
        aspp_channels: int = 256,
        aspp_rates: Sequence[int] = (3, 6, 9),
        aspp_pool_size_hw: tuple[int, int] | None = None,
        decoder_channels: int = 256,
        dropout_rate: float = 0.1,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if len(low_channels) != len(low_projections):
            raise ValueError(
                f"decoder: {len(low_channels)} low-level features but "
                f"{len(low_projections)} projection widths"
            )
        self.aspp = ASPP(
            high_channels,
            aspp_channels,
            aspp_rates,
            pool_size_hw=aspp_pool_size_hw,
            dropout_rate=dropout_rate,
            dtype=dtype,
            rngs=rngs,
        )
        projections, fusions = [], []
        running = aspp_channels
        for cin, proj in zip(low_channels, low_projections):
            projections.append(ConvBN(cin, proj, 1, dtype=dtype, rngs=rngs))
            fusions.append(
                SeparableConvBN(running + proj, decoder_channels, 5, dtype=dtype, rngs=rngs)
            )
            running = decoder_channels
        self.projections = nnx.List(projections)
        self.fusions = nnx.List(fusions)

    def __call__(self, high: jax.Array, lows: Sequence[jax.Array]) -> jax.Array:
        """`high` `[b, h, w, c]`; `lows` ordered coarse to fine, each at least as large."""
        x = self.aspp(high)
        for low, project, fuse in zip(lows, self.projections, self.fusions):
            low = project(low)
            x = resize_align_corners(x, low.shape[1:3])
            x = fuse(jnp.concatenate([x, low.astype(x.dtype)], axis=-1))
        return x
