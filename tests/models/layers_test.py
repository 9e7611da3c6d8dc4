"""Layer-level checks: align-corners resize, Conv2DSame padding, grouped BatchNorm, ASPP pooling."""

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest
from flax import nnx

from vipdl.models import (
    ASPP,
    BatchNorm,
    ConvBN,
    aspp_pool_size,
    resize_align_corners,
    resize_and_rescale_offsets,
)
from vipdl.models.decoder import average_pool_valid
from vipdl.models.layers import depthwise_conv, same_padding


def np_resize_align_corners(x: np.ndarray, out_hw) -> np.ndarray:
    """Direct per-pixel bilinear interpolation with align-corners sampling positions."""
    b, h, w, c = x.shape
    oh, ow = out_hw
    out = np.zeros((b, oh, ow, c), np.float64)
    for i in range(oh):
        sy = i * (h - 1) / (oh - 1) if oh > 1 else 0.0
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, h - 1)
        fy = sy - y0
        for j in range(ow):
            sx = j * (w - 1) / (ow - 1) if ow > 1 else 0.0
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, w - 1)
            fx = sx - x0
            top = x[:, y0, x0] * (1 - fx) + x[:, y0, x1] * fx
            bottom = x[:, y1, x0] * (1 - fx) + x[:, y1, x1] * fx
            out[:, i, j] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize(
    "in_hw,out_hw", [((5, 9), (17, 33)), ((17, 33), (5, 9)), ((1, 1), (4, 6)), ((6, 4), (6, 11))]
)
def test_resize_align_corners_matches_numpy(in_hw, out_hw):
    x = np.random.default_rng(0).normal(size=(2, *in_hw, 3)).astype(np.float32)
    got = resize_align_corners(jnp.asarray(x), out_hw)
    np.testing.assert_allclose(np.asarray(got), np_resize_align_corners(x, out_hw), atol=1e-5)
    # Corners coincide exactly (what distinguishes align-corners from half-pixel resizing).
    np.testing.assert_allclose(np.asarray(got)[:, -1, -1], x[:, -1, -1], atol=1e-6)


def test_resize_nearest_and_rank3():
    labels = jnp.arange(12, dtype=jnp.int32).reshape(1, 3, 4)
    up = resize_align_corners(labels, (5, 7), method="nearest")
    # Source index = round_half_away(i * (in-1)/(out-1)): rows 0,0.5,1,1.5,2 -> 0,1,1,2,2.
    np.testing.assert_array_equal(np.asarray(up)[0, :, 0], [0, 4, 4, 8, 8])
    with pytest.raises(ValueError, match="bilinear needs a float"):
        resize_align_corners(labels, (5, 7))


@pytest.mark.slow
def test_resize_matches_tensorflow_v1_align_corners():
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(1).normal(size=(1, 17, 33, 4)).astype(np.float32)
    ref = tf.compat.v1.image.resize_bilinear(x, (65, 129), align_corners=True).numpy()
    np.testing.assert_allclose(
        np.asarray(resize_align_corners(jnp.asarray(x), (65, 129))), ref, atol=1e-5
    )


def test_offset_rescaling_factor():
    # A constant (1, 1) offset at 3x5 becomes ((9-1)/(3-1), (17-1)/(5-1)) = (4, 4) at 9x17.
    out = resize_and_rescale_offsets(jnp.ones((1, 3, 5, 2)), (9, 17))
    np.testing.assert_allclose(np.asarray(out), 4.0, rtol=1e-6)
    out = resize_and_rescale_offsets(jnp.ones((1, 3, 5, 2)), (5, 17))
    np.testing.assert_allclose(np.asarray(out)[..., 0], 2.0, rtol=1e-6)


def test_same_padding_rule():
    assert same_padding(3) == (1, 1)
    assert same_padding(7) == (3, 3)
    assert same_padding(1) == (0, 0)
    assert same_padding(3, rate=9) == (9, 9)
    assert same_padding(2) == (0, 1)


def test_strided_conv_is_top_left_aligned_on_even_inputs():
    rngs = nnx.Rngs(0)
    x = np.random.default_rng(2).normal(size=(1, 6, 8, 2)).astype(np.float32)
    conv1 = ConvBN(2, 3, 1, stride=2, use_bn=False, relu=False, rngs=rngs)
    k1 = np.asarray(conv1.conv.kernel[...])[0, 0]
    expected = x[:, ::2, ::2] @ k1 + np.asarray(conv1.conv.bias[...])
    np.testing.assert_allclose(np.asarray(conv1(jnp.asarray(x))), expected, atol=1e-5)

    conv3 = ConvBN(2, 3, 3, stride=2, use_bn=False, relu=False, rngs=rngs)
    k3 = np.asarray(conv3.conv.kernel[...])
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # symmetric, unlike XLA SAME
    ref = np.zeros((1, 3, 4, 3))
    for i in range(3):
        for j in range(4):
            patch = padded[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            ref[0, i, j] = np.einsum("hwc,hwco->o", patch, k3)
    ref += np.asarray(conv3.conv.bias[...])
    np.testing.assert_allclose(np.asarray(conv3(jnp.asarray(x))), ref, atol=1e-5)


def test_grouped_batchnorm_equals_separate_calls():
    rng = np.random.default_rng(3)
    a = rng.normal(2.0, 3.0, size=(3, 4, 5, 6)).astype(np.float32)
    b = rng.normal(-1.0, 0.5, size=(3, 4, 5, 6)).astype(np.float32)
    interleaved = np.stack([a, b], axis=1).reshape(6, 4, 5, 6)

    joint, separate = BatchNorm(6), BatchNorm(6)
    out = np.asarray(joint(jnp.asarray(interleaved), groups=2)).reshape(3, 2, 4, 5, 6)
    out_a = np.asarray(separate(jnp.asarray(a)))
    out_b = np.asarray(separate(jnp.asarray(b)))
    np.testing.assert_allclose(out[:, 0], out_a, atol=1e-5)
    np.testing.assert_allclose(out[:, 1], out_b, atol=1e-5)
    # Running averages folded frame t first, then t+1, exactly like two calls.
    np.testing.assert_allclose(
        np.asarray(joint.mean[...]), np.asarray(separate.mean[...]), atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(joint.var[...]), np.asarray(separate.var[...]), atol=1e-6)
    # Biased batch statistics, momentum 0.99, epsilon 1e-3.
    np.testing.assert_allclose(
        np.asarray(separate.mean[...]),
        0.99 * (0.99 * 0 + 0.01 * a.mean((0, 1, 2))) + 0.01 * b.mean((0, 1, 2)),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        out_a, (a - a.mean((0, 1, 2))) / np.sqrt(a.var((0, 1, 2)) + 1e-3), atol=1e-4
    )

    separate.set_view(use_running_average=True)
    eval_out = np.asarray(separate(jnp.asarray(a)))
    mean, var = np.asarray(separate.mean[...]), np.asarray(separate.var[...])
    np.testing.assert_allclose(eval_out, (a - mean) / np.sqrt(var + 1e-3), atol=1e-4)


def test_aspp_pool_size_helper():
    assert aspp_pool_size((513, 1025), 32) == (17, 33)
    assert aspp_pool_size((385, 1281), 32) == (13, 41)
    assert aspp_pool_size((513, 1025), 16) == (33, 65)


def test_average_pool_valid_sliding_window():
    x = np.random.default_rng(4).normal(size=(1, 33, 65, 2)).astype(np.float32)
    got = np.asarray(average_pool_valid(jnp.asarray(x), (17, 33)))
    assert got.shape == (1, 17, 33, 2)  # docs/architecture.md#known-answer-checks: 17x33 before upsampling at 1025x2049 eval
    np.testing.assert_allclose(got[0, 3, 5], x[0, 3:20, 5:38].mean((0, 1)), atol=1e-5)
    # A window at least as large as the map is global pooling.
    glob = np.asarray(average_pool_valid(jnp.asarray(x), (40, 80)))
    np.testing.assert_allclose(glob[0, 0, 0], x[0].mean((0, 1)), atol=1e-5)


def test_aspp_window_equals_global_at_train_size_and_slides_at_eval_size():
    rngs = nnx.Rngs(0)
    windowed = ASPP(8, 4, (1, 2, 3), pool_size_hw=(5, 9), rngs=rngs)
    windowed.eval()
    global_pool = nnx.clone(windowed)
    global_pool.pool_size_hw = None
    rng = np.random.default_rng(5)
    train_size = jnp.asarray(rng.normal(size=(2, 5, 9, 8)), jnp.float32)
    np.testing.assert_allclose(
        np.asarray(windowed(train_size)), np.asarray(global_pool(train_size)), atol=1e-6
    )

    eval_size = jnp.asarray(rng.normal(size=(1, 9, 17, 8)), jnp.float32)
    out = np.asarray(windowed(eval_size))
    assert not np.allclose(out, np.asarray(global_pool(eval_size)), atol=1e-4)
    # Pooling branch by hand: sliding 5x9 mean (5x9 map) -> 1x1 conv/BN/ReLU -> resize to 9x17.
    x = np.asarray(eval_size)
    slid = np.stack([[x[0, i : i + 5, j : j + 9].mean((0, 1)) for j in range(9)] for i in range(5)])
    pooled = windowed.pool_conv(jnp.asarray(slid[None], jnp.float32))
    branch = np.asarray(resize_align_corners(pooled, (9, 17)))
    features = [np.asarray(windowed.conv1x1(eval_size))]
    features += [np.asarray(c(eval_size)) for c in windowed.atrous] + [branch]
    expected = windowed.project(jnp.asarray(np.concatenate(features, -1)))
    np.testing.assert_allclose(out, np.asarray(expected), atol=1e-5)


def test_bf16_batchnorm_keeps_float32_statistics():
    bn = BatchNorm(4, dtype=jnp.bfloat16)
    x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 3, 3, 4)), jnp.bfloat16)
    y = bn(x)
    assert y.dtype == jnp.bfloat16
    assert bn.mean[...].dtype == jnp.float32 and bn.scale[...].dtype == jnp.float32
    assert jax.tree.all(jax.tree.map(lambda v: bool(jnp.isfinite(v).all()), nnx.state(bn)))


def test_resize_gradient_matches_finite_differences():
    # The backward pass is hand-written (transposed interpolation matrix); check it numerically.
    x = jnp.asarray(np.random.default_rng(7).normal(size=(1, 3, 4, 2)), jnp.float32)
    jax.test_util.check_grads(
        lambda v: resize_align_corners(v, (5, 9)),
        (x,),
        order=1,
        modes=["rev"],
        atol=1e-2,
        rtol=1e-2,
    )
    # And equals the exact vector-Jacobian product of the numpy resize.
    g = jnp.asarray(np.random.default_rng(8).normal(size=(1, 5, 9, 2)), jnp.float32)
    got = jax.vjp(lambda v: resize_align_corners(v, (5, 9)), x)[1](g)[0]
    # Reference: the response of each input basis pixel, dotted with the cotangent.
    ref = np.zeros((1, 3, 4, 2))
    for i in range(3):
        for j in range(4):
            basis = np.zeros((1, 3, 4, 2))
            basis[0, i, j] = 1.0
            resp = np_resize_align_corners(basis, (5, 9))
            ref[0, i, j] = (resp * np.asarray(g)).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)


def test_depthwise_shift_sum_equals_grouped_convolution():
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.normal(size=(2, 6, 7, 5)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(5, 5, 1, 5)), jnp.float32)
    shifts = depthwise_conv(x, kernel, use_shifts=True)
    native = depthwise_conv(x, kernel, use_shifts=False)
    np.testing.assert_allclose(np.asarray(shifts), np.asarray(native), atol=1e-5)
    # One pixel by hand: symmetric "SAME" padding of 2, cross-correlation (no kernel flip).
    padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
    expected = np.einsum("hwc,hwc->c", padded[1, 3:8, 0:5], np.asarray(kernel)[:, :, 0])
    np.testing.assert_allclose(np.asarray(shifts)[1, 3, 0], expected, atol=1e-5)
    # The shift-sum's custom gradient equals the grouped convolution's.
    g = jnp.asarray(rng.normal(size=(2, 6, 7, 5)), jnp.float32)
    for a, b in zip(
        jax.vjp(lambda u, v: depthwise_conv(u, v, use_shifts=True), x, kernel)[1](g),
        jax.vjp(lambda u, v: depthwise_conv(u, v, use_shifts=False), x, kernel)[1](g),
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
