"""Prediction heads (docs/architecture.md#heads): 5x5 separable conv + BN + ReLU, then a 1x1 conv with bias."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vipdl.models.layers import SeparableConvBN, prediction_init


class PredictionHead(nnx.Module):
    """`[b, h, w, in_channels] -> [b, h, w, out_channels]` float32, no output activation.

    The final 1x1 conv (truncated normal stddev 0.01, zero bias) always runs in float32, even
    when the rest of the model computes in bfloat16: offsets reach hundreds of pixels, which
    bfloat16's 8-bit mantissa would quantise to whole pixels.
    """

    def __init__(
        self,
        in_channels: int,
        head_channels: int,
        out_channels: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.conv = SeparableConvBN(in_channels, head_channels, 5, dtype=dtype, rngs=rngs)
        self.final = nnx.Conv(
            head_channels,
            out_channels,
            (1, 1),
            use_bias=True,
            kernel_init=prediction_init,
            bias_init=nnx.initializers.zeros_init(),
            dtype=jnp.float32,
            param_dtype=jnp.float32,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.final(self.conv(x).astype(jnp.float32))
