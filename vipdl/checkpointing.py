"""Orbax checkpoints of training runs, and loading weights from them.

Layout: `<workdir>/checkpoints/<step>/` holds three Orbax items written together, atomically and
asynchronously:

* `state`: `{"model": pure dict of nnx.state(model), "optimizer": pure dict of
  nnx.state(optimizer)}` (typed PRNG keys stored as their uint32 key data);
* `data_iter`: the grain iterator state of every process (`process_<i>-of-<n>.json`), so a resumed
  run continues on the exact next batch;
* `metrics`: the eval metrics of that step, when it was evaluated (drives keep-best).

Retention keeps the `keep` newest checkpoints plus the one with the best `eval/vpq`.
`<workdir>/config.json` is the run's configuration (`save_config` / `load_config`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterable
from typing import Any, Literal

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from vipdl import formats

STATE = "state"
DATA_ITER = "data_iter"
BEST_METRIC = "eval/vpq"
CONFIG_FILE = "config.json"
CHECKPOINT_SUBDIR = "checkpoints"

Path = tuple[str, ...]


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def create_manager(
    directory: str,
    *,
    keep: int,
    best_metric: str | None = BEST_METRIC,
    async_save: bool = True,
    read_only: bool = False,
    low_memory: bool = False,
) -> ocp.CheckpointManager:
    """A CheckpointManager keeping the `keep` latest steps plus the best by `best_metric`.

    Args:
      directory: checkpoint directory (created unless `read_only`).
      keep: number of most recent checkpoints to keep (>= 1).
      best_metric: metric name (higher is better) whose best checkpoint is also kept; None keeps
        only the latest ones.
      async_save: write in a background thread (the train loop continues meanwhile).
      read_only: open an existing directory for restoring only.
      low_memory: for synchronous saves of host (numpy) arrays that nobody modifies meanwhile:
        no defensive copy of them and no chunk compression, which would each hold another copy
        of the weights while Orbax writes (float weights barely compress).
    """
    if keep < 1:
        raise ValueError(f"train.keep_checkpoints must be >= 1, got {keep}")
    policies: list[pp.PreservationPolicy] = [pp.LatestN(keep)]
    best_fn = None
    if best_metric is not None:

        def best_fn(metrics: dict[str, float]) -> float:
            return float(metrics[best_metric])

        policies.append(
            pp.BestN(get_metric_fn=best_fn, n=1, keep_checkpoints_without_metrics=False)
        )
    options = ocp.CheckpointManagerOptions(
        # best_fn makes the manager persist the metrics item and answer best_step().
        best_fn=best_fn,
        best_mode="max",
        preservation_policy=pp.AnyPreservationPolicy(policies),
        enable_async_checkpointing=async_save,
        create=not read_only,
        read_only=read_only,
        cleanup_tmp_directories=not read_only,
    )
    return ocp.CheckpointManager(
        directory, options=options, handler_registry=_handler_registry(low_memory=low_memory)
    )


# Orbax splits each replicated array among its replicas so they write in parallel; every split
# compiles a slice per (shape, device), which dominates small-model saves (and CPU tests with
# fake devices). Only arrays whose per-replica slice is at least this large are split.
_MIN_REPLICA_PARALLEL_BYTES = 8 << 20


def _handler_registry(*, low_memory: bool = False) -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    th = ocp.type_handlers
    types = th.create_type_handler_registry(
        (int, th.ScalarHandler()),
        (float, th.ScalarHandler()),
        (bytes, th.ScalarHandler()),
        (np.number, th.ScalarHandler()),
        (np.ndarray, th.NumpyHandler(deepcopy_host_arrays=not low_memory)),
        (str, th.StringHandler()),
        (
            jax.Array,
            th.ArrayHandler(min_slice_bytes_for_replica_parallel=_MIN_REPLICA_PARALLEL_BYTES),
        ),
    )
    state_handler = ocp.PyTreeCheckpointHandler(
        type_handler_registry=types, use_compression=not low_memory
    )
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    registry.add(STATE, ocp.args.PyTreeSave, state_handler)
    registry.add(STATE, ocp.args.PyTreeRestore, state_handler)
    iterator_handler = grain.checkpoint.CheckpointHandler()
    registry.add(DATA_ITER, grain.checkpoint.CheckpointSave, iterator_handler)
    registry.add(DATA_ITER, grain.checkpoint.CheckpointRestore, iterator_handler)
    return registry


# --- train state <-> saveable trees --------------------------------------------------------


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_abstract(x: Any) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct)


def _key_impl(key: Any):
    """The PRNG implementation of a typed key array or of its abstract shape."""
    if not _is_abstract(key):
        return jax.random.key_impl(key)
    found = []

    def probe(k):
        found.append(jax.random.key_impl(k))
        return jax.random.key_data(k)

    jax.eval_shape(probe, key)
    return found[0]


def _saveable_leaf(x: Any) -> Any:
    """Typed PRNG keys -> uint32 key data (Orbax stores plain arrays only); abstract stays
    abstract."""
    if not _is_key(x):
        return x
    if _is_abstract(x):
        return jax.eval_shape(jax.random.key_data, x)
    return jax.random.key_data(x)


def _to_saveable(tree):
    return jax.tree.map(_saveable_leaf, tree)


def _rewrap(current: Any, restored: Any) -> Any:
    """A restored leaf in the type of `current` (key data -> typed key)."""
    if _is_key(current):
        return jax.random.wrap_key_data(restored, impl=_key_impl(current))
    return restored


def train_state_tree(model: nnx.Module, optimizer: nnx.Optimizer) -> dict:
    """The `state` item: pure dicts of the model and optimizer state (keys as key data).

    Works on concrete and on abstract (`nnx.eval_shape`) objects alike.
    """
    return {
        "model": _to_saveable(nnx.to_pure_dict(nnx.state(model))),
        "optimizer": _to_saveable(nnx.to_pure_dict(nnx.state(optimizer))),
    }


def _default_sharding() -> jax.sharding.Sharding:
    return jax.sharding.SingleDeviceSharding(jax.devices()[0])


def _abstract(tree, shardings=None):
    """Restore targets: shape, dtype and sharding of each leaf.

    Sharding comes from `shardings` (a tree of the same structure) when given, else from the
    leaf; abstract leaves without one land on the default device.
    """
    if shardings is None:
        shardings = jax.tree.map(lambda x: getattr(x, "sharding", None), tree)

    def target(x, sharding):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or _default_sharding())

    return jax.tree.map(target, tree, shardings, is_leaf=lambda x: x is None)


def _load_into(obj, restored: dict) -> None:
    """Writes a restored pure dict into `obj`'s state (concrete or abstract), re-wrapping PRNG
    key data."""
    state = nnx.state(obj)
    current = nnx.to_pure_dict(state)
    nnx.replace_by_pure_dict(state, jax.tree.map(_rewrap, current, restored))
    nnx.update(obj, state)


def materialize(obj, *, seed: int = 0) -> None:
    """Gives every still-abstract variable of `obj` a concrete value, cheaply and in place.

    What a restore leaves abstract is never a weight (restores are strict about those): PRNG
    keys become `seed`'s key, counters and anything else zeros. No initialiser runs.
    """
    state = nnx.state(obj)
    pure = nnx.to_pure_dict(state)

    def concrete(x):
        if not _is_abstract(x):
            return x
        if _is_key(x):
            data = jnp.zeros(jax.eval_shape(jax.random.key_data, x).shape, jnp.uint32)
            key = jax.random.key_data(jax.random.key(seed, impl=_key_impl(x)))
            return jax.random.wrap_key_data(data + key, impl=_key_impl(x))
        return jnp.zeros(x.shape, x.dtype)

    nnx.replace_by_pure_dict(state, jax.tree.map(concrete, pure))
    nnx.update(obj, state)


def _to_pure_shardings(shardings) -> dict:
    return nnx.to_pure_dict(shardings) if isinstance(shardings, nnx.State) else shardings


def save_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    data_iter: Any,
    *,
    metrics: dict[str, float] | None = None,
    force: bool = False,
) -> bool:
    """Starts an (async) save of model, optimizer and iterator state at `step`.

    `data_iter` must be a grain iterator (DatasetIterator or DataLoader iterator); its state is
    read now, so the checkpoint describes the iterator exactly after the batches of `step`.
    Returns whether a save was started.
    """
    args = ocp.args.Composite(
        **{
            STATE: ocp.args.PyTreeSave(train_state_tree(model, optimizer)),
            DATA_ITER: grain.checkpoint.CheckpointSave(data_iter),
        }
    )
    return manager.save(step, args=args, metrics=metrics, force=force)


def save_model_weights(workdir: str, weights: dict, *, step: int = 0) -> str:
    """Writes a weights-only checkpoint `<workdir>/checkpoints/<step>/state` synchronously.

    `weights` is a (possibly partial) pure dict of `nnx.state(model, (nnx.Param, nnx.BatchStat))`
    of numpy or JAX arrays, e.g. a converted deeplab2 checkpoint. It is stored as the `state`
    item's "model" entry, as `save_checkpoint` stores it, so `restore_model_weights` and
    `warm_start` read it like a training checkpoint; there is no optimizer or data-iterator state
    to resume training from. The arrays are written without copies or compression
    (`create_manager(low_memory=True)`), so the peak memory stays near one copy of the weights
    (docs/benchmarks.md#deeplab2-checkpoint-conversion). Returns the step directory.
    """
    manager = create_manager(
        checkpoint_dir(workdir), keep=1, best_metric=None, async_save=False, low_memory=True
    )
    try:
        state = ocp.args.PyTreeSave({"model": weights})
        manager.save(step, args=ocp.args.Composite(**{STATE: state}))
        manager.wait_until_finished()
    finally:
        manager.close()
    return os.path.join(checkpoint_dir(workdir), str(step))


def restore_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    data_iter: Any,
    *,
    shardings: tuple[Any, Any] | None = None,
) -> None:
    """Restores `step` into `model`, `optimizer` (in place) and `data_iter`.

    `model` and `optimizer` may be abstract (`nnx.eval_shape`): nothing is initialised, every
    array is read straight into its sharding. Shardings: `shardings` = (model, optimizer)
    sharding trees (`nnx.State` or pure dicts) when given, else those of the current arrays
    (abstract ones without a sharding go to the default device).
    """
    step_dir = os.path.join(os.fspath(manager.directory), str(step))
    if not os.path.isdir(os.path.join(step_dir, DATA_ITER)):
        raise ValueError(
            f"{step_dir} holds model weights only (e.g. a converted deeplab2 checkpoint), no "
            "training state to resume; train in a new workdir with "
            f"--config.init.checkpoint={os.path.dirname(os.path.dirname(step_dir))}"
        )
    tree = train_state_tree(model, optimizer)
    target_shardings = None
    if shardings is not None:
        target_shardings = _to_saveable_shardings(tree, shardings)
    target = _abstract(tree, target_shardings)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            **{
                STATE: ocp.args.PyTreeRestore(
                    target, restore_args=ocp.checkpoint_utils.construct_restore_args(target)
                ),
                DATA_ITER: grain.checkpoint.CheckpointRestore(data_iter),
            }
        ),
    )
    _load_into(model, restored[STATE]["model"])
    _load_into(optimizer, restored[STATE]["optimizer"])


def _to_saveable_shardings(tree: dict, shardings: tuple[Any, Any]) -> dict:
    """Sharding trees shaped like `train_state_tree` (a key's data keeps the key's sharding)."""
    out = {}
    for name, sh in zip(("model", "optimizer"), shardings):
        out[name] = jax.tree.map(lambda _, s: s, tree[name], _to_pure_shardings(sh))
    return out


# --- weights from another run ----------------------------------------------------------------


def _flatten(tree: dict, prefix: Path = ()) -> dict[Path, Any]:
    out: dict[Path, Any] = {}
    for k, v in tree.items():
        path = (*prefix, str(k))
        if isinstance(v, dict):
            out.update(_flatten(v, path))
        else:
            out[path] = v
    return out


def _subset(tree: dict, keep: set[Path], prefix: Path = ()) -> dict:
    """The nested sub-dict of `tree` with only the leaves in `keep` (original key types)."""
    out = {}
    for k, v in tree.items():
        path = (*prefix, str(k))
        if isinstance(v, dict):
            sub = _subset(v, keep, path)
            if sub:
                out[k] = sub
        elif path in keep:
            out[k] = v
    return out


def _merge_into(tree: dict, new: dict) -> dict:
    out = dict(tree)
    for k, v in new.items():
        out[k] = _merge_into(tree[k], v) if isinstance(v, dict) else v
    return out


def _join(path: Iterable[str]) -> str:
    return "/".join(path)


def resolve_step_dir(path: str, which: Literal["latest", "best"] = "latest") -> str:
    """The step directory meant by `path`: a workdir, its checkpoint dir, or a step dir."""
    if which not in ("latest", "best"):
        raise ValueError(f"which must be 'latest' or 'best', got {which!r}")
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(os.path.join(path, STATE)):
        return path
    directory = path
    if os.path.isdir(os.path.join(path, CHECKPOINT_SUBDIR)):
        directory = os.path.join(path, CHECKPOINT_SUBDIR)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    manager = create_manager(directory, keep=1, read_only=True)
    try:
        latest = manager.latest_step()
        step = latest if which == "latest" else manager.best_step()
        if which == "best" and latest is not None and (step is None or not manager.metrics(step)):
            raise ValueError(
                f"no checkpoint in {directory} carries eval metrics, so there is no 'best' one; "
                "use which='latest'"
            )
    finally:
        manager.close()
    if step is None:
        raise FileNotFoundError(f"no finished checkpoint in {directory}")
    return os.path.join(directory, str(step))


def _checkpoint_model_shapes(step_dir: str) -> dict[Path, tuple[tuple[int, ...], Any]]:
    state_dir = os.path.join(step_dir, STATE)
    if not os.path.isdir(state_dir):
        raise FileNotFoundError(f"{step_dir} is not a vipdl checkpoint (no '{STATE}' item)")
    metadata = ocp.PyTreeCheckpointer().metadata(state_dir)
    tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata.tree
    if "model" not in tree:
        raise ValueError(f"{state_dir}: no 'model' entry; found {sorted(tree)}")
    return {p: (tuple(m.shape), m.dtype) for p, m in _flatten(tree["model"]).items()}


def _restore_model_subset(model: nnx.Module, step_dir: str, paths: set[Path], filt) -> None:
    state = nnx.state(model, filt)
    current = nnx.to_pure_dict(state)
    pure = _to_saveable(current)
    target = _abstract(_subset(pure, paths))
    restored = _read_direct(step_dir, target)
    if restored is None:
        restored = ocp.PyTreeCheckpointer().restore(
            os.path.join(step_dir, STATE),
            args=ocp.args.PyTreeRestore(
                item={"model": target},
                restore_args=ocp.checkpoint_utils.construct_restore_args({"model": target}),
                partial_restore=True,
            ),
        )["model"]
    merged = _merge_into(pure, restored)
    nnx.replace_by_pure_dict(state, jax.tree.map(_rewrap, current, merged))
    nnx.update(model, state)


# Parameters and BatchNorm statistics; RNG streams and counters stay the model's own.
_MAX_LISTED = 8
_WEIGHTS = (nnx.Param, nnx.BatchStat)
_NOT_WEIGHTS = nnx.Not(nnx.Any(*_WEIGHTS))


def restore_model_weights(
    model: nnx.Module, path: str, *, which: Literal["latest", "best"] = "latest"
) -> list[str]:
    """Fills `model`'s parameters and BatchNorm statistics from a checkpoint, strictly.

    `model` may be abstract (`vipdl.from_config.abstract_model`, `nnx.eval_shape`): then no
    initialiser ever runs; the weights are read into it and its PRNG state is taken from the
    checkpoint (or materialised, see `materialize`). The restored arrays equal the saved ones
    bit for bit.

    Args:
      model: the model to fill (its arrays keep their current shardings/devices; abstract ones
        go to the default device).
      path: a workdir, its `checkpoints` directory, or one step directory.
      which: the latest step or the best one by eval VPQ (when `path` is not a step dir).

    Returns:
      The restored parameter paths ("a/b/kernel"), sorted.

    Raises:
      ValueError: naming the first missing paths and shape mismatches (expected vs found) and
        how many there are in all, when the checkpoint does not fit the model.
    """
    step_dir = resolve_step_dir(path, which)
    wanted = _flatten(nnx.to_pure_dict(nnx.state(model, _WEIGHTS)))
    # Checked before reading: Orbax fills a path the checkpoint lacks without complaint, and a
    # refused shape leaves its pending reads failing noisily after the error. Orbax's own
    # metadata read opens every array of the run (0.7 s for the demo model); the direct read
    # of the model's array headers takes 0.03 s and is trusted only when everything fits.
    found = _model_shapes_direct(step_dir)
    if found is None or _misfits(wanted, found):
        found = _checkpoint_model_shapes(step_dir)
        _raise_on_misfit(wanted, found, step_dir)
    _restore_model_subset(model, step_dir, set(wanted), _WEIGHTS)
    # The model's other state (PRNG keys and counters of dropout) comes from the checkpoint
    # when it has it with the same shape, so the model equals the saved one; else it is
    # materialised cheaply if the model was abstract.
    others = _flatten(_to_saveable(nnx.to_pure_dict(nnx.state(model, _NOT_WEIGHTS))))
    same = {p for p, v in others.items() if p in found and found[p][0] == tuple(v.shape)}
    if same:
        _restore_model_subset(model, step_dir, same, _NOT_WEIGHTS)
    materialize(model)
    return sorted(_join(p) for p in wanted)


def _model_shapes_direct(step_dir: str) -> dict[Path, tuple[tuple[int, ...], Any]] | None:
    """`_checkpoint_model_shapes` of the "model" arrays only, read straight from the zarr headers
    in Orbax's OCDBT store; None when the store is not laid out that way."""
    import tensorstore as ts

    try:
        kv = ts.KvStore.open(_ocdbt_spec(step_dir)).result()
        headers = [k for k in kv.list().result()
                   if k.startswith(b"model.") and k.endswith(b"/.zarray")]
        reads = [(k, kv.read(k)) for k in headers]
        out = {}
        for k, r in reads:
            meta = json.loads(r.result().value)
            name = k[: -len(b"/.zarray")].decode()
            out[tuple(name.split(".")[1:])] = (tuple(meta["shape"]), np.dtype(meta["dtype"]))
    except Exception:  # Any other layout (or version): the caller asks Orbax instead.
        return None
    return out or None


def _ocdbt_spec(step_dir: str) -> dict[str, Any]:
    return {"driver": "ocdbt", "base": "file://" + os.path.abspath(os.path.join(step_dir, STATE))}


def _read_direct(step_dir: str, target: dict) -> dict | None:
    """The "model" arrays of `target` (a nested dict of `jax.ShapeDtypeStruct`s with shardings)
    read straight from the zarr arrays of Orbax's OCDBT store, in parallel; None when any is
    not there in that form (the caller restores with Orbax).

    Orbax spends most of a small model's restore on per-array bookkeeping (0.6 s for the demo
    model, against 0.2 s here); the bytes read are the same, so the arrays are bit for bit
    equal (tests/checkpointing_test.py compares both).
    """
    import tensorstore as ts

    flat = _flatten(target)
    base = _ocdbt_spec(step_dir)
    try:
        opened = {p: ts.open({"driver": "zarr",
                              "kvstore": {**base, "path": ".".join(("model", *p)) + "/"}},
                             open=True, read=True) for p in flat}
        reads = {p: f.result().read() for p, f in opened.items()}
        values = {p: r.result() for p, r in reads.items()}
    except Exception:  # Missing, another layout or version: Orbax knows.
        return None
    out = {}
    for p, t in flat.items():
        value = values[p]
        if value.shape != tuple(t.shape) or value.dtype != t.dtype:
            return None
        out[p] = jax.make_array_from_callback(t.shape, t.sharding, lambda i, v=value: v[i])
    return _unflatten_like(target, out)


def _unflatten_like(tree: dict, flat: dict[Path, Any], prefix: Path = ()) -> dict:
    return {k: _unflatten_like(v, flat, (*prefix, str(k))) if isinstance(v, dict)
            else flat[(*prefix, str(k))] for k, v in tree.items()}


def _misfits(wanted: dict[Path, Any], found: dict[Path, tuple[tuple[int, ...], Any]]) -> list[str]:
    problems = []
    for p, value in sorted(wanted.items()):
        if p not in found:
            problems.append(f"  {_join(p)}: expected {tuple(value.shape)}, missing in checkpoint")
        elif found[p][0] != tuple(value.shape):
            problems.append(f"  {_join(p)}: expected {tuple(value.shape)}, found {found[p][0]}")
    return problems


def _raise_on_misfit(wanted: dict[Path, Any], found: dict[Path, tuple[tuple[int, ...], Any]],
                     step_dir: str) -> None:
    """Raises a ValueError naming the first missing paths and shape mismatches (expected vs
    found) and how many there are in all, when the checkpoint does not fit the model."""
    problems = _misfits(wanted, found)
    if not problems:
        return
    # One changed width breaks every parameter after it; the first few lines show the cause.
    shown = problems[:_MAX_LISTED]
    if len(problems) > _MAX_LISTED:
        shown.append(f"  ... and {len(problems) - _MAX_LISTED} more")
    extra = len(set(found) - set(wanted))
    hint = f"; the checkpoint also has {extra} arrays the model does not" if extra else ""
    raise ValueError(
        f"checkpoint {step_dir} does not fit the model ({len(problems)} of {len(wanted)} "
        f"arrays differ{hint}). Was it trained with another model config?\n"
        + "\n".join(shown)
    )


def warm_start(
    model: nnx.Module, path: str, *, which: Literal["latest", "best"] = "latest"
) -> tuple[list[str], list[str]]:
    """Partial restore: copies every parameter/statistic whose path and shape match.

    Used to initialise ViP-DeepLab from a Panoptic-DeepLab run: the encoder, semantic and
    instance branches are restored, the next-frame branch and depth head keep their fresh
    initialisation (as deeplab2's `train_lib` does).

    Returns:
      `(restored, initialised)` sorted path lists; `initialised` entries whose path exists with
      another shape carry a note "(checkpoint shape ...)".
    """
    step_dir = resolve_step_dir(path, which)
    found = _checkpoint_model_shapes(step_dir)
    wanted = _flatten(nnx.to_pure_dict(nnx.state(model, _WEIGHTS)))
    restore, initialised = set(), []
    for p, value in sorted(wanted.items()):
        if p in found and found[p][0] == tuple(value.shape):
            restore.add(p)
        elif p in found:
            initialised.append(f"{_join(p)} (checkpoint shape {found[p][0]})")
        else:
            initialised.append(_join(p))
    if not restore:
        raise ValueError(
            f"warm start: no parameter of the model matches {step_dir} (check init.checkpoint)"
        )
    _restore_model_subset(model, step_dir, restore, _WEIGHTS)
    return sorted(_join(p) for p in restore), initialised


# --- configs ----------------------------------------------------------------------------------


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes `<workdir>/config.json` atomically (temp file + rename); returns its path."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, CONFIG_FILE)
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    formats.atomic_write_bytes(path, (text + "\n").encode())
    return path


def _tuples(value):
    # JSON has no tuples; the configs use tuples for sizes and rates.
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The configuration a run saved in `<workdir>/config.json` (lists read back as tuples)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found; is {workdir} a vipdl training workdir?")
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e})") from None
    return ml_collections.ConfigDict(_tuples(data))


def log_restore_report(restored: list[str], initialised: list[str], source: str) -> str:
    """A human-readable warm-start report (also logged)."""
    lines = [
        f"Warm start from {source}: {len(restored)} arrays restored, "
        f"{len(initialised)} freshly initialised."
    ]
    lines += ["  restored:    " + p for p in restored]
    lines += ["  initialised: " + p for p in initialised]
    text = "\n".join(lines)
    logging.info("%s", text)
    return text


# --- preemption -------------------------------------------------------------------------------


class PreemptionWatcher:
    """Turns SIGTERM into "save and stop after this step".

    Multi-process runs use Orbax/JAX's preemption sync point (`manager.reached_preemption`),
    which makes every process agree on the step; JAX installs its own SIGTERM notifier there. A
    single process handles the signal itself; `close()` restores the previous handler.
    """

    def __init__(self, manager: ocp.CheckpointManager):
        self._manager = manager
        self._event = threading.Event()
        self._previous = None
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())

    def reached(self, step: int) -> bool:
        if jax.process_count() > 1:
            return bool(self._manager.reached_preemption(step))
        return self._event.is_set()

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
