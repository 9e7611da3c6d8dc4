"""Tests of vipdl.checkpointing on a small NNX model (BatchNorm, dropout RNG, Adam state)."""

import json
import os

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from vipdl import checkpointing


class _Toy(nnx.Module):
    def __init__(self, width: int = 4, *, rngs: nnx.Rngs, extra: bool = False):
        self.conv = nnx.Conv(3, width, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(width, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Conv(width, 2, (1, 1), rngs=rngs)
        self.extra = nnx.Linear(2, 2, rngs=rngs) if extra else None

    def __call__(self, x):
        return self.head(self.drop(self.bn(self.conv(x))))


def _iterator(seed=1):
    return iter(grain.MapDataset.range(100).shuffle(seed=seed).repeat().to_iter_dataset().batch(2))


def _state(model):
    return jax.device_get(nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat))))


def _assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _trained(seed=0, width=4, extra=False):
    """A model/optimizer after one real update, so nothing equals its fresh init."""
    model = _Toy(width, rngs=nnx.Rngs(seed), extra=extra)
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x = jnp.ones((2, 6, 6, 3))
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
    opt.update(model, grads)
    return model, opt


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A checkpoint dir with steps 1 (eval/vpq 50), 2, 3 (eval/vpq 30), 4; keep 2 + best."""
    directory = str(tmp_path_factory.mktemp("run") / "checkpoints")
    model, opt = _trained()
    it = _iterator()
    mngr = checkpointing.create_manager(directory, keep=2)
    states, next_batches = {}, {}
    for step, metrics in [(1, {"eval/vpq": 50.0}), (2, None), (3, {"eval/vpq": 30.0}), (4, None)]:
        next(it)
        checkpointing.save_checkpoint(mngr, step, model, opt, it, metrics=metrics, force=True)
        states[step] = (_state(model), jax.device_get(nnx.to_pure_dict(nnx.state(opt))))
        next_batches[step] = next(_copy_iterator(it))
        model.head.bias[...] = model.head.bias[...] + 1.0  # Make every step's weights distinct.
    mngr.wait_until_finished()
    mngr.close()
    return directory, states, next_batches


def _copy_iterator(it):
    fresh = _iterator()
    fresh.set_state(it.get_state())
    return fresh


def test_retention_keeps_latest_and_best(saved_run):
    directory, _, _ = saved_run
    assert sorted(int(d) for d in os.listdir(directory) if d.isdigit()) == [1, 3, 4]
    assert checkpointing.resolve_step_dir(directory, "best") == os.path.join(directory, "1")
    assert checkpointing.resolve_step_dir(directory, "latest") == os.path.join(directory, "4")


def test_restore_checkpoint_round_trip_with_iterator(saved_run):
    directory, states, next_batches = saved_run
    model, opt = _trained(seed=5)  # Different values, same structure.
    it = _iterator()  # Same pipeline, fresh position.
    mngr = checkpointing.create_manager(directory, keep=2)
    checkpointing.restore_checkpoint(mngr, 3, model, opt, it)
    mngr.close()
    _assert_trees_equal(_state(model), states[3][0])
    _assert_trees_equal(jax.device_get(nnx.to_pure_dict(nnx.state(opt))), states[3][1])
    np.testing.assert_array_equal(next(it), next_batches[3])
    # The dropout RNG stream is restored as a typed key.
    assert jnp.issubdtype(model.drop.rngs.key[...].dtype, jax.dtypes.prng_key)


def test_restore_model_weights_latest_and_best(saved_run):
    directory, states, _ = saved_run
    model = _Toy(rngs=nnx.Rngs(7))
    restored = checkpointing.restore_model_weights(model, os.path.dirname(directory))
    assert "conv/kernel" in restored and "bn/mean" in restored
    _assert_trees_equal(_state(model), states[4][0])
    checkpointing.restore_model_weights(model, directory, which="best")
    _assert_trees_equal(_state(model), states[1][0])
    checkpointing.restore_model_weights(model, os.path.join(directory, "3"))
    _assert_trees_equal(_state(model), states[3][0])


def _all_state(obj):
    """Every variable, PRNG keys as their key data (comparable with numpy)."""
    return jax.device_get(checkpointing._to_saveable(nnx.to_pure_dict(nnx.state(obj))))


def test_restore_into_abstract_model_equals_the_checkpoint_bit_for_bit(saved_run):
    directory, states, _ = saved_run
    saved_model, _ = _trained()  # What was saved, apart from the per-step head bias.
    abstract = nnx.eval_shape(lambda: _Toy(rngs=nnx.Rngs(11)))
    checkpointing.restore_model_weights(abstract, directory, which="best")
    leaves = jax.tree.leaves(nnx.state(abstract))
    assert all(isinstance(x, jax.Array) for x in leaves)  # Nothing left abstract.
    _assert_trees_equal(_state(abstract), states[1][0])
    # Not only the weights: the dropout PRNG state is the saved model's too.
    np.testing.assert_array_equal(_all_state(abstract)["drop"]["rngs"]["key"],
                                  _all_state(saved_model)["drop"]["rngs"]["key"])
    assert jnp.issubdtype(abstract.drop.rngs.key[...].dtype, jax.dtypes.prng_key)
    # The same as restoring into a randomly initialised model.
    concrete = _Toy(rngs=nnx.Rngs(11))
    checkpointing.restore_model_weights(concrete, directory, which="best")
    _assert_trees_equal(_all_state(abstract), _all_state(concrete))


def test_direct_read_equals_orbax_restore(saved_run, monkeypatch):
    directory, _, _ = saved_run
    step = checkpointing.resolve_step_dir(directory)
    target = checkpointing._abstract(checkpointing._to_saveable(
        nnx.to_pure_dict(nnx.state(_Toy(rngs=nnx.Rngs(0)), (nnx.Param, nnx.BatchStat)))))
    assert checkpointing._read_direct(step, target) is not None  # The fast path is taken.
    direct = _Toy(rngs=nnx.Rngs(5))
    checkpointing.restore_model_weights(direct, directory)
    monkeypatch.setattr(checkpointing, "_read_direct", lambda step_dir, target: None)
    with_orbax = _Toy(rngs=nnx.Rngs(6))
    checkpointing.restore_model_weights(with_orbax, directory)
    _assert_trees_equal(_all_state(direct), _all_state(with_orbax))
    # A target of another dtype is not read directly (Orbax converts it).
    wrong = jax.tree.map(lambda t: jax.ShapeDtypeStruct(t.shape, jnp.bfloat16, sharding=t.sharding),
                         target)
    assert checkpointing._read_direct(step, wrong) is None


def test_restore_checkpoint_into_abstract_objects(saved_run):
    directory, states, next_batches = saved_run
    model, opt = nnx.eval_shape(lambda: _trained(seed=5))
    it = _iterator()
    mngr = checkpointing.create_manager(directory, keep=2)
    checkpointing.restore_checkpoint(mngr, 3, model, opt, it)
    mngr.close()
    _assert_trees_equal(_state(model), states[3][0])
    _assert_trees_equal(jax.device_get(nnx.to_pure_dict(nnx.state(opt))), states[3][1])
    np.testing.assert_array_equal(next(it), next_batches[3])


def test_materialize_fills_what_a_restore_left_abstract():
    abstract = nnx.eval_shape(lambda: _Toy(rngs=nnx.Rngs(0)))
    checkpointing.materialize(abstract, seed=3)
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(nnx.state(abstract)))
    np.testing.assert_array_equal(jax.random.key_data(abstract.drop.rngs.key[...]),
                                  jax.random.key_data(jax.random.key(3)))
    assert int(abstract.drop.rngs.count[...]) == 0


def test_restore_model_weights_names_mismatches(saved_run):
    directory, _, _ = saved_run
    model = _Toy(6, rngs=nnx.Rngs(0), extra=True)
    with pytest.raises(ValueError) as error:
        checkpointing.restore_model_weights(model, directory)
    message = str(error.value)
    assert "conv/kernel: expected (3, 3, 3, 6), found (3, 3, 3, 4)" in message
    assert "extra/kernel: expected (2, 2), missing in checkpoint" in message


def test_each_kind_of_mismatch_is_named(saved_run, monkeypatch):
    directory, _, _ = saved_run
    # The direct header read agrees with Orbax's metadata.
    step = checkpointing.resolve_step_dir(directory)
    model_shapes = {p: v for p, v in checkpointing._checkpoint_model_shapes(step).items()}
    assert checkpointing._model_shapes_direct(step) == model_shapes
    # Paths all present, a shape differs.
    with pytest.raises(ValueError, match=r"conv/kernel: expected \(3, 3, 3, 6\), found"):
        checkpointing.restore_model_weights(_Toy(6, rngs=nnx.Rngs(0)), directory)
    # Shapes fit, a path is missing.
    with pytest.raises(ValueError, match="extra/kernel: expected .*missing in checkpoint"):
        checkpointing.restore_model_weights(_Toy(rngs=nnx.Rngs(0), extra=True), directory)
    # A store laid out otherwise: Orbax's metadata read is used instead.
    monkeypatch.setattr(checkpointing, "_model_shapes_direct", lambda step_dir: None)
    with pytest.raises(ValueError, match="extra/kernel: expected .*missing in checkpoint"):
        checkpointing.restore_model_weights(_Toy(rngs=nnx.Rngs(0), extra=True), directory)


def test_restore_model_weights_errors_for_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpointing.restore_model_weights(_Toy(rngs=nnx.Rngs(0)), str(tmp_path / "nope"))
    os.makedirs(tmp_path / "checkpoints")
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        checkpointing.restore_model_weights(_Toy(rngs=nnx.Rngs(0)), str(tmp_path))


def test_best_requires_eval_metrics(tmp_path):
    model, opt = _trained()
    mngr = checkpointing.create_manager(str(tmp_path), keep=1)
    checkpointing.save_checkpoint(mngr, 1, model, opt, _iterator(), force=True)
    mngr.wait_until_finished()
    mngr.close()
    with pytest.raises(ValueError, match="which='latest'"):
        checkpointing.resolve_step_dir(str(tmp_path), "best")


def test_warm_start_partial_restore(saved_run):
    directory, states, _ = saved_run
    model = _Toy(rngs=nnx.Rngs(3), extra=True)
    fresh_extra = np.asarray(model.extra.kernel[...])
    restored, initialised = checkpointing.warm_start(model, directory)
    assert "head/bias" in restored and "bn/var" in restored
    assert initialised == ["extra/bias", "extra/kernel"]
    state = _state(model)
    np.testing.assert_array_equal(state["head"]["bias"], states[4][0]["head"]["bias"])
    np.testing.assert_array_equal(state["extra"]["kernel"], fresh_extra)
    # A shape mismatch is reported, not restored.
    wide = _Toy(6, rngs=nnx.Rngs(3))
    restored, initialised = checkpointing.warm_start(wide, directory)
    assert "conv/kernel (checkpoint shape (3, 3, 3, 4))" in initialised
    assert "conv/kernel" not in restored
    report = checkpointing.log_restore_report(restored, initialised, directory)
    assert "restored:    head/bias" in report and "initialised: conv/kernel" in report


def test_config_round_trip(tmp_path):
    config = ml_collections.ConfigDict(
        {"seed": 3, "data": {"crop_size_hw": (33, 65), "dataset": "synthetic"}}
    )
    path = checkpointing.save_config(config, str(tmp_path))
    assert json.load(open(path))["data"]["crop_size_hw"] == [33, 65]
    loaded = checkpointing.load_config(str(tmp_path))
    assert loaded.data.crop_size_hw == (33, 65) and loaded.seed == 3
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []
    with pytest.raises(FileNotFoundError, match="training workdir"):
        checkpointing.load_config(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        checkpointing.load_config(str(tmp_path))


def test_create_manager_rejects_bad_keep(tmp_path):
    with pytest.raises(ValueError, match="keep_checkpoints"):
        checkpointing.create_manager(str(tmp_path), keep=0)
