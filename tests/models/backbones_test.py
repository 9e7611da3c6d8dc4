"""Backbone factory and the Wide-ResNet / MobileNetV3 backbones: endpoint shapes at OS16/OS32,
atrous consistency, per-group BatchNorm statistics, drop path and remat
(docs/architecture.md#backbones)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vipdl import keys
from vipdl.convert.deeplab2_encoders import variable_at
from vipdl.models import ModelConfig, ViPDeepLab, backbones, mobilenet, wide_resnet
from vipdl.models.layers import depthwise_conv

H, W = 33, 65
# Tiny variants: Wide-ResNet with base width 4 (two rate-2 blocks in stage 5 at OS16), and
# TINY_MNV3 at width 0.25 (every width clamps to 8 except the expansions).
TINY_WR = wide_resnet.WideResNetSpec(
    stem_channels=8, filters=(4, 8, 16, 32, 64), blocks=(1, 1, 1, 1, 3)
)
# A 7-block MobileNetV3 with every block kind: strided and residual inverted bottlenecks, with
# and without expansion / SE, ReLU and hard-swish. SE only before stride 16, where the output
# stride changes nothing (SE pools over the whole map, so OS16 is not a denser OS32 there).
TINY_MNV3 = (
    mobilenet.BlockSpec("conv", 3, 2, 16, "hard_swish", endpoint=True),
    mobilenet.BlockSpec("ib", 3, 2, 16, "relu", None, 1.0, endpoint=True),
    mobilenet.BlockSpec("ib", 3, 2, 24, "relu", 0.25, 3.0, endpoint=True),
    mobilenet.BlockSpec("ib", 5, 2, 40, "hard_swish", None, 3.0, endpoint=True),
    mobilenet.BlockSpec("ib", 5, 2, 48, "hard_swish", None, 3.0),
    mobilenet.BlockSpec("ib", 5, 1, 48, "hard_swish", None, 2.0),
    mobilenet.BlockSpec("conv", 1, 1, 64, "hard_swish", endpoint=True),
)


def materialise(module: nnx.Module, seed: int = 0) -> nnx.Module:
    """Fills an abstract (`nnx.eval_shape`) module with random values (cheaper than init)."""
    rng = np.random.default_rng(seed)
    for i, (path, var) in enumerate(nnx.to_flat_state(nnx.state(module))):
        shape, leaf = var.get_value().shape, path[-1]
        z = rng.standard_normal(shape).astype(np.float32)
        if leaf == "key":
            value = jax.random.key(seed * 1000 + i)
        elif leaf == "count":
            value = jnp.zeros(shape, jnp.uint32)
        elif leaf == "kernel":
            value = z * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif leaf in ("scale", "var"):
            value = 1.0 + 0.1 * np.abs(z)
        else:  # bias, mean
            value = 0.1 * z
        variable_at(module, path).set_value(jnp.asarray(value))
    return module


def tiny(kind: str, *, output_stride: int = 32, remat: bool = False, seed: int = 0, **kw):
    if kind == "wr":
        spec = dataclasses.replace(TINY_WR, **kw)
        make = lambda: wide_resnet.WideResNet(
            spec, output_stride=output_stride, remat=remat, rngs=nnx.Rngs(0)
        )
    else:
        make = lambda: mobilenet.MobileNetV3(
            TINY_MNV3,
            output_stride=output_stride,
            width_multiplier=0.25,
            remat=remat,
            rngs=nnx.Rngs(0),
        )
    return materialise(nnx.eval_shape(make), seed)


def images(batch: int, seed: int = 0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (batch, H, W, 3)), jnp.float32)


# ----------------------------------------------------------------------------- factory


def test_factory_names_and_knobs():
    assert {"wide_resnet41", "mobilenet_v3_large", "mobilenet_v3_small"} <= set(backbones.BACKBONES)
    with pytest.raises(ValueError, match="backbone must be one of"):
        backbones.create_backbone("mobilenet_v2", output_stride=32, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="do not apply to 'mobilenet_v3_small'"):
        backbones.create_backbone("mobilenet_v3_small", output_stride=32, width=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        backbones.create_backbone("mobilenet_v3_small", output_stride=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="filters and blocks need 5 entries"):
        backbones.create_backbone(
            "wide_resnet41", output_stride=16, blocks=(1, 1, 1, 1), rngs=nnx.Rngs(0)
        )
    wr = nnx.eval_shape(
        lambda: backbones.create_backbone(
            "wide_resnet41", output_stride=16, width=4, blocks=(1, 1, 2, 1, 1), rngs=nnx.Rngs(0)
        )
    )
    assert wr.endpoint_channels == {"res2": 32, "res3": 64, "res4": 128, "res5": 256}
    assert [len(s.blocks) for s in wr.stages] == [1, 1, 2, 1, 1]
    assert wr.stem.conv.kernel.shape == (3, 3, 3, 8)


@pytest.mark.parametrize(
    "name, channels",
    [
        ("wide_resnet41", (256, 512, 1024, 2048)),
        ("mobilenet_v3_large", (72, 120, 672, 960)),
        ("mobilenet_v3_small", (16, 88, 144, 576)),
    ],
)
@pytest.mark.parametrize("output_stride", [16, 32])
def test_endpoint_shapes(name, channels, output_stride):
    x = jax.ShapeDtypeStruct((2, 65, 129, 3), jnp.bfloat16)
    encoder = nnx.eval_shape(
        lambda: backbones.create_backbone(
            name, output_stride=output_stride, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)
        )
    )
    out = nnx.eval_shape(lambda m, v: m(v), encoder, x)
    res5 = (5, 9) if output_stride == 16 else (3, 5)
    sizes = [(17, 33), (9, 17), (5, 9), res5]
    assert encoder.endpoint_channels == dict(zip(("res2", "res3", "res4", "res5"), channels))
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        k: ((2, *hw, c), jnp.bfloat16)
        for k, hw, c in zip(("res2", "res3", "res4", "res5"), sizes, channels)
    }


def test_parameter_counts():
    def count(name, kind):
        m = nnx.eval_shape(
            lambda: backbones.create_backbone(name, output_stride=32, rngs=nnx.Rngs(0))
        )
        return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(m, kind)))

    # Documented in docs/architecture.md#backbones (deeplab2's counts for the first two are
    # checked against its checkpoints in tests/deeplab2/encoders_test.py).
    assert count("wide_resnet41", nnx.Param) == 109_014_080
    assert count("mobilenet_v3_large", nnx.Param) == 2_971_952
    assert count("mobilenet_v3_small", nnx.Param) == 927_008


# ----------------------------------------------------------------------------- structure


def test_wide_resnet_drop_path_schedule():
    wr = nnx.eval_shape(lambda: wide_resnet.WideResNet(output_stride=16, rngs=nnx.Rngs(0)))
    keep = [
        [round(b.drop_path.keep_prob, 6) if b.drop_path else 1.0 for b in s.blocks]
        for s in wr.stages
    ]
    assert keep == [
        [1.0, 1.0, 1.0],
        [1.0, 0.95, 0.95],
        [0.95, 0.9, 0.9, 0.9, 0.9, 0.9],
        [0.9, 0.85, 0.85],
        [0.85, 0.8, 0.8],
    ]
    constant = dataclasses.replace(wide_resnet.WIDE_RESNET41, drop_path_schedule="constant")
    assert [wide_resnet.drop_path_keep_prob(constant, s) for s in (2, 4, 32)] == [1.0, 0.8, 0.8]
    with pytest.raises(ValueError, match="drop_path_keep_prob must be in"):
        wide_resnet.WideResNetSpec(drop_path_keep_prob=0.0)


def test_drop_path_per_sample_scaled_and_off_in_eval():
    block = tiny("wr", drop_path_keep_prob=0.5).stages[4].blocks[1]  # stride 32: keep 0.5
    assert block.drop_path.keep_prob == 0.5 and block.shortcut is None
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3, 3, 256)), jnp.float32)
    a = jax.nn.relu(x)
    residual = block.residual(a, 1)
    y = block(x)
    kept = jnp.all(jnp.isclose(y, a + 2.0 * residual, atol=1e-5), axis=(1, 2, 3))
    dropped = jnp.all(jnp.isclose(y, a, atol=1e-5), axis=(1, 2, 3))
    assert bool(jnp.all(kept ^ dropped)), "every sample is either kept (x1/keep) or dropped"
    assert 0 < int(kept.sum()) < 16
    block.eval()
    np.testing.assert_allclose(block(x), a + block.residual(a, 1), atol=1e-5)


def test_mobilenet_rejects_bad_tables():
    with pytest.raises(ValueError, match="5 endpoints"):
        mobilenet.MobileNetV3(mobilenet.MOBILENET_V3_SMALL[:-1], rngs=nnx.Rngs(0))
    bad = (dataclasses.replace(mobilenet.MOBILENET_V3_SMALL[0], kind="fc"),)
    with pytest.raises(ValueError, match="block kind must be conv or ib"):
        mobilenet.MobileNetV3(bad + mobilenet.MOBILENET_V3_SMALL[1:], rngs=nnx.Rngs(0))
    assert mobilenet.make_divisible(18) == 24  # rounding down by more than 10% is undone
    assert mobilenet.make_divisible(72 * 0.25) == 24 and mobilenet.make_divisible(184) == 184


@pytest.mark.parametrize("kind", ["wr", "mnv3"])
def test_atrous_output_stride_16_is_dense_output_stride_32(kind):
    """With the same weights, OS16 computes res5 on a twice denser grid: its even pixels equal
    OS32's res5 (deeplab2's dilation rule)."""
    os16, os32 = (tiny(kind, output_stride=s) for s in (16, 32))
    os16.eval()
    os32.eval()
    x = images(1)
    run = nnx.jit(lambda m, v: m(v))
    y16, y32 = run(os16, x), run(os32, x)
    for k in ("res2", "res3", "res4"):
        np.testing.assert_allclose(y16[k], y32[k], rtol=1e-5, atol=1e-5)
    assert y16["res5"].shape[1:3] == (3, 5) and y32["res5"].shape[1:3] == (2, 3)
    np.testing.assert_allclose(y16["res5"][:, ::2, ::2], y32["res5"], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("kind", ["wr", "mnv3"])
def test_groups_equal_separate_calls(kind):
    """groups=2 on interleaved frames == two encoder calls (outputs and BN running stats)."""
    kw = {"drop_path_keep_prob": 1.0} if kind == "wr" else {}
    together, separate = tiny(kind, **kw), tiny(kind, **kw)
    x0, x1 = images(2, seed=1), images(2, seed=2)
    both = jnp.stack([x0, x1], axis=1).reshape(4, H, W, 3)  # sample i is frame i % 2

    @nnx.jit
    def two_calls(m, a, b):
        return m(a), m(b)

    y = nnx.jit(lambda m, v: m(v, groups=2))(together, both)
    y0, y1 = two_calls(separate, x0, x1)
    for k in y:
        pair = y[k].reshape(2, 2, *y[k].shape[1:])
        np.testing.assert_allclose(pair[:, 0], y0[k], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(pair[:, 1], y1[k], rtol=1e-4, atol=1e-4)
    stats = [dict(nnx.to_flat_state(nnx.state(m, nnx.BatchStat))) for m in (together, separate)]
    for path, var in stats[0].items():
        np.testing.assert_allclose(var[...], stats[1][path][...], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["wr", pytest.param("mnv3", marks=pytest.mark.slow)])
def test_remat_same_loss_and_gradients(kind):
    """Rematerialised stages/blocks give the same loss and gradients (drop path active)."""
    x = images(2)

    @nnx.jit
    def loss_and_grads(m):
        def loss(m):
            return sum(jnp.mean(jnp.square(v)) for v in m(x).values())

        return nnx.value_and_grad(loss)(m)

    plain, remat = (loss_and_grads(tiny(kind, remat=r)) for r in (False, True))
    np.testing.assert_allclose(plain[0], remat[0], rtol=1e-5)
    flat = [dict(nnx.to_flat_state(g)) for g in (plain[1], remat[1])]
    assert flat[0].keys() == flat[1].keys()
    for path, g in flat[0].items():
        np.testing.assert_allclose(g[...], flat[1][path][...], rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- layers / models


@pytest.mark.parametrize("stride, rate, hw", [(2, 1, (7, 8)), (1, 2, (6, 9)), (2, 2, (6, 9))])
def test_strided_dilated_depthwise_equals_grouped_convolution(stride, rate, hw):
    rng = np.random.default_rng(stride * 10 + rate)
    x = jnp.asarray(rng.normal(size=(2, *hw, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(5, 5, 1, 3)), jnp.float32)
    conv = lambda shifts: (
        lambda u, v: depthwise_conv(u, v, stride=stride, rate=rate, use_shifts=shifts)
    )
    shifts, native = conv(True)(x, kernel), conv(False)(x, kernel)
    assert shifts.shape == (2, -(-hw[0] // stride), -(-hw[1] // stride), 3)
    np.testing.assert_allclose(shifts, native, atol=1e-5)
    g = jnp.asarray(rng.normal(size=shifts.shape), jnp.float32)
    for a, b in zip(jax.vjp(conv(True), x, kernel)[1](g), jax.vjp(conv(False), x, kernel)[1](g)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="odd k"):
        depthwise_conv(x, jnp.zeros((2, 2, 1, 3)))


@pytest.mark.parametrize(
    "backbone, output_stride",
    [("wide_resnet41", 16), ("mobilenet_v3_small", 16)],
)
def test_vip_deeplab_runs_on_new_backbones(backbone, output_stride):
    """The whole ViP-DeepLab (two frames through one encoder call, groups=2) traces end to end."""
    config = ModelConfig(7, backbone=backbone, output_stride=output_stride, use_depth=True)
    model = nnx.eval_shape(lambda: ViPDeepLab(config, rngs=nnx.Rngs(0)))
    out = nnx.eval_shape(
        lambda m, x: m(x), model, jax.ShapeDtypeStruct((2, 65, 129, 6), jnp.float32)
    )
    assert out[keys.PRED_SEMANTIC_LOGITS].shape == (2, 65, 129, 7)
    assert out[keys.PRED_NEXT_OFFSET_MAP].shape == (2, 65, 129, 2)
    assert out[keys.PRED_DEPTH].shape == (2, 65, 129)
