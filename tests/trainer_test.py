"""End-to-end tests of vipdl.trainer.train_and_evaluate on the tiny `runlocal` synthetic config.

One uninterrupted 4-step run is the reference. A run SIGKILLed after step 3 (in a subprocess)
and resumed, and a run stopped by SIGTERM and resumed, must end with the same parameters. A
diverging run must stop with a message naming the step and leave the last checkpoint intact.
Compiled programs are shared between the runs through a persistent compilation cache.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache

from vipdl import checkpointing, from_config, keys, optim, parallel, trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from configs import synthetic  # noqa: E402

NUM_STEPS = 4


def _config():
    config = synthetic.get_config("runlocal")
    config.train.num_steps = NUM_STEPS
    config.train.checkpoint_every_steps = 1
    config.train.log_every_steps = 2
    config.train.eval_every_steps = NUM_STEPS
    config.train.image_every_steps = 2
    return config


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("jax_cache"))
    previous = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
        jax.config.jax_persistent_cache_min_entry_size_bytes,
    )
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()
    yield path
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", previous[2])
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def reference_run(cache_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("reference"))
    metrics = trainer.train_and_evaluate(_config(), workdir)
    return workdir, metrics


def _final_weights(workdir):
    model = from_config.create_model(_config(), rngs=nnx.Rngs(1))
    checkpointing.restore_model_weights(model, workdir)
    return jax.device_get(nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat))))


def _assert_same_weights(workdir_a, workdir_b):
    jax.tree.map(
        # Rounding noise only (see multiprocess_test); a wrong batch/RNG moves weights ~1e-3.
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4),
        _final_weights(workdir_a),
        _final_weights(workdir_b),
    )


def _steps(workdir):
    directory = checkpointing.checkpoint_dir(workdir)
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def test_create_model_maps_config_to_architecture():
    config = _config()
    model = nnx.eval_shape(lambda: from_config.create_model(config, rngs=nnx.Rngs(0)))
    assert type(model).__name__ == "ViPDeepLab"
    assert model.num_classes == 8 and not model.use_depth
    config.model.meta_arch = "panoptic_deeplab"
    model = nnx.eval_shape(lambda: from_config.create_model(config, rngs=nnx.Rngs(0)))
    assert type(model).__name__ == "PanopticDeepLab"
    config.model.meta_arch = "motion_deeplab"
    with pytest.raises(ValueError, match="meta_arch"):
        from_config.create_model(config, rngs=nnx.Rngs(0))
    config = _config()
    config.data.dataset = "kitti_step"  # No depth ground truth.
    config.model.use_depth = True
    with pytest.raises(ValueError, match="use_depth"):
        from_config.create_model(config, rngs=nnx.Rngs(0))


def test_train_and_evaluate_writes_everything(reference_run):
    workdir, metrics = reference_run
    assert metrics["step"] == NUM_STEPS
    for name in (
        "train/loss",
        "train/loss_semantic",
        "train/loss_center",
        "train/loss_offset",
        "train/loss_next_offset",
        "train/grad_norm",
        "train/param_norm",
        "train/learning_rate",
        "eval/vpq",
        "eval/vpq_k0",
    ):
        assert np.isfinite(metrics[name]), name
    assert 0.0 <= metrics["eval/vpq"] <= 100.0
    assert checkpointing.load_config(workdir).data.crop_size_hw == (33, 65)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
    # keep_checkpoints=3 latest; step 4 was evaluated, so it is also the best.
    assert _steps(workdir) == [2, 3, 4]
    assert checkpointing.resolve_step_dir(workdir, "best").endswith("/4")


_KILL_DRIVER = textwrap.dedent(
    """
    import os, signal, sys, time
    import jax
    jax.config.update("jax_disable_most_optimizations", True)
    jax.config.update("jax_compilation_cache_dir", {cache!r})
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    sys.path.insert(0, {tests!r})
    import trainer_test
    from vipdl import trainer

    def kill_after_step_3(step):
        if step == 3:
            # Step 2 must be committed so the resume starts mid-run; step 3's save is in flight.
            deadline = time.time() + 60
            while not os.path.exists(os.path.join({workdir!r}, "checkpoints", "2")):
                if time.time() > deadline:
                    break
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)

    trainer.train_and_evaluate(trainer_test._config(), {workdir!r}, step_callback=kill_after_step_3)
    """
)


@pytest.mark.slow  # A fresh process compiles everything again (~1-2 min on 2 busy cores).
def test_sigkill_then_rerun_matches_uninterrupted_run(reference_run, cache_dir, tmp_path):
    workdir = str(tmp_path / "killed")
    script = tmp_path / "driver.py"
    script.write_text(
        _KILL_DRIVER.format(
            repo=REPO, cache=cache_dir, tests=os.path.dirname(__file__), workdir=workdir
        )
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    steps_after_kill = _steps(workdir)
    assert 2 in steps_after_kill and 4 not in steps_after_kill
    metrics = trainer.train_and_evaluate(_config(), workdir)  # The same command again.
    assert metrics["step"] == NUM_STEPS
    _assert_same_weights(workdir, reference_run[0])


def test_sigterm_saves_stops_and_resumes(reference_run, tmp_path):
    workdir = str(tmp_path / "preempted")
    config = _config()
    config.train.checkpoint_every_steps = 100  # Only the preemption save.

    def preempt(step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    previous_handler = signal.getsignal(signal.SIGTERM)
    metrics = trainer.train_and_evaluate(config, workdir, step_callback=preempt)
    assert metrics["preempted"] == 1.0 and metrics["step"] == 2
    assert _steps(workdir) == [2]
    assert signal.getsignal(signal.SIGTERM) is previous_handler  # Restored after the run.
    metrics = trainer.train_and_evaluate(config, workdir)
    assert metrics["step"] == NUM_STEPS and "preempted" not in metrics
    _assert_same_weights(workdir, reference_run[0])


def test_non_finite_update_stops_with_step_and_keeps_last_checkpoint(reference_run, tmp_path):
    # Start from the reference run's step-2 checkpoint with a corrupted Adam second moment:
    # step 3's update then turns the parameters into NaN (the loss of step 3 is still finite).
    workdir = str(tmp_path / "diverged")
    shutil.copytree(
        checkpointing.checkpoint_dir(reference_run[0]), checkpointing.checkpoint_dir(workdir)
    )
    for step in (3, 4):
        shutil.rmtree(os.path.join(checkpointing.checkpoint_dir(workdir), str(step)))
    config = _config()
    mesh = parallel.create_mesh()
    model = from_config.create_model(config, rngs=nnx.Rngs(0))
    tx, _ = optim.make_optimizer(learning_rate=1e-3, num_steps=NUM_STEPS)  # Same state layout.
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    iterator = from_config.train_iterator(config, mesh)
    manager = checkpointing.create_manager(checkpointing.checkpoint_dir(workdir), keep=3)
    checkpointing.restore_checkpoint(manager, 2, model, optimizer, iterator)
    adam_nu = optimizer.opt_state[0].nu
    for variable in jax.tree.leaves(adam_nu, is_leaf=lambda x: isinstance(x, nnx.Variable)):
        variable[...] = -1.0 - variable[...]
    shutil.rmtree(os.path.join(checkpointing.checkpoint_dir(workdir), "2"))
    manager.close()
    manager = checkpointing.create_manager(checkpointing.checkpoint_dir(workdir), keep=3)
    checkpointing.save_checkpoint(manager, 2, model, optimizer, iterator, force=True)
    manager.wait_until_finished()
    manager.close()

    with pytest.raises(trainer.NonFiniteLossError, match="at step 3") as error:
        trainer.train_and_evaluate(config, workdir)
    assert "train/param_norm" in str(error.value) and "train/loss_semantic=" in str(error.value)
    assert _steps(workdir) == [2]
    model = from_config.create_model(config, rngs=nnx.Rngs(0))
    checkpointing.restore_model_weights(model, workdir)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_summary_images_are_rgb_uint8():
    from vipdl.data import descriptors

    pred = {
        "image": np.full((4, 6, 3), 300.0, np.float32),
        "semantic": np.array([[0, 1, 255, 7, 7, 7]] * 4),
        "panoptic": np.full((4, 6), 6001, np.int32),
        "center": np.linspace(-1, 2, 24, dtype=np.float32).reshape(4, 6),
    }
    images = trainer._summary_images(pred, descriptors.SYNTHETIC)
    assert set(images) == {
        "images/input",
        "images/semantic",
        "images/panoptic",
        "images/center_heatmap",
    }
    for image in images.values():
        assert image.shape == (1, 4, 6, 3) and image.dtype == np.uint8
    assert images["images/input"].max() == 255
    np.testing.assert_array_equal(images["images/semantic"][0, 0, 2], [0, 0, 0])  # void


def test_microbatches_take_strided_rows():
    x = np.arange(8)[:, None] * np.ones((1, 3))
    micro = np.asarray(trainer._microbatches(jax.numpy.asarray(x), 2, None))
    np.testing.assert_array_equal(micro[0, :, 0], [0, 2, 4, 6])
    np.testing.assert_array_equal(micro[1, :, 0], [1, 3, 5, 7])
    assert keys.GT_IMAGE == "image"


def test_eval_metrics_warns_when_vpq_is_undefined(caplog):
    # Videos shorter than the largest window leave the mean VPQ undefined: reported as 0 with
    # a warning that says why, not silently.
    summary = {"VPQ": None, "VPQ_th": None, "VPQ_st": None,
               "per_k": {0: {"VPQ": 50.0}, 3: {"VPQ": None}},
               "STQ": {"STQ": 0.5, "AQ": 0.4, "SQ": 0.625}}
    with caplog.at_level("WARNING"):
        out = trainer.eval_metrics(summary)
    assert out["eval/vpq"] == 0.0 and out["eval/vpq_k0"] == 50.0 and out["eval/sq"] == 62.5
    assert "window(s) k=[3]" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        trainer.eval_metrics(dict(summary, VPQ=50.0, per_k={0: {"VPQ": 50.0}}))
    assert "undefined" not in caplog.text
