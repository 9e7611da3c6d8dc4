"""Every config builds its model (eval_shape, no allocation) and input pipeline; typos fail."""

import glob
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from vipdl import from_config, keys, trainer
from vipdl.cli import train as train_cli
from vipdl.data import augment, custom, pipeline, synthetic, synthetic_export

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    p for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
    if not p.endswith(("common.py", "__init__.py"))
)


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Trainable parameters (docs/architecture.md#parameter-counts): R50-beta ViP-DeepLab with depth head and 19 classes is
# 85,956,153; without the depth head (23,489) 85,932,664; VIPSeg's 124 classes add
# (124 - 19) * (256 + 1) to the semantic head; Panoptic-DeepLab R50-beta is 55,097,478.
EXPECTED_PARAMS = {
    "vip_deeplab_cityscapes_dvps_r50": 85_956_153,
    "vip_deeplab_semkitti_dvps_r50": 85_956_153,
    "vip_deeplab_cityscapes_vps_r50": 85_932_664,
    "vip_deeplab_kitti_step_r50": 85_932_664,
    "vip_deeplab_vipseg_r50": 85_932_664 + 105 * 257,
    "panoptic_deeplab_cityscapes_r50": 55_097_478,
}


# Stands in for the prepared data of configs whose dataset is "custom" (your own videos).
CUSTOM_DESCRIPTOR = custom.parse_spec(synthetic_export.custom_spec(), "dataset.json").descriptor


def _get_config(path, arg=None):
    config = _load(path).get_config(arg)
    if config.data.dataset == "custom":
        config.data.custom_descriptor = json.dumps(CUSTOM_DESCRIPTOR.to_dict())
    return config


def _layout(config, prefix=""):
    out = set()
    for k, v in config.items():
        out.add(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            out |= _layout(v, f"{prefix}{k}.")
    return out


def test_expected_configs_exist():
    names = {os.path.basename(p)[:-3] for p in CONFIG_FILES}
    assert {
        "synthetic",
        "vip_deeplab_cityscapes_dvps_r50",
        "vip_deeplab_cityscapes_vps_r50",
        "vip_deeplab_semkitti_dvps_r50",
        "vip_deeplab_kitti_step_r50",
        "vip_deeplab_vipseg_r50",
        "panoptic_deeplab_cityscapes_r50",
    } <= names


# Tracing a full-size R50 forward pass takes ~10-25 s on a busy 2-core machine: one R50 config
# and the synthetic one run by default, the others under `-m slow` (their models are still
# built with eval_shape by test_config_builds_model_and_pipeline).
_FORWARD_DEFAULT = ("synthetic", "vip_deeplab_cityscapes_dvps_r50")


def _forward_params():
    for path in CONFIG_FILES:
        name = os.path.basename(path)[:-3]
        marks = () if name in _FORWARD_DEFAULT else (pytest.mark.slow,)
        yield pytest.param(path, id=name, marks=marks)


@pytest.mark.parametrize("path", list(_forward_params()))
def test_config_model_forward_shapes(path):
    config = _get_config(path)
    descriptor = from_config.descriptor(config)
    vip = config.model.meta_arch == "vip_deeplab"
    h, w = config.data.crop_size_hw
    model = nnx.eval_shape(lambda: from_config.create_model(config, rngs=nnx.Rngs(0)))
    images = jax.ShapeDtypeStruct((1, h, w, 6 if vip else 3), jnp.float32)
    out = nnx.eval_shape(lambda m, x: m(x), model, images)
    assert out[keys.PRED_SEMANTIC_LOGITS].shape == (1, h, w, descriptor.num_classes)
    assert out[keys.PRED_OFFSET_MAP].shape == (1, h, w, 2)
    assert (keys.PRED_NEXT_OFFSET_MAP in out) == vip
    assert (keys.PRED_DEPTH in out) == config.model.use_depth


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: os.path.basename(p)[:-3])
def test_config_builds_model_and_pipeline(path):
    module = _load(path)
    assert "scripts/train.py --config=configs/" in module.__doc__  # Launch command.
    assert "Expected result" in module.__doc__
    config = _get_config(path)
    common = _load(os.path.join(REPO, "configs", "common.py"))
    assert _layout(config) == _layout(common.base_config())
    assert config.model.use_depth == config.data.use_depth
    trainer._validate_config(config)
    descriptor = from_config.descriptor(config)
    vip = config.model.meta_arch == "vip_deeplab"
    h, w = config.data.crop_size_hw
    assert (h - 1) % 32 == 0 and (w - 1) % 32 == 0, "crop sizes follow 32k + 1"

    model = nnx.eval_shape(lambda: from_config.create_model(config, rngs=nnx.Rngs(0)))
    assert model.num_classes == descriptor.num_classes
    assert type(model).__name__ == ("ViPDeepLab" if vip else "PanopticDeepLab")
    name = os.path.basename(path)[:-3]
    if name in EXPECTED_PARAMS:
        count = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        assert count == EXPECTED_PARAMS[name]

    # The pipeline with the config's options, over a small stand-in source (real data may be
    # absent here); constructing it validates crop, scales, batch split and flags.
    d = config.data
    source = synthetic.SyntheticPairSource(
        1, config=synthetic.SyntheticConfig(height=32, width=32, num_frames=2)
    )
    loader = pipeline.make_train_loader(
        source,
        descriptor=descriptor,
        crop_size_hw=tuple(d.crop_size_hw),
        batch_size=d.batch_size,
        seed=config.seed,
        scales=augment.scale_set(d.scales_min, d.scales_max, d.scales_step),
        use_next_frame=vip,
        use_depth=config.model.use_depth,
        num_workers=d.num_workers,
    )
    assert hasattr(loader, "get_state")


def test_synthetic_runlocal_pipeline_yields_training_batches():
    config = _load(os.path.join(REPO, "configs", "synthetic.py")).get_config("runlocal")
    mesh_free_iter = pipeline.make_train_loader(
        from_config.create_source(config, config.data.train_split),
        descriptor=from_config.descriptor(config),
        crop_size_hw=tuple(config.data.crop_size_hw),
        batch_size=config.data.batch_size,
        seed=0,
    )
    batch = next(mesh_free_iter)
    assert batch[keys.GT_IMAGE].shape == (config.data.batch_size, 33, 65, 6)
    # Train and eval videos come from disjoint per-split seed streams.
    eval_source = from_config.create_source(config, config.data.eval_split)
    train_source = from_config.create_source(config, config.data.train_split)
    assert eval_source.split != train_source.split
    assert not np.array_equal(eval_source.video(0).frames, train_source.video(0).frames)


def test_parse_arg():
    common = _load(os.path.join(REPO, "configs", "common.py"))
    args = common.parse_arg("runlocal,steps=5", runlocal=False, steps=1, name="x")
    assert args.runlocal is True and args.steps == 5 and args.name == "x"
    with pytest.raises(ValueError, match="unknown config argument 'runlcal'"):
        common.parse_arg("runlcal", runlocal=False)
    with pytest.raises(ValueError, match="not a int"):
        common.parse_arg("steps=five", steps=1)


def _parse(argv):
    from absl import flags

    fv = flags.FlagValues()
    config = train_cli._define_flags(fv, argv)
    fv(argv)
    return config.value


def test_command_line_overrides_and_typos():
    synthetic_py = os.path.join(REPO, "configs", "synthetic.py")
    config = _parse(["prog", f"--config={synthetic_py}:runlocal", "--config.train.num_steps=7"])
    assert config.train.num_steps == 7 and config.data.crop_size_hw == (33, 65)
    # FieldReference: one override sets both depth flags.
    config = _parse(["prog", f"--config={synthetic_py}", "--config.model.use_depth=true"])
    assert config.data.use_depth is True
    with pytest.raises(AttributeError, match='Did you mean "num_steps"'):
        _parse(["prog", f"--config={synthetic_py}", "--config.train.num_stepz=7"])
    with pytest.raises(AttributeError, match="locked"):  # No new fields at run time.
        _parse(["prog", f"--config={synthetic_py}"]).train.new_field = 1


def test_cli_reports_typos_and_exits(capsys):
    synthetic_py = os.path.join(REPO, "configs", "synthetic.py")
    argv = [
        "vipdl-train",
        f"--config={synthetic_py}",
        "--config.optim.lerning_rate=1",
        "--workdir=x",
    ]
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(argv)
    assert exit_info.value.code == 2
    assert 'Did you mean "learning_rate"' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.main(["vipdl-train", f"--config={synthetic_py}"])  # No --workdir.


def test_synthetic_world_follows_the_config_and_old_saved_configs():
    config = _load(os.path.join(REPO, "configs", "synthetic.py")).get_config()
    world = from_config.synthetic_world(config)
    s = config.data.synthetic
    assert (world.height, world.width, world.num_frames) == (s.height, s.width, s.num_frames)
    assert world.object_scale == s.object_scale
    assert world.annotation_stride == s.annotation_stride
    # A config.json written before these fields existed still loads (world defaults).
    old = ml_collections.ConfigDict(config.to_dict())
    del old.data.synthetic["object_scale"], old.data.synthetic["annotation_stride"]
    assert from_config.synthetic_world(old).object_scale == 1.0
    assert from_config.synthetic_world(old).annotation_stride == 1
    config.data.synthetic.annotation_stride = 3
    config.data.synthetic.num_frames = 6
    source = from_config.create_source(config, "val")
    assert source.config.annotated_frames == (2, 5) and len(source) == s.num_eval_videos
