"""Fine-tuning on your own classes (configs/finetune_custom.py).

Default: the warm start of a tiny model from a checkpoint with another class set restores the
encoder, decoders and instance heads and re-initialises only the last semantic layer (by shape,
or by class names when the count is equal). Slow: a fine-tuned model beats the same steps from
scratch on held-out videos of a generated custom dataset.
"""

import dataclasses
import importlib.util
import json
import os

import grain
import jax
import numpy as np
import optax
import pytest
from flax import nnx

from vipdl import checkpointing, from_config, trainer
from vipdl.data import builders, custom, synthetic_export

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUSTOM = custom.parse_spec(synthetic_export.custom_spec(), "dataset.json").descriptor


def _config(name, arg=None):
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _tiny_finetune_config(source, descriptor, checkpoint):
    """configs/finetune_custom.py with the source run's (tiny) model and an inline descriptor."""
    c = _config("finetune_custom", "model=synthetic")
    for key, value in source.model.items():
        if key != "use_depth":
            c.model[key] = value
    c.data.crop_size_hw = source.data.crop_size_hw
    c.data.custom_descriptor = json.dumps(descriptor.to_dict())
    c.init.checkpoint = checkpoint
    return c


def _weights(model):
    return jax.device_get(nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat))))


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A tiny ViP-DeepLab of the 8-class synthetic world, saved like a training run."""
    workdir = str(tmp_path_factory.mktemp("source"))
    config = _config("synthetic", "runlocal")
    model = from_config.create_model(config, rngs=nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    checkpointing.save_config(config, workdir)
    manager = checkpointing.create_manager(checkpointing.checkpoint_dir(workdir), keep=1)
    iterator = iter(grain.MapDataset.range(4).to_iter_dataset())
    checkpointing.save_checkpoint(manager, 1, model, optimizer, iterator, force=True)
    manager.wait_until_finished()
    manager.close()
    return workdir, config, _flat(_weights(model))


def test_warm_start_reinitialises_only_the_semantic_classifier(source_run):
    workdir, source_config, saved = source_run
    config = _tiny_finetune_config(source_config, CUSTOM, workdir)
    model = from_config.create_model(config, rngs=nnx.Rngs(2))
    fresh = _flat(_weights(model))
    restored, initialised = trainer._warm_start(config, model)
    assert initialised == [
        "semantic_head/final/bias (checkpoint shape (8,))",
        "semantic_head/final/kernel (checkpoint shape (1, 1, 8, 8))",
    ]
    after = _flat(_weights(model))
    assert set(restored) == set(after) - {"semantic_head/final/bias", "semantic_head/final/kernel"}
    heads = ("center_head/final/kernel", "offset_head/final/kernel", "encoder/")
    assert all(any(p.startswith(h) for p in restored) for h in heads)
    assert any("next" in p for p in restored)  # The next-frame branch is kept too.
    for path in restored:
        np.testing.assert_array_equal(after[path], saved[path])
    np.testing.assert_array_equal(after["semantic_head/final/kernel"],
                                  fresh["semantic_head/final/kernel"])
    assert after["semantic_head/final/kernel"].shape == (1, 1, 8, 6)
    report = checkpointing.log_restore_report(restored, initialised, workdir)
    assert "initialised: semantic_head/final/kernel (checkpoint shape (1, 1, 8, 8))" in report


def test_same_number_of_other_classes_also_reinitialises(source_run):
    workdir, source_config, saved = source_run
    names = tuple(f"class{k}" for k in range(8))
    other = dataclasses.replace(CUSTOM, class_names=names, colormap=CUSTOM.colormap + (
        (1, 1, 1), (2, 2, 2)))
    config = _tiny_finetune_config(source_config, other, workdir)
    model = from_config.create_model(config, rngs=nnx.Rngs(2))
    fresh = _flat(_weights(model))
    restored, initialised = trainer._warm_start(config, model)
    assert initialised == [
        "semantic_head/final/bias (the checkpoint's classes differ)",
        "semantic_head/final/kernel (the checkpoint's classes differ)",
    ]
    after = _flat(_weights(model))
    np.testing.assert_array_equal(after["semantic_head/final/kernel"],
                                  fresh["semantic_head/final/kernel"])
    # Same classes (the source's own config): everything is restored.
    same = _tiny_finetune_config(source_config, from_config.descriptor(source_config), workdir)
    model = from_config.create_model(same, rngs=nnx.Rngs(2))
    restored, initialised = trainer._warm_start(same, model)
    assert initialised == [] and "semantic_head/final/kernel" in restored
    np.testing.assert_array_equal(_flat(_weights(model))["semantic_head/final/kernel"],
                                  saved["semantic_head/final/kernel"])


def test_a_custom_workdir_predicts_without_the_prepared_data(source_run, tmp_path):
    """The run's config.json carries the descriptor: class names and colours need no data."""
    from vipdl.inference import VideoPredictor

    workdir, source_config, _ = source_run
    config = _tiny_finetune_config(source_config, CUSTOM, workdir)
    config.data.data_dir = str(tmp_path / "deleted_tfds")
    model = from_config.create_model(config, rngs=nnx.Rngs(0))
    run = str(tmp_path / "run")
    checkpointing.save_config(config, run)
    manager = checkpointing.create_manager(checkpointing.checkpoint_dir(run), keep=1)
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    checkpointing.save_checkpoint(manager, 1, model, optimizer,
                                  iter(grain.MapDataset.range(2).to_iter_dataset()), force=True)
    manager.wait_until_finished()
    manager.close()
    predictor = VideoPredictor.from_checkpoint(run)
    assert predictor.descriptor.class_names == CUSTOM.class_names
    assert predictor.descriptor.colormap == CUSTOM.colormap


# --------------------------------------------------------------------------------------------
# Slow: fine-tuning beats training from scratch (docs/benchmarks.md has the full-size run).

SOURCE_STEPS, FINETUNE_STEPS = 400, 300


def _small_model(c):
    """A small model that learns the 64x128 world in a few hundred CPU steps."""
    c.model.update(
        backbone="resnet_tiny", backbone_width=8, backbone_blocks=(1, 1, 1, 1), output_stride=16,
        aspp_rates=(1, 2, 3), aspp_pooling="global", aspp_channels=16,
        semantic_decoder_channels=16, semantic_head_channels=16,
        semantic_low_level_channels=(16, 8), instance_decoder_channels=16,
        instance_head_channels=8, instance_low_level_channels=(8, 4),
    )
    c.data.crop_size_hw = c.data.eval_crop_size_hw = (65, 129)
    c.data.scales_min = c.data.scales_max = 1.0
    c.data.batch_size = 8  # One pair per fake device.
    c.optim.learning_rate = 2e-3
    c.postprocess.update(stuff_area_limit=32, keep_k_centers=32, nms_kernel=7)
    c.train.update(log_every_steps=50, image_every_steps=0)


@pytest.mark.slow
def test_finetuning_beats_scratch_on_held_out_videos(tmp_path):
    from vipdl.data import synthetic

    # 12 raw frames, every 3rd annotated: 4 annotated frames, so every VPQ window (1-4) exists
    # (a video too short for a window makes the mean VPQ undefined).
    world = dict(height=64, width=128, num_frames=12, annotation_stride=3, object_scale=0.6)
    raw = tmp_path / "raw"
    synthetic_export.write_dataset(raw, split_videos={"train": 16, "val": 4},
                                   config=synthetic.SyntheticConfig(**world), seed=11,
                                   layouts=("custom",))
    data_dir = tmp_path / "tfds"
    builders.prepare("custom", manual_dir=raw, data_dir=data_dir)

    # The source: a small model of the 8-class synthetic world (another class set).
    source = _config("synthetic")
    _small_model(source)
    source.data.synthetic.update(num_train_videos=48, num_eval_videos=4, seed=3, **world)
    source.train.update(num_steps=SOURCE_STEPS, checkpoint_every_steps=SOURCE_STEPS,
                        eval_every_steps=SOURCE_STEPS)
    source_vpq = trainer.train_and_evaluate(source, str(tmp_path / "source"))["eval/vpq"]

    # The same steps, learning rate and batches; only the initialisation differs.
    scores = {}
    for name, init in (("finetune", str(tmp_path / "source")), ("scratch", "")):
        c = _config("finetune_custom", f"model=synthetic,steps={FINETUNE_STEPS}")
        _small_model(c)
        c.data.data_dir = str(data_dir)
        c.init.checkpoint = init
        c.train.checkpoint_every_steps = FINETUNE_STEPS
        scores[name] = trainer.train_and_evaluate(c, str(tmp_path / name))["eval/vpq"]
    print(f"VPQ: source (8 classes) {source_vpq:.1f}; on the 6-class custom data after "
          f"{FINETUNE_STEPS} steps: fine-tuned {scores['finetune']:.1f}, "
          f"scratch {scores['scratch']:.1f}")
    # Measured: source 13.4; fine-tuned 14.1, scratch 11.0 (100 steps left both at 0.0). The
    # full-size comparison (scripts/benchmarks/finetune.py) gives +10.7; this tiny model
    # only has to keep the ordering with some room.
    assert scores["finetune"] > scores["scratch"] + 1.0
