"""deeplab2 encoder naming and parity: every checkpoint key maps onto one vipdl variable, the
parameter counts agree, and with the fixtures' seeded weights the vipdl encoders reproduce the
endpoints deeplab2 computed (docs/architecture.md#backbones)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vipdl.convert import deeplab2_encoders as d2e
from vipdl.models import ModelConfig, PanopticDeepLab, ViPDeepLab, backbones

SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# Fixture -> (vipdl backbone name, output stride) of its encoder.
ENCODERS = {
    "enc_resnet50": ("resnet50", 32),
    "enc_resnet50_beta": ("resnet50_beta", 32),
    "pdl_r50": ("resnet50", 32),
    "pdl_r50beta": ("resnet50_beta", 32),
    "vip_r50beta_dvps": ("resnet50_beta", 32),
    "enc_wide_resnet41": ("wide_resnet41", 16),
    "vip_wr41_dvps": ("wide_resnet41", 16),
    "enc_mobilenet_v3_large": ("mobilenet_v3_large", 32),
    "pdl_mnv3l": ("mobilenet_v3_large", 32),
}
# Encoder-only fixtures whose endpoints are compared (all four: 2-8 s each on this CPU).
PARITY = ("enc_resnet50", "enc_resnet50_beta", "enc_wide_resnet41", "enc_mobilenet_v3_large")


def abstract_encoder(fixture: str) -> nnx.Module:
    name, os_ = ENCODERS[fixture]
    return nnx.eval_shape(
        lambda: backbones.create_backbone(name, output_stride=os_, rngs=nnx.Rngs(0))
    )


def loaded_encoder(d2, fixture: str) -> nnx.Module:
    """The fixture's encoder with its seeded deeplab2 weights, in eval mode.

    Built abstractly (random init of 100M parameters costs more than the test itself), then
    every parameter and statistic is loaded; the drop-path RNG state gets concrete keys.
    """
    encoder = abstract_encoder(fixture)
    d2e.load_encoder_weights(encoder, d2.seeded_weights(fixture))
    for i, (path, _) in enumerate(nnx.to_flat_state(nnx.state(encoder, nnx.RngState))):
        var = d2e.variable_at(encoder, path)
        var.set_value(jax.random.key(i) if path[-1] == "key" else jnp.zeros((), jnp.uint32))
    encoder.eval()
    return encoder


def encoder_keys(d2, fixture: str) -> dict[str, tuple[int, ...]]:
    """{name relative to `encoder/`, without the suffix: shape} from the fixture's keys.tsv."""
    return {
        k[len("encoder/") : -len(SUFFIX)]: shape
        for k, (shape, _) in d2.key_shapes(fixture).items()
        if k.startswith("encoder/")
    }


@pytest.mark.parametrize("fixture", sorted(ENCODERS))
def test_keys_map_one_to_one(deeplab2_fixtures, fixture):
    encoder = abstract_encoder(fixture)
    names = d2e.encoder_names(encoder)
    keys = encoder_keys(deeplab2_fixtures, fixture)
    flat = dict(nnx.to_flat_state(nnx.state(encoder, (nnx.Param, nnx.BatchStat))))
    assert set(names) == set(keys), (
        sorted(set(keys) - set(names))[:5],
        sorted(set(names) - set(keys))[:5],
    )
    paths = list(names.values())
    assert len(set(paths)) == len(paths), "two deeplab2 names map to one variable"
    assert set(paths) == set(flat), sorted(set(flat) - set(paths))[:5]
    for name, path in names.items():
        target = flat[path].get_value().shape
        value = np.zeros(keys[name], np.float32)
        assert d2e.to_vipdl_value(name, value, target).shape == target, name


@pytest.mark.parametrize("fixture", sorted(ENCODERS))
def test_parameter_counts(deeplab2_fixtures, fixture):
    encoder = abstract_encoder(fixture)
    keys = encoder_keys(deeplab2_fixtures, fixture)
    stats = ("moving_mean", "moving_variance")
    d2_params = sum(int(np.prod(s)) for k, s in keys.items() if not k.endswith(stats))
    d2_stats = sum(int(np.prod(s)) for k, s in keys.items() if k.endswith(stats))

    def count(kind):
        return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(encoder, kind)))

    assert count(nnx.Param) == d2_params
    assert count(nnx.BatchStat) == d2_stats


def test_to_vipdl_value_layouts():
    dw = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3, 1)
    out = d2e.to_vipdl_value(
        "encoder/x/_depthwise_conv/depthwise_kernel" + SUFFIX, dw, (2, 2, 1, 3)
    )
    np.testing.assert_array_equal(out[:, :, 0, :], dw[:, :, :, 0])
    with pytest.raises(ValueError, match="_conv/kernel.*does not fit"):
        d2e.to_vipdl_value("_stem/_conv/kernel", np.zeros((3, 3, 3, 8)), (3, 3, 8, 3))
    with pytest.raises(ValueError, match=r"\[kh, kw, C, 1\]"):
        d2e.to_vipdl_value("a/depthwise_kernel", np.zeros((3, 3, 1, 8)), (3, 3, 8, 8))


def test_load_rejects_mismatched_checkpoint(deeplab2_fixtures):
    encoder = nnx.eval_shape(
        lambda: backbones.create_backbone("resnet_tiny", output_stride=32, rngs=nnx.Rngs(0))
    )
    names = sorted(d2e.encoder_names(encoder))
    flat = dict(nnx.to_flat_state(nnx.state(encoder)))
    weights = {
        "encoder/" + n + SUFFIX: np.zeros(flat[p].get_value().shape, np.float32)
        for n, p in d2e.encoder_names(encoder).items()
    }
    weights["global_step" + SUFFIX] = np.zeros((), np.int64)  # outside the prefix: ignored
    d2e.load_encoder_weights(encoder, weights)
    assert float(jnp.abs(encoder.stem[0].conv.kernel[...]).max()) == 0.0
    del weights["encoder/" + names[0] + SUFFIX]
    weights["encoder/_stage9/_conv/kernel" + SUFFIX] = np.zeros((1,), np.float32)
    with pytest.raises(ValueError, match=r"missing \['encoder/_stage2.*\(1\), unused .*_stage9"):
        d2e.load_encoder_weights(encoder, weights)
    with pytest.raises(TypeError, match="no deeplab2 naming for Linear"):
        d2e.encoder_names(nnx.eval_shape(lambda: nnx.Linear(2, 2, rngs=nnx.Rngs(0))))


@pytest.mark.parametrize("fixture", PARITY)
def test_endpoints_match_deeplab2(deeplab2_fixtures, fixture):
    d2 = deeplab2_fixtures
    encoder = loaded_encoder(d2, fixture)
    for size, refs in d2.outputs(fixture).items():
        image = d2.inputs(fixture)[size].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        out = nnx.jit(lambda m, x: m(x))(encoder, jnp.asarray(image))
        compared = [k for k in refs if k in out]
        assert compared == ["res2", "res3", "res4", "res5"]
        for key in compared:
            ref, std = refs[key]
            got = d2.subsample(np.asarray(out[key], np.float32))
            assert got.shape == ref.shape, key
            ratio = float(np.abs(got - ref).max()) / std
            print(f"{fixture} {size} {key}: max|diff|/std = {ratio:.2e}")
            assert ratio <= 1e-3, (key, ratio)


# Full models with the fixtures' decoders: deeplab2's defaults everywhere (ASPP 256, semantic
# decoder 256 with low-level projections 64/32, instance decoder 128 with 32/16, heads 256/32,
# depth head 64), only backbone and output stride change.
MODELS = {
    "pdl_r50": (PanopticDeepLab, ModelConfig(19, backbone="resnet50")),
    "pdl_r50beta": (PanopticDeepLab, ModelConfig(19)),
    "pdl_mnv3l": (PanopticDeepLab, ModelConfig(19, backbone="mobilenet_v3_large")),
    "vip_r50beta_dvps": (ViPDeepLab, ModelConfig(19, use_depth=True)),
    "vip_wr41_dvps": (
        ViPDeepLab,
        ModelConfig(19, backbone="wide_resnet41", output_stride=16, use_depth=True),
    ),
}


@pytest.mark.parametrize("fixture", sorted(MODELS))
def test_full_model_parameter_counts(deeplab2_fixtures, fixture):
    """Parameters + BatchNorm statistics of the whole model == every seeded checkpoint entry."""
    cls, config = MODELS[fixture]
    model = nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0)))
    ours = sum(
        int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, (nnx.Param, nnx.BatchStat)))
    )
    shapes = deeplab2_fixtures.key_shapes(fixture)
    theirs = sum(int(np.prod(s)) for k, (s, _) in shapes.items() if deeplab2_fixtures.is_seeded(k))
    assert ours == theirs
