"""Building blocks shared by the backbones, decoders and heads.

Conventions follow deeplab2 (docs/architecture.md#layer-conventions): convolutions pad explicitly and symmetrically
(`Conv2DSame`), conv -> BatchNorm -> ReLU, BatchNorm momentum 0.99 / epsilon 1e-3,
He-normal (truncated) conv kernels, Glorot-uniform depthwise kernels, and every bilinear
resize is align-corners.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Keras `he_normal`: truncated normal, fan_in, scale 2 (the stddev is corrected for truncation).
he_normal = nnx.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
# Keras `DepthwiseConv2D` default. Keras counts a (k, k, C, 1) kernel as fan_in = k*k*C and
# fan_out = k*k; Flax's (k, k, 1, C) grouped kernel gives the swapped pair, and Glorot only uses
# the sum, so the distribution is identical.
glorot_uniform = nnx.initializers.glorot_uniform()
# Final 1x1 prediction convs (deeplab2 `TruncatedNormal(stddev=0.01)`, uncorrected stddev).
prediction_init = nnx.initializers.truncated_normal(stddev=0.01)


def same_padding(kernel_size: int, rate: int = 1) -> tuple[int, int]:
    """Explicit `Conv2DSame` padding `(before, after)` for one spatial axis.

    deeplab2 pads `k_eff - 1` in total with the smaller half first, `k_eff = k + (k-1)(rate-1)`,
    for every stride. Unlike XLA "SAME" this never depends on the input size being odd, so
    strided convs stay aligned to the top-left pixel (pixels 0, 2, 4, ... survive).
    """
    k_eff = kernel_size + (kernel_size - 1) * (rate - 1)
    total = k_eff - 1
    return total // 2, total - total // 2


def scale_size(size: int, scale: float) -> int:
    """deeplab2 `scale_mutable_sequence` for one size: `int((size - 1) * scale + 1)`."""
    return int((float(size) - 1.0) * scale + 1.0)


# ----------------------------------------------------------------------------- resizing


def _align_corners_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lo, hi) and the weight of `hi` for an align-corners bilinear resize.

    Matches TF1 `resize_bilinear(align_corners=True)`: source = out_index * (in-1)/(out-1),
    computed in float32 as TF does.
    """
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0.0)
    src = np.arange(n_out, dtype=np.float32) * scale
    lo = np.clip(np.floor(src).astype(np.int32), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo.astype(np.float32)).astype(np.float32)
    return lo, hi, frac


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Dense `[n_out, n_in]` align-corners interpolation matrix (two non-zeros per row)."""
    lo, hi, frac = _align_corners_taps(n_in, n_out)
    matrix = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, lo), 1.0 - frac)
    np.add.at(matrix, (rows, hi), frac)
    return matrix


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _resize_axis_bilinear(x: jax.Array, axis: int, n_out: int) -> jax.Array:
    # Forward: two static gathers and a lerp, O(output) work.
    lo, hi, frac = _align_corners_taps(x.shape[axis], n_out)
    shape = [1] * x.ndim
    shape[axis] = n_out
    w = jnp.asarray(frac.reshape(shape), dtype=x.dtype)
    x_lo = jnp.take(x, jnp.asarray(lo), axis=axis)
    x_hi = jnp.take(x, jnp.asarray(hi), axis=axis)
    return x_lo + (x_hi - x_lo) * w


def _resize_axis_fwd(x, axis, n_out):
    return _resize_axis_bilinear(x, axis, n_out), x.shape[axis]


def _resize_axis_bwd(axis, n_out, n_in, g):
    # The transpose of a gather is a scatter-add, which is slow on CPU and TPU; the transpose of
    # the (tiny, static) interpolation matrix applied as a matmul is fast everywhere.
    matrix = jnp.asarray(_interpolation_matrix(n_in, n_out), dtype=g.dtype)
    g = jnp.moveaxis(g, axis, -1)
    return (jnp.moveaxis(g @ matrix, -1, axis),)


_resize_axis_bilinear.defvjp(_resize_axis_fwd, _resize_axis_bwd)


def _resize_axis_nearest(x: jax.Array, axis: int, n_out: int) -> jax.Array:
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0.0)
    # TF1 nearest with align_corners: roundf (half away from zero) of out * scale.
    src = np.floor(np.arange(n_out, dtype=np.float32) * scale + np.float32(0.5))
    idx = np.minimum(src.astype(np.int32), n_in - 1)
    return jnp.take(x, jnp.asarray(idx), axis=axis)


def _resize_axis(x: jax.Array, axis: int, n_out: int) -> jax.Array:
    return x if x.shape[axis] == n_out else _resize_axis_bilinear(x, axis, n_out)


def resize_align_corners(
    x: jax.Array, out_hw: tuple[int, int], method: str = "bilinear"
) -> jax.Array:
    """Resizes `[batch, height, width, channels]` (or `[batch, height, width]`) to `out_hw`.

    Align-corners semantics (TF1 `align_corners=True`): the corner pixels of input and output
    coincide, so output pixel i samples input position `i * (in - 1) / (out - 1)`.
    `jax.image.resize` uses half-pixel centres instead and would shift every prediction.

    Implemented separably as two static gathers plus a lerp per axis, O(output size) work; the
    gradient applies the transposed interpolation matrix as a matmul instead of a scatter-add.

    Args:
        x: float array `[batch, height, width, channels]` or `[batch, height, width]`; integer
            arrays are allowed with `method="nearest"`.
        out_hw: output `(height, width)`.
        method: "bilinear" or "nearest".

    Returns:
        `[batch, out_h, out_w, channels]` (or without channels), dtype of `x`.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"resize_align_corners: expected a rank 3 or 4 array, got {x.shape}")
    out_h, out_w = (int(v) for v in out_hw)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize_align_corners: out_hw must be positive, got {out_hw}")
    if method == "bilinear":
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"resize_align_corners: bilinear needs a float array, got {x.dtype}")
        resize_axis = _resize_axis
    elif method == "nearest":
        resize_axis = _resize_axis_nearest
    else:
        raise ValueError(f"resize_align_corners: method must be bilinear or nearest, got {method}")
    x = resize_axis(x, 1, out_h)
    return resize_axis(x, 2, out_w)


def resize_and_rescale_offsets(offsets: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """Resizes a `[batch, h, w, 2]` (dy, dx) offset map and rescales it to the new pixel grid.

    Offsets are multiplied by `(out - 1) / (in - 1)` per axis (the align-corners pixel pitch
    ratio) before the bilinear resize, as deeplab2 `resize_and_rescale_offsets`.
    """
    in_h, in_w = offsets.shape[1:3]
    out_h, out_w = out_hw
    scale_y = (out_h - 1) / (in_h - 1) if in_h > 1 else 1.0
    scale_x = (out_w - 1) / (in_w - 1) if in_w > 1 else 1.0
    scale = jnp.asarray([scale_y, scale_x], dtype=offsets.dtype)
    return resize_align_corners(offsets * scale, out_hw)


# ----------------------------------------------------------------------------- normalisation


class BatchNorm(nnx.Module):
    """BatchNorm over `[batch, height, width, channels]` with optional per-group statistics.

    In training mode (`use_running_average=False`) statistics are the biased mean/variance
    over batch and space, computed in float32. Under `jax.jit` with the batch sharded across
    devices the reductions are global, i.e. this is synchronised BatchNorm.

    `groups > 1` splits the batch into interleaved groups (sample i belongs to group i % groups),
    normalises each with its own statistics and folds them into the running averages one group
    after the other. ViP-DeepLab uses this to encode frames t and t+1 in one backbone call while
    keeping the reference behaviour of two encoder calls (docs/architecture.md#shared-encoder): separate batch statistics
    per frame, and moving averages updated twice per step, frame t first.
    """

    def __init__(
        self,
        num_features: int,
        *,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        zero_init_scale: bool = False,
        dtype: jnp.dtype = jnp.float32,
        use_running_average: bool = False,
    ):
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.dtype = dtype
        self.use_running_average = use_running_average
        init_scale = jnp.zeros if zero_init_scale else jnp.ones
        self.scale = nnx.Param(init_scale((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

    def set_view(self, use_running_average: bool | None = None):
        """Hook for `nnx.view` / `Module.train()` / `Module.eval()`."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x: jax.Array, *, groups: int = 1) -> jax.Array:
        """Normalises `x` `[batch, height, width, channels]`; returns the same shape in `dtype`."""
        c = x.shape[-1]
        if self.use_running_average:
            mean = self.mean[...]
            var = self.var[...]
            inv = self.scale[...] * jax.lax.rsqrt(var + self.epsilon)
            shift = self.bias[...] - mean * inv
            return (x * inv.astype(x.dtype) + shift.astype(x.dtype)).astype(self.dtype)

        if x.shape[0] % groups:
            raise ValueError(f"BatchNorm: batch {x.shape[0]} is not divisible by groups={groups}")
        xg = x.reshape((x.shape[0] // groups, groups) + x.shape[1:])
        axes = tuple(i for i in range(xg.ndim) if i not in (1, xg.ndim - 1))
        # One pass (E[d^2] - E[d]^2) over d = x - running mean: the shift leaves the statistics
        # unchanged mathematically but keeps the float32 cancellation small once the running
        # mean tracks the data, and XLA fuses both sums into a single read of x.
        shift0 = jax.lax.stop_gradient(self.mean[...])
        d = xg.astype(jnp.float32) - shift0
        mean_d = jnp.mean(d, axis=axes, keepdims=True)  # [1, groups, 1, 1, c]
        var = jnp.maximum(jnp.mean(jnp.square(d), axis=axes, keepdims=True) - mean_d**2, 0.0)
        mean = mean_d + shift0
        inv = self.scale[...] * jax.lax.rsqrt(var + self.epsilon)
        shift = self.bias[...] - mean * inv
        y = (xg * inv.astype(x.dtype) + shift.astype(x.dtype)).astype(self.dtype)

        running_mean, running_var = self.mean[...], self.var[...]
        flat_mean = jax.lax.stop_gradient(mean.reshape(groups, c))
        flat_var = jax.lax.stop_gradient(var.reshape(groups, c))
        for g in range(groups):
            running_mean = self.momentum * running_mean + (1.0 - self.momentum) * flat_mean[g]
            running_var = self.momentum * running_var + (1.0 - self.momentum) * flat_var[g]
        self.mean[...] = running_mean
        self.var[...] = running_var
        return y.reshape(x.shape)


# ----------------------------------------------------------------------------- convolutions


class ConvBN(nnx.Module):
    """deeplab2 `Conv2DSame`: explicit symmetric padding, conv, optional BatchNorm and ReLU.

    Input `[batch, height, width, in_channels]`, output `[batch, out_h, out_w, out_channels]` with
    `out = floor((in + pad_total - k_eff) / stride) + 1`. No bias when BatchNorm follows.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        rate: int = 1,
        use_bn: bool = True,
        relu: bool = True,
        zero_init_bn_scale: bool = False,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        pad = same_padding(kernel_size, rate)
        self.conv = nnx.Conv(
            in_channels,
            out_channels,
            (kernel_size, kernel_size),
            strides=(stride, stride),
            padding=(pad, pad),
            kernel_dilation=(rate, rate),
            use_bias=not use_bn,
            kernel_init=he_normal,
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.bn = (
            BatchNorm(out_channels, zero_init_scale=zero_init_bn_scale, dtype=dtype)
            if use_bn
            else None
        )
        self.relu = relu

    def __call__(self, x: jax.Array, *, groups: int = 1) -> jax.Array:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, groups=groups)
        return jax.nn.relu(x) if self.relu else x


def _depthwise_native(x: jax.Array, kernel: jax.Array, stride: int, rate: int) -> jax.Array:
    pad = same_padding(kernel.shape[0], rate)
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        (pad, pad),
        rhs_dilation=(rate, rate),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


def _shift_sum(
    xp: jax.Array, kernel: jax.Array, stride: int, rate: int, out_hw: tuple[int, int]
) -> jax.Array:
    """`out[y, x] = sum_ij xp[y*stride + i*rate, x*stride + j*rate] * kernel[i, j]` per channel."""
    k = kernel.shape[0]
    h, w = out_hw
    out = None
    for i in range(k):
        for j in range(k):
            window = xp[
                :,
                i * rate : i * rate + (h - 1) * stride + 1 : stride,
                j * rate : j * rate + (w - 1) * stride + 1 : stride,
                :,
            ]
            term = window * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


def _depthwise_out_hw(x: jax.Array, stride: int) -> tuple[int, int]:
    # With `same_padding` the output keeps pixels 0, stride, 2*stride, ... of the input grid.
    return tuple((n - 1) // stride + 1 for n in x.shape[1:3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise_shifts(x: jax.Array, kernel: jax.Array, stride: int, rate: int) -> jax.Array:
    pad = same_padding(kernel.shape[0], rate)
    xp = jnp.pad(x, ((0, 0), pad, pad, (0, 0)))
    return _shift_sum(xp, kernel, stride, rate, _depthwise_out_hw(x, stride))


def _depthwise_shifts_fwd(x, kernel, stride, rate):
    return _depthwise_shifts(x, kernel, stride, rate), (x, kernel)


def _depthwise_shifts_bwd(stride, rate, residuals, g):
    # A strided convolution is the stride-1 one sampled every `stride` pixels, so the input
    # gradient is the stride-1 transpose (the shift-sum with the flipped kernel, padding
    # swapped) of g spread back onto the full grid with zeros in between. The kernel gradient
    # is k*k per-channel reductions. XLA:CPU computes the grouped-convolution filter gradient as
    # a dense convolution (channels x more FLOPs), so both stay elementwise.
    x, kernel = residuals
    k = kernel.shape[0]
    before, after = same_padding(k, rate)
    h, w = x.shape[1:3]
    ho, wo = g.shape[1:3]
    g_full = jax.lax.pad(
        g,
        jnp.zeros((), g.dtype),
        (
            (0, 0, 0),
            (0, h - (ho - 1) * stride - 1, stride - 1),
            (0, w - (wo - 1) * stride - 1, stride - 1),
            (0, 0, 0),
        ),
    )
    gp = jnp.pad(g_full, ((0, 0), (after, before), (after, before), (0, 0)))
    dx = _shift_sum(gp, kernel[::-1, ::-1], 1, rate, (h, w))
    xp = jnp.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    dk = jnp.stack(
        [
            jnp.stack(
                [
                    jnp.sum(
                        xp[
                            :,
                            i * rate : i * rate + (ho - 1) * stride + 1 : stride,
                            j * rate : j * rate + (wo - 1) * stride + 1 : stride,
                            :,
                        ]
                        * g,
                        axis=(0, 1, 2),
                        dtype=jnp.float32,
                    )
                    for j in range(k)
                ]
            )
            for i in range(k)
        ]
    )
    return dx, dk[:, :, None, :].astype(kernel.dtype)


_depthwise_shifts.defvjp(_depthwise_shifts_fwd, _depthwise_shifts_bwd)


# Default of `depthwise_conv(use_shifts=None)`: None = shift-sum forward on CPU only. Benchmarks
# set it to False to trace pure convolution primitives for analytic FLOP counts.
DEPTHWISE_USE_SHIFTS: bool | None = None


def depthwise_conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: int = 1,
    rate: int = 1,
    use_shifts: bool | None = None,
) -> jax.Array:
    """ "SAME" depthwise convolution `[b, h, w, c] * [k, k, 1, c] -> [b, h', w', c]`.

    Padding is deeplab2's `same_padding(k, rate)` for every stride, so `h' = ceil(h / stride)`
    and the output samples input pixels 0, stride, 2*stride, ...; `rate` dilates the kernel.

    With `use_shifts` (default: on the CPU backend) it is a sum of k*k shifted, per-channel-scaled
    copies of the padded input, with a matching hand-written gradient: XLA:CPU lowers grouped
    convolutions to a slow generic loop (~40x slower than this for a 5x5 kernel) and their
    filter gradient to a dense convolution. Accelerators use the native grouped convolution.
    Both compute the same cross-correlation.
    """
    if kernel.shape[0] % 2 == 0 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(
            f"depthwise_conv: kernel must be [k, k, 1, c] with odd k, got {kernel.shape}"
        )
    if use_shifts is None:
        use_shifts = DEPTHWISE_USE_SHIFTS
    if use_shifts is None:
        use_shifts = jax.default_backend() == "cpu"
    if use_shifts:
        return _depthwise_shifts(x, kernel, stride, rate)
    return _depthwise_native(x, kernel, stride, rate)


class DepthwiseConv(nnx.Module):
    """Depthwise k x k conv, multiplier 1, no bias; kernel `[k, k, 1, channels]` (Glorot uniform).

    `[b, h, w, channels] -> [b, ceil(h / stride), ceil(w / stride), channels]`; `rate` dilates.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        rate: int = 1,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.kernel = nnx.Param(
            glorot_uniform(rngs.params(), (kernel_size, kernel_size, 1, channels), jnp.float32)
        )
        self.stride = stride
        self.rate = rate
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        return depthwise_conv(
            x.astype(self.dtype),
            self.kernel[...].astype(self.dtype),
            stride=self.stride,
            rate=self.rate,
        )


class SeparableConvBN(nnx.Module):
    """deeplab2 `SeparableConv2DSame` with BN and ReLU after both parts (docs/architecture.md#layer-conventions).

    Depthwise k x k (multiplier 1, no bias) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU.
    `[batch, height, width, in_channels]` -> `[batch, height, width, out_channels]`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        *,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.depthwise = DepthwiseConv(in_channels, kernel_size, dtype=dtype, rngs=rngs)
        self.depthwise_bn = BatchNorm(in_channels, dtype=dtype)
        self.pointwise = ConvBN(in_channels, out_channels, 1, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, groups: int = 1) -> jax.Array:
        x = jax.nn.relu(self.depthwise_bn(self.depthwise(x), groups=groups))
        return self.pointwise(x, groups=groups)
