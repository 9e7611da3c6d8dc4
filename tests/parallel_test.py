"""Tests of vipdl.parallel and the sharded train step (8 fake CPU devices, see conftest.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import AxisType, PartitionSpec

from vipdl import keys, optim, parallel, trainer


class _Toy(nnx.Module):
    """Conv + BatchNorm + conv: enough to exercise BN statistics across shards."""

    def __init__(self, *, rngs: nnx.Rngs, use_bn: bool = True):
        # No bias before BN: its true gradient is 0 and Adam would amplify rounding noise.
        self.conv = nnx.Conv(3, 8, (3, 3), use_bias=not use_bn, rngs=rngs)
        self.bn = nnx.BatchNorm(8, momentum=0.9, rngs=rngs) if use_bn else None
        self.head = nnx.Conv(8, 2, (1, 1), rngs=rngs)

    def __call__(self, x):
        x = self.conv(x / 127.5 - 1.0)
        if self.bn is not None:
            x = self.bn(x)
        return {"out": self.head(jax.nn.relu(x))}


def _loss_fn(predictions, batch):
    err = jnp.mean((predictions["out"] - batch["target"]) ** 2, axis=(1, 2, 3))  # [b]
    return jnp.mean(err), {"mse": jnp.mean(err)}


def _batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return {
        keys.GT_IMAGE: rng.uniform(0, 255, (n, 8, 8, 3)).astype(np.float32),
        "target": rng.normal(size=(n, 8, 8, 2)).astype(np.float32),
    }


def _train(mesh, *, steps=2, accum=1, use_bn=True, min_fsdp_size=2**14):
    tx, schedule = optim.make_optimizer(learning_rate=1e-2, num_steps=10)
    with jax.set_mesh(mesh):
        model, opt = trainer.make_sharded_init(
            lambda: _Toy(rngs=nnx.Rngs(0), use_bn=use_bn), tx, mesh, min_fsdp_size=min_fsdp_size
        )()
        step = trainer.make_train_step(
            _loss_fn,
            schedule,
            grad_accum_steps=accum,
            mesh=mesh,
            model_shardings=trainer.shardings_of(model),
            optimizer_shardings=trainer.shardings_of(opt),
        )
        for i in range(steps):
            batch = parallel.make_global_batch(_batch(seed=i), parallel.batch_sharding(mesh))
            model, opt, metrics = step(model, opt, batch)
    state = jax.device_get(nnx.to_pure_dict(nnx.state(model)))
    return state, jax.device_get(metrics), model


def test_create_mesh_shapes_and_auto_axes():
    mesh = parallel.create_mesh()
    assert dict(mesh.shape) == {"data": 8, "fsdp": 1}
    assert mesh.axis_types == (AxisType.Auto, AxisType.Auto)
    assert dict(parallel.create_mesh(-1, 2).shape) == {"data": 4, "fsdp": 2}
    with pytest.raises(ValueError, match="mesh.fsdp=3"):
        parallel.create_mesh(-1, 3)
    with pytest.raises(ValueError, match="mesh.data=3"):
        parallel.create_mesh(3, 2)


def test_param_partition_spec_rule():
    # Largest divisible dimension goes to fsdp; small or indivisible arrays stay replicated.
    assert parallel.param_partition_spec((3, 3, 64, 256), 4, 1) == PartitionSpec(
        None, None, None, "fsdp"
    )
    assert parallel.param_partition_spec((3, 3, 64, 257), 4, 1) == PartitionSpec(
        None, None, "fsdp", None
    )
    assert parallel.param_partition_spec((7, 5), 4, 1) == PartitionSpec()
    assert parallel.param_partition_spec((256,), 4, 10_000) == PartitionSpec()
    assert parallel.param_partition_spec((256,), 1, 1) == PartitionSpec()


def test_make_global_batch_shards_rows_and_drops_strings():
    mesh = parallel.create_mesh()
    local = {"x": np.arange(16 * 3, dtype=np.float32).reshape(16, 3), "id": np.array(["a"] * 16)}
    batch = parallel.make_global_batch(local, parallel.batch_sharding(mesh))
    assert set(batch) == {"x"}
    assert batch["x"].shape == (16, 3)
    assert len(batch["x"].addressable_shards) == 8
    assert batch["x"].addressable_shards[1].data.shape == (2, 3)
    np.testing.assert_array_equal(np.asarray(batch["x"]), local["x"])
    with pytest.raises(ValueError, match="leading"):
        parallel.make_global_batch(
            {"a": np.zeros((4, 1)), "b": np.zeros((8, 1))}, parallel.batch_sharding(mesh)
        )


def test_process_batch_size_requires_divisibility():
    mesh = parallel.create_mesh()
    assert parallel.process_batch_size(16, mesh) == 16
    with pytest.raises(ValueError, match="data.batch_size=12"):
        parallel.process_batch_size(12, mesh)


def test_initialize_distributed_single_process_and_bad_flags(monkeypatch):
    for name in (
        "JAX_COORDINATOR_ADDRESS",
        "SLURM_STEP_NUM_TASKS",
        "OMPI_COMM_WORLD_SIZE",
        "TPU_WORKER_HOSTNAMES",
        "MEGASCALE_COORDINATOR_ADDRESS",
    ):
        monkeypatch.delenv(name, raising=False)
    assert parallel.initialize_distributed() is False
    assert parallel.initialize_distributed(mode="never") is False
    with pytest.raises(ValueError, match="together"):
        parallel.initialize_distributed(coordinator_address="127.0.0.1:1")
    with pytest.raises(ValueError, match="mode"):
        parallel.initialize_distributed(mode="sometimes")


@pytest.fixture(scope="module")
def single_device_run():
    return _train(parallel.create_mesh(devices=jax.devices()[:1]))


def test_sharded_step_equals_single_device_step(single_device_run):
    want, want_metrics, _ = single_device_run
    got, got_metrics, model = _train(parallel.create_mesh())
    # BatchNorm statistics under a batch-sharded jit are global (synchronised BN).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), got, want)
    np.testing.assert_allclose(got_metrics["train/loss"], want_metrics["train/loss"], rtol=1e-5)
    assert model.conv.kernel[...].sharding.spec == PartitionSpec()


def test_fsdp_step_shards_params_and_equals_single_device_step(single_device_run):
    want, _, _ = single_device_run
    got, _, model = _train(parallel.create_mesh(-1, 2), min_fsdp_size=64)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), got, want)
    # conv kernel [3, 3, 3, 8]: the last (largest divisible) dim is split over fsdp.
    assert model.conv.kernel[...].sharding.spec == PartitionSpec(None, None, None, "fsdp")


def test_gradient_accumulation_equals_full_batch():
    # Without BatchNorm the mean of micro-batch gradients is the full-batch gradient.
    mesh = parallel.create_mesh()
    full, full_metrics, _ = _train(mesh, use_bn=False)
    accum, accum_metrics, _ = _train(mesh, use_bn=False, accum=2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), accum, full)
    np.testing.assert_allclose(accum_metrics["train/loss"], full_metrics["train/loss"], rtol=1e-5)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        trainer.make_train_step(_loss_fn, optax.constant_schedule(1.0), grad_accum_steps=0)


@pytest.mark.parametrize("accum", [1, 2])
def test_train_step_is_traced_once(accum):
    """The jitted train step compiles at the first step and is not retraced afterwards."""
    traces = []

    def counting_loss(predictions, batch):
        traces.append(1)  # Runs only while JAX traces the step.
        return _loss_fn(predictions, batch)

    mesh = parallel.create_mesh()
    tx, schedule = optim.make_optimizer(learning_rate=1e-2, num_steps=10)
    with jax.set_mesh(mesh):
        model, opt = trainer.make_sharded_init(lambda: _Toy(rngs=nnx.Rngs(0), use_bn=True), tx, mesh)()
        step = trainer.make_train_step(
            counting_loss,
            schedule,
            grad_accum_steps=accum,
            mesh=mesh,
            model_shardings=trainer.shardings_of(model),
            optimizer_shardings=trainer.shardings_of(opt),
        )
        for i in range(3):
            batch = parallel.make_global_batch(_batch(seed=i), parallel.batch_sharding(mesh))
            model, opt, _ = step(model, opt, batch)
    # One trace of the loss per step trace (the value-and-grad inside the scan body counts once).
    assert len(traces) == 1
