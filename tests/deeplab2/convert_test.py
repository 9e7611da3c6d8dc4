"""deeplab2 checkpoint -> vipdl workdir: vipdl then computes deeplab2's outputs, and the
converter is strict (docs/model_zoo.md#how-the-conversion-is-verified).

The parity tests regenerate a fixture's seeded weights, write them as a real TF checkpoint (plus
the step counters a trainer saves), convert it into a workdir with the library, restore the
workdir into the model of the matching config built with the fixture's training crop, run it in
eval mode on the fixture input and compare every stored output.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from vipdl import checkpointing, from_config, keys
from vipdl.cli import convert_checkpoint as convert_cli
from vipdl.cli.predict_video import load_config_file
from vipdl.convert import deeplab2 as conv

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUFFIX = conv.SUFFIX
STEP_KEYS = {
    "global_step/.ATTRIBUTES/VARIABLE_VALUE": np.array(60000, np.int64),
    "save_counter/.ATTRIBUTES/VARIABLE_VALUE": np.array(60, np.int64),
}

# Fixture -> (vipdl config, model overrides). The crop is the fixture's (sets the ASPP window).
FIXTURE_CONFIGS = {
    "pdl_r50beta": ("panoptic_deeplab_cityscapes_r50.py", {}),
    "pdl_r50": ("panoptic_deeplab_cityscapes_resnet50.py", {}),
    "vip_r50beta_dvps": ("vip_deeplab_cityscapes_dvps_r50.py", {}),
    "vip_wr41_dvps": ("vip_deeplab_cityscapes_dvps_wr41.py", {}),
    # The fixture is deeplab2's OS32 MobileNetV3-Large recipe (default BatchNorm epsilon); the
    # published checkpoint and the config are OS16 with epsilon 1e-5. Weights are the same.
    "pdl_mnv3l": (
        "panoptic_deeplab_cityscapes_mnv3l.py",
        {"output_stride": 32, "aspp_rates": (3, 6, 9), "batchnorm_epsilon": 1e-3},
    ),
}
# Outputs of the model -> the fixture's names and layout.
OUTPUT_NAMES = {
    keys.PRED_SEMANTIC_LOGITS: "semantic_logits",
    keys.PRED_CENTER_HEATMAP: "center_heatmap",
    keys.PRED_OFFSET_MAP: "offset_map",
    keys.PRED_NEXT_OFFSET_MAP: "next_offset_map",
    keys.PRED_DEPTH: "depth_pred",
}
REL_TOL = 1e-3  # max|vipdl - deeplab2| <= REL_TOL * std(deeplab2), per output.
PROBS_ATOL = 1e-5


def load_config(name: str, **model_overrides) -> ml_collections.ConfigDict:
    config = load_config_file(os.path.join(REPO, "configs", name))
    for k, v in model_overrides.items():
        config.model[k] = v
    return config


def fixture_config(d2, fixture: str) -> ml_collections.ConfigDict:
    name, overrides = FIXTURE_CONFIGS[fixture]
    config = load_config(name, **overrides)
    config.data.crop_size_hw = tuple(d2.meta(fixture)["model"]["train_crop"])
    return config


def abstract_model(config):
    return nnx.eval_shape(lambda: from_config.create_model(config, rngs=nnx.Rngs(0)))


def zeros_model(config):
    """The config's model with zero weights, without running the (slow, eager) initialisers."""
    graphdef, state = nnx.split(abstract_model(config))

    def concrete(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key(0)
        return jnp.zeros(x.shape, x.dtype)

    # One compiled call instead of hundreds of eager allocations.
    return nnx.merge(graphdef, jax.jit(lambda: jax.tree.map(concrete, state))())


def shapes_only(d2, fixture: str, **changes) -> conv.ArrayCheckpoint:
    """The fixture's checkpoint entries as shapes (no values); `changes`: key -> shape or None."""
    entries = {}
    for key, (shape, dtype) in d2.key_shapes(fixture).items():
        if dtype == "string":
            entries[key] = np.array(b"graph")
        else:
            entries[key] = jax.ShapeDtypeStruct(shape, np.dtype(dtype))
    for key, shape in changes.items():
        if shape is None:
            del entries[key]
        else:
            entries[key] = jax.ShapeDtypeStruct(shape, np.float32)
    return conv.ArrayCheckpoint(entries, name=fixture)


def optimizer_entries(weights: dict) -> dict:
    """Adam state as a deeplab2 trainer saves it: slots per variable plus optimizer scalars."""
    out = {"optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE": np.array(60000, np.int64),
           "optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE": np.array(0.0, np.float32)}
    for key in sorted(weights)[:40]:
        name = key[: -len(SUFFIX)]
        for slot in ("m", "v"):
            # Deliberately not the variable's shape: ignored entries are never checked.
            out[f"{name}/.OPTIMIZER_SLOT/optimizer/{slot}{SUFFIX}"] = np.ones(3, np.float32)
    return out


# ------------------------------------------------------------------------------ parity


class Converted:
    """One fixture converted through a real TF checkpoint and restored into its model."""

    def __init__(self, d2, fixture, tmp, *, with_optimizer=False):
        weights = d2.seeded_weights(fixture)
        self.num_seeded = len(weights)
        extra = dict(STEP_KEYS)
        if with_optimizer:
            extra |= optimizer_entries(weights)
        self.num_extra = len(extra)
        d2.write_tf_checkpoint(weights | extra, str(tmp / "ckpt-60000"))
        del weights
        self.config = fixture_config(d2, fixture)
        self.workdir = tmp / "workdir"
        self.conversion = conv.convert_checkpoint(tmp, self.config, self.workdir)
        model = zeros_model(self.config)
        self.restored = checkpointing.restore_model_weights(model, str(self.workdir))
        self.conversion.weights = None  # Only the restored copy is needed from here on.
        model.eval()
        self.model = model
        self.aspp_pool = model.config.aspp_pool_size_hw
        graphdef, state = nnx.split(model)
        self._state = state
        self._run = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))

    def outputs(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Model outputs in the fixture's names and layouts (+ semantic_probs)."""
        pred = self._run(self._state, jnp.asarray(image, jnp.float32))
        out = {OUTPUT_NAMES[k]: np.asarray(v) for k, v in pred.items()}
        out["semantic_probs"] = np.asarray(jax.nn.softmax(pred[keys.PRED_SEMANTIC_LOGITS], -1))
        if "depth_pred" in out:
            out["depth_pred"] = out["depth_pred"][..., None]  # [b, H, W] -> deeplab2's [b,H,W,1]
        return out


@pytest.fixture(scope="module")
def converted(deeplab2_fixtures, tmp_path_factory):
    cache: dict[str, Converted] = {}

    def get(fixture: str) -> Converted:
        if fixture not in cache:
            cache.clear()  # One model at a time: the ViP models hold ~0.7 GB each.
            tmp = tmp_path_factory.mktemp(fixture)
            cache[fixture] = Converted(deeplab2_fixtures, fixture, tmp,
                                       with_optimizer=fixture == "pdl_r50beta")
        return cache[fixture]

    return get


def _parity_params():
    for fixture in FIXTURE_CONFIGS:
        for size in ("65x129", "129x257"):
            default = (fixture, size) == ("pdl_r50beta", "65x129")
            yield pytest.param(fixture, size, id=f"{fixture}-{size}",
                               marks=() if default else (pytest.mark.slow,))


@pytest.mark.parametrize("fixture, size", list(_parity_params()))
def test_converted_model_computes_deeplab2_outputs(deeplab2_fixtures, converted, fixture, size):
    d2 = deeplab2_fixtures
    c = converted(fixture)
    meta = d2.meta(fixture)
    # Every seeded variable filled exactly one vipdl array; step counters (and, for one fixture,
    # optimizer slots) were ignored by rule.
    assert c.conversion.num_arrays == meta["checkpoint"]["num_seeded_keys"] == c.num_seeded
    assert len(c.restored) == c.num_seeded
    assert c.conversion.num_values == meta["checkpoint"]["num_seeded_values"]
    assert sum(len(v) for v in c.conversion.ignored.values()) == c.num_extra
    assert c.aspp_pool == tuple(meta["model"]["aspp_pool_size"])

    image = d2.inputs(fixture)[size]
    out = c.outputs(image)
    refs = d2.outputs(fixture)[size]
    assert set(refs) <= set(out), sorted(set(refs) - set(out))
    report = []
    for name, (ref, std) in sorted(refs.items()):
        mine = d2.subsample(out[name])
        assert mine.shape == ref.shape, (name, mine.shape, ref.shape)
        err = float(np.abs(mine - ref).max())
        report.append(f"{fixture} {size} {name}: max|d| {err:.3g}, /std {err / std:.3g}")
        if name == "semantic_probs":
            assert err <= PROBS_ATOL, report[-1]
        else:
            assert err <= REL_TOL * std, report[-1]
    print("\n" + "\n".join(report))


# ------------------------------------------------------------------------------ strictness


@pytest.fixture(scope="module")
def pdl_r50beta_model():
    return abstract_model(load_config("panoptic_deeplab_cityscapes_r50.py"))


@pytest.fixture(scope="module")
def vip_r50beta_model():
    return abstract_model(load_config("vip_deeplab_cityscapes_dvps_r50.py"))


def _error(source, model, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        conv.convert_weights(source, model, **kwargs)
    return str(info.value)


STEM = "encoder/_stem/_conv1_bn_act/_conv/kernel" + SUFFIX
LAST = "semantic_last_layer/kernel" + SUFFIX


def test_missing_key_is_named(deeplab2_fixtures, pdl_r50beta_model):
    message = _error(shapes_only(deeplab2_fixtures, "pdl_r50beta", **{LAST: None}),
                     pdl_r50beta_model)
    assert "missing in the checkpoint (1)" in message and LAST in message


@pytest.mark.parametrize("key", [
    "semantic_decoder/_aspp/_extra_conv/kernel" + SUFFIX,  # Unknown variable.
    "ema/semantic_decoder/_aspp/_conv_bn_act/_conv/kernel" + SUFFIX,  # Unknown prefix.
    "encoder/_stem/notes",  # Not a variable entry.
])
def test_unknown_key_is_named(deeplab2_fixtures, pdl_r50beta_model, key):
    message = _error(shapes_only(deeplab2_fixtures, "pdl_r50beta", **{key: (3,)}),
                     pdl_r50beta_model)
    assert "neither used nor ignored (1)" in message and key in message
    # With an explicit extra ignore rule the checks pass (and reading the values starts, which
    # this shapes-only checkpoint cannot do).
    with pytest.raises(ValueError, match="has a shape but no value"):
        conv.convert_weights(shapes_only(deeplab2_fixtures, "pdl_r50beta", **{key: (3,)}),
                             pdl_r50beta_model, ignore_prefixes=(key,))


def test_wrong_shape_is_named(deeplab2_fixtures, pdl_r50beta_model):
    key = "instance_decoder/_low_level_conv2/_conv/kernel" + SUFFIX
    message = _error(shapes_only(deeplab2_fixtures, "pdl_r50beta", **{key: (1, 1, 256, 24)}),
                     pdl_r50beta_model)
    assert "shape/dtype mismatches (1)" in message
    assert f"{key}: checkpoint [1, 1, 256, 24], vipdl instance_decoder/projections/1/conv/kernel" \
        " [1, 1, 256, 16]" in message
    # A depthwise kernel in vipdl's layout is not silently accepted either.
    key = "semantic_head_without_last_layer/_conv1_bn_act/_depthwise/_depthwise_conv/" \
          "depthwise_kernel" + SUFFIX
    message = _error(shapes_only(deeplab2_fixtures, "pdl_r50beta", **{key: (5, 5, 1, 256)}),
                     pdl_r50beta_model)
    assert key in message and "[5, 5, 1, 256]" in message


def test_wrong_dtype_is_named(deeplab2_fixtures, pdl_r50beta_model):
    source = shapes_only(deeplab2_fixtures, "pdl_r50beta")
    source._arrays[LAST] = jax.ShapeDtypeStruct((1, 1, 256, 19), np.int32)
    message = _error(source, pdl_r50beta_model)
    assert f"{LAST}: dtype int32, expected floating point" in message


# (fixture whose keys the checkpoint has, config, model overrides, differing aspects, evidence
# in the message, the config the message must suggest)
MISMATCHES = {
    "resnet50_into_resnet50_beta": (
        "pdl_r50", "panoptic_deeplab_cityscapes_r50.py", {}, "backbone",
        "encoder/_stem/_conv/kernel", "configs/panoptic_deeplab_cityscapes_resnet50.py"),
    "pdl_into_vip": (
        "pdl_r50beta", "vip_deeplab_cityscapes_dvps_r50.py", {},
        "meta-architecture, depth head", "next_instance_decoder/",
        "configs/panoptic_deeplab_cityscapes_r50.py"),
    "vip_into_pdl": (
        "vip_r50beta_dvps", "panoptic_deeplab_cityscapes_r50.py", {},
        "meta-architecture, depth head", "depth_head_last_layer/kernel",
        "configs/vip_deeplab_cityscapes_dvps_r50.py"),
    "depth_into_no_depth": (
        "vip_r50beta_dvps", "vip_deeplab_cityscapes_vps_r50.py", {}, "depth head",
        "depth_head_last_layer/kernel", "configs/vip_deeplab_semkitti_dvps_r50.py"),
    "classes_19_into_124": (
        "pdl_r50beta", "vip_deeplab_vipseg_r50.py", {"meta_arch": "panoptic_deeplab"},
        "number of classes", "semantic_last_layer/kernel [1, 1, 256, 19]",
        "configs/panoptic_deeplab_cityscapes_r50.py"),
    "wide_resnet_os16_into_resnet50_beta_os32": (
        "vip_wr41_dvps", "vip_deeplab_cityscapes_dvps_r50.py", {}, "backbone",
        "encoder/_stage1/", "configs/vip_deeplab_cityscapes_dvps_wr41.py"),
    "mobilenet_imagenet_into_resnet50_beta": (
        "enc_mobilenet_v3_large", "panoptic_deeplab_cityscapes_r50.py", {}, "backbone",
        "encoder/_blocks/", "configs/panoptic_deeplab_cityscapes_mnv3l.py"),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_wrong_architecture_is_refused_with_the_matching_config(deeplab2_fixtures, case):
    fixture, config_name, overrides, aspects, evidence, suggestion = MISMATCHES[case]
    model = abstract_model(load_config(config_name, **overrides))
    message = _error(shapes_only(deeplab2_fixtures, fixture), model)
    assert f"differs in: {aspects}" in message
    assert evidence in message
    assert suggestion in message


# ------------------------------------------------------------------------------ encoder only


def test_imagenet_checkpoint_gives_an_encoder_workdir_for_warm_start(deeplab2_fixtures, tmp_path):
    d2 = deeplab2_fixtures
    weights = d2.seeded_weights("enc_resnet50_beta")
    d2.write_tf_checkpoint(weights | STEP_KEYS, str(tmp_path / "ckpt" / "ckpt-1000"))
    config = load_config("vip_deeplab_cityscapes_dvps_r50.py")
    workdir = tmp_path / "imagenet"
    conversion = conv.convert_checkpoint(tmp_path / "ckpt", config, workdir)
    assert conversion.encoder_only and set(conversion.weights) == {"encoder"}
    assert conversion.num_arrays == len(weights)

    # --config.init.checkpoint=<workdir>: the encoder is restored, the rest keeps its init.
    model = zeros_model(config)
    restored, initialised = checkpointing.warm_start(model, str(workdir))
    assert len(restored) == len(weights)
    assert all(p.startswith("encoder/") for p in restored)
    assert initialised and not any(p.startswith("encoder/") for p in initialised)
    stem = model.encoder.stem[0]
    np.testing.assert_array_equal(
        stem.conv.kernel[...], weights["encoder/_stem/_conv1_bn_act/_conv/kernel" + SUFFIX])
    np.testing.assert_array_equal(
        stem.bn.var[...],
        weights["encoder/_stem/_conv1_bn_act/_batch_norm/moving_variance" + SUFFIX])
    # It is not a whole model: inference refuses it, naming what is missing.
    with pytest.raises(ValueError, match="center_head/conv/depthwise/kernel: expected"):
        checkpointing.restore_model_weights(zeros_model(config), str(workdir))
    # Training cannot "resume" from it either; the message says to warm-start instead.
    manager = checkpointing.create_manager(checkpointing.checkpoint_dir(str(workdir)), keep=1,
                                           read_only=True)
    with pytest.raises(ValueError, match="init.checkpoint"):
        checkpointing.restore_checkpoint(manager, 0, model, None, None)
    manager.close()


def test_model_garden_prefix_is_the_encoder(deeplab2_fixtures, pdl_r50beta_model):
    weights = deeplab2_fixtures.seeded_weights("enc_resnet50_beta")
    garden = {"backbone/_encoder/" + k[len("encoder/"):]: v for k, v in weights.items()}
    a = conv.convert_weights(conv.ArrayCheckpoint(weights), pdl_r50beta_model)
    b = conv.convert_weights(conv.ArrayCheckpoint(garden | STEP_KEYS), pdl_r50beta_model)
    assert b.encoder_only and b.num_arrays == a.num_arrays
    flat_a, flat_b = dict(conv._flat_items(a.weights)), dict(conv._flat_items(b.weights))
    assert flat_a.keys() == flat_b.keys()
    for path in flat_a:
        np.testing.assert_array_equal(flat_a[path], flat_b[path])
    # Both prefixes at once is ambiguous.
    with pytest.raises(ValueError, match="same variable"):
        conv.convert_weights(conv.ArrayCheckpoint(weights | garden), pdl_r50beta_model)


# ------------------------------------------------------------------------------ workdirs, reader


def tiny_checkpoint(config, rng) -> dict[str, np.ndarray]:
    """A deeplab2-layout checkpoint for `config`'s model (random values), built from the names."""
    model = abstract_model(config)
    flat = dict(nnx.to_flat_state(nnx.state(model, (nnx.Param, nnx.BatchStat))))
    out = {}
    for name, path in conv.model_names(model).items():
        shape = flat[path].get_value().shape
        if name.endswith("depthwise_kernel"):
            shape = (shape[0], shape[1], shape[3], 1)  # deeplab2 layout [kh, kw, C, 1]
        out[name + SUFFIX] = rng.standard_normal(shape).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def tiny(deeplab2_fixtures, tmp_path_factory):
    """A tiny ViP-DeepLab (configs/synthetic.py:runlocal) as a TF checkpoint on disk."""
    d2 = deeplab2_fixtures
    config = load_config_file(os.path.join(REPO, "configs", "synthetic.py") + ":runlocal")
    weights = tiny_checkpoint(config, np.random.default_rng(0))
    directory = tmp_path_factory.mktemp("tiny_ckpt")
    d2.write_tf_checkpoint(weights | STEP_KEYS, str(directory / "ckpt-7"))
    return config, weights, directory


def test_cli_converts_into_a_workdir_the_predictor_loads(tiny, tmp_path, capsys):
    config, weights, directory = tiny
    workdir = tmp_path / "runs" / "tiny"
    argv = ["vipdl-convert-checkpoint", "--deeplab2", str(directory),
            "--config", os.path.join(REPO, "configs", "synthetic.py") + ":runlocal",
            "--workdir", str(workdir), "--config.postprocess.nms_kernel=5"]
    assert convert_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"keys used:     {len(weights)}" in out
    assert "keys ignored:  2 (step counter: 2)" in out
    assert f"scripts/predict_video.py --workdir {workdir}" in out
    assert sorted(os.listdir(tmp_path / "runs")) == ["tiny"]  # No staging left behind.
    assert checkpointing.load_config(str(workdir)).postprocess.nms_kernel == 5

    from vipdl.inference import VideoPredictor

    predictor = VideoPredictor.from_checkpoint(str(workdir))
    model = nnx.merge(predictor._graphdef, *predictor._state)
    name = "semantic_head_without_last_layer/_conv1_bn_act/_depthwise/_depthwise_conv/" \
           "depthwise_kernel" + SUFFIX
    np.testing.assert_array_equal(model.semantic_head.conv.depthwise.kernel[...],
                                  weights[name].transpose(0, 1, 3, 2))
    np.testing.assert_array_equal(model.next_offset_head.final.bias[...],
                                  weights["next_instance_regression_head_last_layer/bias"
                                          + SUFFIX])
    frames = np.random.default_rng(0).integers(0, 255, (2, 40, 60, 3), dtype=np.uint8)
    assert [p.panoptic.shape for p in predictor.predict(iter(frames))] == [(40, 60)] * 2

    # An existing workdir is kept unless --overwrite.
    assert convert_cli.main(argv) == 1
    assert "already exists" in capsys.readouterr().err
    assert convert_cli.main(argv + ["--overwrite"]) == 0
    # Typos in overrides and missing flags are usage errors.
    with pytest.raises(SystemExit) as exit_info:
        convert_cli.main(argv[:-1] + ["--config.postprocess.nms_kernal=5"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        convert_cli.main(argv[:3])


def test_failed_conversion_leaves_nothing(tiny, tmp_path, monkeypatch):
    config, weights, directory = tiny
    # Wrong architecture: refused before anything is written.
    other = load_config_file(os.path.join(REPO, "configs", "synthetic.py") + ":runlocal")
    other.model.instance_decoder_channels = 16
    with pytest.raises(ValueError, match="instance_decoder"):
        conv.convert_checkpoint(directory, other, tmp_path / "a")
    # A failure while writing removes the staging directory.
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpointing, "save_model_weights", broken)
    with pytest.raises(OSError, match="disk full"):
        conv.convert_checkpoint(directory, config, tmp_path / "b")
    assert os.listdir(tmp_path) == []
    # Refusing an existing workdir happens before reading the checkpoint.
    (tmp_path / "c").mkdir()
    with pytest.raises(FileExistsError, match="--overwrite"):
        conv.convert_checkpoint(tmp_path / "nowhere", config, tmp_path / "c")


def test_find_checkpoint_prefix(tmp_path):
    def touch(name):
        (tmp_path / name).write_bytes(b"")

    with pytest.raises(FileNotFoundError, match="no TF checkpoint in directory"):
        conv.find_checkpoint_prefix(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        conv.find_checkpoint_prefix(tmp_path / "ckpt-5")
    for step in (900, 60000, 7000):
        touch(f"ckpt-{step}.index")
        touch(f"ckpt-{step}.data-00000-of-00001")
    prefix = str(tmp_path / "ckpt-60000")
    assert conv.find_checkpoint_prefix(tmp_path) == prefix  # Highest step.
    assert conv.find_checkpoint_prefix(prefix) == prefix
    assert conv.find_checkpoint_prefix(prefix + ".index") == prefix
    # A TF `checkpoint` state file names the one to use.
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-7000"\nall_model_checkpoint_paths: "ckpt-7000"\n')
    assert conv.find_checkpoint_prefix(tmp_path) == str(tmp_path / "ckpt-7000")
    touch("model.tar.gz")
    with pytest.raises(FileNotFoundError, match="unpack it first"):
        conv.find_checkpoint_prefix(tmp_path / "model.tar.gz")


# ------------------------------------------------------------------------------ zoo registry


def test_published_checkpoints_have_matching_configs_and_docs():
    docs = open(os.path.join(REPO, "docs", "model_zoo.md")).read()
    for published in conv.PUBLISHED:
        assert f"{published.archive}.tar.gz" in docs, published.archive
        assert published.configs, published.archive
        for path in published.configs:
            assert os.path.isfile(os.path.join(REPO, path)), path
            config = load_config_file(os.path.join(REPO, path))
            m = from_config.model_config(config)
            assert m.backbone == published.backbone, path
            if published.meta_arch != "encoder_only":
                assert config.model.meta_arch == published.meta_arch, path
                assert (m.use_depth, m.num_classes) == (published.use_depth,
                                                        published.num_classes), path
                assert path in docs, path


@pytest.mark.slow
def test_cli_script_on_a_full_size_checkpoint(deeplab2_fixtures, tmp_path):
    """scripts/convert_checkpoint.py in a subprocess on pdl_r50beta, then the predictor loads it."""
    d2 = deeplab2_fixtures
    d2.write_tf_checkpoint(d2.seeded_weights("pdl_r50beta") | STEP_KEYS,
                           str(tmp_path / "d2" / "ckpt-60000"))
    workdir = tmp_path / "pdl"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "convert_checkpoint.py"),
         "--deeplab2", str(tmp_path / "d2"),
         "--config", os.path.join(REPO, "configs", "panoptic_deeplab_cityscapes_r50.py"),
         "--workdir", str(workdir)],
        capture_output=True, text=True, env=os.environ | {"PYTHONPATH": REPO}, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "keys used:     431" in result.stdout
    assert "backbone resnet50_beta, 19 classes" in result.stdout

    from vipdl.inference import VideoPredictor

    predictor = VideoPredictor.from_checkpoint(str(workdir))
    assert predictor.tracker == "iou"
    model = nnx.merge(predictor._graphdef, *predictor._state)
    key = "instance_center_head_last_layer/kernel" + SUFFIX
    np.testing.assert_array_equal(model.center_head.final.kernel[...],
                                  d2.seeded_value(1, key, (1, 1, 32, 1), 1.75))
