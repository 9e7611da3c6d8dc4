"""Test setup: 8 fake CPU devices and fast (unoptimised) XLA compiles.

XLA_FLAGS must be set before JAX initialises its backend, hence at import time.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The CLIs' persistent compilation cache stays off in tests (nothing written to the home dir).
os.environ.setdefault("VIPDL_COMPILATION_CACHE", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

# Compile time dominates CPU tests; numerics are unaffected.
jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A workdir holding the `runlocal` synthetic config and an (untrained) checkpoint."""
    import grain
    import optax
    from flax import nnx

    from configs import synthetic as synthetic_config
    from vipdl import checkpointing, from_config

    workdir = tmp_path_factory.mktemp("run")
    config = synthetic_config.get_config("runlocal")
    model = from_config.create_model(config, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    manager = checkpointing.create_manager(checkpointing.checkpoint_dir(str(workdir)), keep=1)
    data_iter = iter(grain.MapDataset.range(2).to_iter_dataset())
    checkpointing.save_checkpoint(manager, 0, model, optimizer, data_iter, force=True)
    manager.wait_until_finished()
    manager.close()
    checkpointing.save_config(config, str(workdir))
    return workdir, config
