"""A training workdir for tests: a config and an untrained checkpoint, as `scripts/train.py`
leaves them (model, optimizer and data-iterator state at step 0, config.json)."""

from __future__ import annotations

from pathlib import Path


def write_untrained_run(workdir: Path, config) -> Path:
    """Saves `config`'s freshly initialised model as step 0 of `workdir`; returns `workdir`."""
    import grain
    import optax
    from flax import nnx

    from vipdl import checkpointing, from_config

    model = from_config.create_model(config, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    manager = checkpointing.create_manager(checkpointing.checkpoint_dir(str(workdir)), keep=1)
    data_iter = iter(grain.MapDataset.range(2).to_iter_dataset())
    checkpointing.save_checkpoint(manager, 0, model, optimizer, data_iter, force=True)
    manager.wait_until_finished()
    manager.close()
    checkpointing.save_config(config, str(workdir))
    return workdir
