"""Training: the jitted step and the loop (`train_and_evaluate`).

`train_and_evaluate(config, workdir)` is the one entry point (CLI, tests and notebooks call it).
Rerunning it on the same workdir resumes from the latest checkpoint on the exact next batch. The
start-up order is explicit: own checkpoint in `<workdir>/checkpoints` > warm start from
`config.init.checkpoint` (partial restore) > fresh initialisation.

Config -> objects (model, data, optimizer, loss weights) is `vipdl.from_config`; evaluation is
`vipdl.video_evaluation`; checkpoints and preemption are `vipdl.checkpointing`. Compiled
programs are reused across runs through JAX's persistent compilation cache when it is enabled
(the CLIs enable it, see `vipdl.cli.console.enable_compilation_cache`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vipdl import checkpointing, from_config, keys, losses, parallel, visualize
from vipdl.inference import VideoPredictor
from vipdl.postprocess import panoptic
from vipdl.video_evaluation import evaluate_videos

LossFn = Callable[[Mapping[str, jax.Array], Mapping[str, jax.Array]], tuple[jax.Array, dict]]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss, gradient or parameter norm."""


# --- loss and the jitted step ------------------------------------------------------------------


def make_loss_fn(config: ml_collections.ConfigDict) -> LossFn:
    """`(predictions, batch) -> (scalar loss, {term: scalar})` with deeplab2's batch averaging.

    `losses.reduce_losses` averages each weighted term over the (global) batch with a NaN mean
    replaced by 0 (docs/training.md#losses), then sums them. The next-offset and depth terms are only present
    when the model predicts them.
    """
    weights = from_config.loss_weights(config)

    def loss_fn(predictions, batch):
        _, terms = losses.compute_losses(predictions, batch, **weights)
        total, reduced = losses.reduce_losses(terms)
        reduced.pop(keys.LOSS_TOTAL)
        return total, reduced

    return loss_fn


def _microbatches(x: jax.Array, n: int, mesh: Mesh | None) -> jax.Array:
    """[b, ...] -> [n, b / n, ...] where micro-batch i takes rows i, i + n, ...

    Strided rows keep every micro-batch spread over all devices of a batch-sharded array.
    """
    b = x.shape[0]
    x = jnp.swapaxes(x.reshape(b // n, n, *x.shape[1:]), 0, 1)
    if mesh is not None:
        x = jax.lax.with_sharding_constraint(
            x, NamedSharding(mesh, PartitionSpec(None, parallel.BATCH_AXES))
        )
    return x


def make_train_step(
    loss_fn: LossFn,
    schedule: optax.Schedule,
    *,
    grad_accum_steps: int = 1,
    mesh: Mesh | None = None,
    model_shardings: Any = None,
    optimizer_shardings: Any = None,
) -> Callable:
    """The jitted `(model, optimizer, batch) -> (model, optimizer, metrics)` step.

    Model and optimizer are donated: use the returned ones. The model runs in training mode
    (batch statistics, dropout) through an `nnx.view` made inside the step. With
    `grad_accum_steps > 1` the global batch is split into that many micro-batches whose
    gradients are averaged before one optimizer update (BatchNorm statistics are then those of
    each micro-batch, and the moving averages are updated once per micro-batch).

    Args:
      loss_fn: `(predictions, batch) -> (scalar loss, {name: scalar})`.
      schedule: learning-rate schedule (logged as `train/learning_rate`).
      grad_accum_steps: number of micro-batches per step.
      mesh: the mesh, to keep micro-batches batch-sharded.
      model_shardings, optimizer_shardings: `nnx.State` trees of shardings to pin the outputs to
        (the FSDP layout); None leaves layout to XLA.

    Returns:
      A jitted function; `metrics` holds device scalars: `train/loss`, `train/loss_<term>`,
      `train/grad_norm`, `train/param_norm`, `train/learning_rate`.
    """
    if grad_accum_steps < 1:
        raise ValueError(f"optim.grad_accum_steps must be >= 1, got {grad_accum_steps}")

    def train_step(model, optimizer, batch):
        learning_rate = schedule(optimizer.step[...])
        view = nnx.view(
            model, deterministic=False, use_running_average=False, raise_if_not_found=False
        )

        def loss_of(m, microbatch):
            return loss_fn(m(microbatch[keys.GT_IMAGE]), microbatch)

        grad_fn = nnx.value_and_grad(loss_of, has_aux=True)
        if grad_accum_steps == 1:
            (loss, terms), grads = grad_fn(view, batch)
        else:
            micro = {k: _microbatches(v, grad_accum_steps, mesh) for k, v in batch.items()}
            graphdef, state = nnx.split(view)

            def body(carry, microbatch):
                state, grad_sum = carry
                # Merged inside the scan body so BatchNorm/RNG updates happen at this trace level.
                m = nnx.merge(graphdef, state)
                (loss, terms), grads = grad_fn(m, microbatch)
                return (nnx.state(m), jax.tree.map(jnp.add, grad_sum, grads)), (loss, terms)

            zeros = jax.tree.map(jnp.zeros_like, nnx.state(view, nnx.Param))
            (state, grad_sum), (losses, terms) = jax.lax.scan(body, (state, zeros), micro)
            nnx.update(model, state)
            grads = jax.tree.map(lambda g: g / grad_accum_steps, grad_sum)
            loss, terms = jnp.mean(losses), jax.tree.map(jnp.mean, terms)

        optimizer.update(model, grads)
        if model_shardings is not None:
            nnx.update(model, jax.lax.with_sharding_constraint(nnx.state(model), model_shardings))
        if optimizer_shardings is not None:
            nnx.update(
                optimizer,
                jax.lax.with_sharding_constraint(nnx.state(optimizer), optimizer_shardings),
            )
        metrics = {
            "train/loss": loss,
            "train/grad_norm": optax.tree.norm(grads),
            "train/param_norm": optax.tree.norm(nnx.state(model, nnx.Param)),
            "train/learning_rate": learning_rate,
        }
        metrics.update({f"train/loss_{k}": v for k, v in terms.items()})
        return model, optimizer, metrics

    return jax.jit(train_step, donate_argnums=(0, 1))


class ShardedInit:
    """`() -> (model, optimizer)` created directly in their shards by one compiled function.

    Shapes come first (`nnx.eval_shape`), the sharding rule of `parallel.state_shardings` maps
    them to shardings, and the initialiser writes each array straight into its shards, so the
    full unsharded state never exists on one device. `abstract()` gives the same objects
    without running any initialiser (to restore a checkpoint into), `shardings` their
    (model, optimizer) sharding trees.
    """

    def __init__(self, model_fn: Callable[[], nnx.Module], tx: optax.GradientTransformation,
                 mesh: Mesh, *, min_fsdp_size: int = 2**14):
        def init():
            model = model_fn()
            return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

        self._init = init
        abstract_model, abstract_opt = nnx.eval_shape(init)
        self.shardings = (
            parallel.state_shardings(nnx.state(abstract_model), mesh, min_fsdp_size=min_fsdp_size),
            parallel.state_shardings(nnx.state(abstract_opt), mesh, min_fsdp_size=min_fsdp_size),
        )
        self._unused_abstract = (abstract_model, abstract_opt)  # Tracing it again costs seconds.
        self._compiled = None

    def __call__(self) -> tuple[nnx.Module, nnx.Optimizer]:
        if self._compiled is None:
            model_shardings, opt_shardings = self.shardings

            @jax.jit
            def sharded_init():
                model, opt = self._init()
                nnx.update(model, jax.lax.with_sharding_constraint(nnx.state(model),
                                                                   model_shardings))
                nnx.update(opt, jax.lax.with_sharding_constraint(nnx.state(opt), opt_shardings))
                return model, opt

            self._compiled = sharded_init
        return self._compiled()

    def abstract(self) -> tuple[nnx.Module, nnx.Optimizer]:
        """Shape-only (model, optimizer): fill them with `checkpointing.restore_checkpoint(...,
        shardings=self.shardings)`."""
        if self._unused_abstract is not None:
            out, self._unused_abstract = self._unused_abstract, None
            return out
        return nnx.eval_shape(self._init)


def make_sharded_init(
    model_fn: Callable[[], nnx.Module],
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    min_fsdp_size: int = 2**14,
) -> ShardedInit:
    """A jitted `() -> (model, optimizer)` that creates every array directly in its shards
    (see `ShardedInit`)."""
    return ShardedInit(model_fn, tx, mesh, min_fsdp_size=min_fsdp_size)


def shardings_of(obj) -> Any:
    """The `nnx.State` tree of the current shardings of `obj`'s arrays."""
    return jax.tree.map(lambda x: x.sharding, nnx.state(obj))


# --- evaluation ----------------------------------------------------------------------------------


class InLoopEvaluator:
    """Full-video VPQ/STQ of the training model on the evaluation videos, every few steps.

    The videos are read once and kept in memory; the `VideoPredictor` is built at the first call
    and then only takes new weights, so its device functions compile once per run. Every process
    evaluates all videos (replicated inputs), so the numbers agree across processes.
    """

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.videos = list(from_config.eval_videos(config, max_videos=config.eval.max_videos))
        if not self.videos:
            raise ValueError("evaluation needs at least one video (config.data.eval_split)")
        self._predictor: VideoPredictor | None = None

    def run(self, model: nnx.Module) -> dict[str, float]:
        """`eval/*` metrics (percentages): `eval/vpq` (the keep-best metric), per-k, STQ."""
        # The predictor switches its model to eval mode: give it a view, not the training model
        # (changing the training model's static flags would retrace the train step).
        eval_model = nnx.view(
            model, deterministic=True, use_running_average=True, raise_if_not_found=False
        )
        if self._predictor is None:
            self._predictor = VideoPredictor.from_config(
                self.config, eval_model, return_depth=False, batch_size=self.config.eval.batch_size
            )
        else:
            self._predictor.load_weights(eval_model)
        summary = evaluate_videos(self._predictor, self.videos)
        return eval_metrics(summary)


def eval_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """`video_evaluation` summary -> `eval/vpq`, `eval/vpq_th`, `eval/vpq_st`, `eval/vpq_k<k>`,
    `eval/stq`, `eval/aq`, `eval/sq` (all percentages)."""
    if summary["VPQ"] is None:
        missing = [k for k, entry in summary["per_k"].items() if entry["VPQ"] is None]
        logging.warning(
            "eval: VPQ is undefined and reported as 0: no evaluation video has enough annotated "
            "frames for the VPQ window(s) k=%s; evaluate on longer videos", missing)
    out = {f"eval/{k.lower()}": float(summary[k] or 0.0) for k in ("VPQ", "VPQ_th", "VPQ_st")}
    for k, entry in summary["per_k"].items():
        out[f"eval/vpq_k{k}"] = float(entry["VPQ"] or 0.0)
    for k in ("STQ", "AQ", "SQ"):
        out[f"eval/{k.lower()}"] = 100.0 * float(summary["STQ"][k] or 0.0)
    return out


# --- the loop ------------------------------------------------------------------------------------


def _check_finite(history: list[tuple[int, dict[str, float]]]) -> None:
    for step, metrics in history:
        bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
        if bad:
            terms = ", ".join(f"{k}={v:.6g}" for k, v in sorted(metrics.items()))
            raise NonFiniteLossError(
                f"non-finite training values at step {step}: {sorted(bad)}; all terms: {terms}. "
                "Training stopped; the last checkpoint before this step is intact."
            )


def _mean_metrics(history: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    names = history[-1][1].keys()
    out = {k: float(np.mean([m[k] for _, m in history])) for k in names}
    out["train/learning_rate"] = history[-1][1]["train/learning_rate"]
    return out


def _make_image_fn(config: ml_collections.ConfigDict, mesh: Mesh) -> Callable:
    """Jitted `(model, images) -> host-ready predictions of the first example`."""
    # The same post-processing options as evaluation and `predict_video` use.
    labels = from_config.descriptor(config).labels
    options = from_config.postprocess_options(config)

    @jax.jit
    def predict(model, images):
        m = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
        pred = m(images[:1])
        pan = panoptic.panoptic_from_predictions(
            pred[keys.PRED_SEMANTIC_LOGITS][0],
            pred[keys.PRED_CENTER_HEATMAP][0],
            pred[keys.PRED_OFFSET_MAP][0],
            thing_ids=labels.thing_ids,
            label_divisor=labels.label_divisor,
            ignore_label=labels.ignore_label,
            options=options,
        )
        out = {
            "image": images[0, ..., :3],
            "semantic": jnp.argmax(pred[keys.PRED_SEMANTIC_LOGITS][0], axis=-1),
            "panoptic": pan,
            "center": pred[keys.PRED_CENTER_HEATMAP][0],
        }
        # Replicated outputs are readable on every process.
        return jax.lax.with_sharding_constraint(out, parallel.replicated(mesh))

    return predict


def _summary_images(pred: dict[str, np.ndarray], descriptor) -> dict[str, np.ndarray]:
    colormap = np.asarray(descriptor.colormap + ((0, 0, 0),), np.uint8)
    semantic = np.where(pred["semantic"] < descriptor.num_classes, pred["semantic"], -1)
    center = (np.clip(pred["center"], 0.0, 1.0) * 255).astype(np.uint8)
    images = {
        "input": np.clip(pred["image"], 0, 255).astype(np.uint8),
        "semantic": colormap[semantic],
        "panoptic": visualize.colorize_panoptic(pred["panoptic"], descriptor=descriptor),
        "center_heatmap": np.repeat(center[..., None], 3, axis=-1),
    }
    return {f"images/{k}": v[None] for k, v in images.items()}


def _validate_config(config: ml_collections.ConfigDict) -> None:
    t, o, d = config.train, config.optim, config.data
    for name in ("num_steps", "log_every_steps", "checkpoint_every_steps", "eval_every_steps"):
        if t[name] < 1:
            raise ValueError(f"config.train.{name} must be >= 1, got {t[name]}")
    if d.batch_size % o.grad_accum_steps:
        raise ValueError(
            f"config.data.batch_size={d.batch_size} must be divisible by "
            f"config.optim.grad_accum_steps={o.grad_accum_steps}"
        )
    if config.eval.mode not in ("none", "video"):
        raise ValueError(f"config.eval.mode must be 'none' or 'video', got {config.eval.mode!r}")
    from_config.is_vip(config)
    from_config.descriptor(config)


class _Metrics:
    """Device metrics of the steps since the last flush; fetched (one host sync) on demand."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.pending: list[tuple[int, dict[str, jax.Array]]] = []
        self.last: dict[str, float] = {}
        self._reset_window()

    def _reset_window(self) -> None:
        self.window_start, self.window_steps, self.data_secs = time.perf_counter(), 0, 0.0

    def add(self, step: int, metrics: dict[str, jax.Array], data_secs: float) -> None:
        self.pending.append((step, metrics))
        self.window_steps += 1
        self.data_secs += data_secs

    def flush(self) -> None:
        """Fetches pending metrics; raises `NonFiniteLossError` on NaN/Inf (never evaluate or
        keep a diverged model)."""
        if self.pending:
            history = [(s, jax.tree.map(float, jax.device_get(m))) for s, m in self.pending]
            self.pending = []
            _check_finite(history)
            self.last = _mean_metrics(history)

    def log_scalars(self) -> dict[str, float]:
        """Means over the window since the last log, plus throughput and data-wait fraction."""
        self.flush()
        elapsed = time.perf_counter() - self.window_start
        scalars = dict(self.last)
        scalars["perf/steps_per_sec"] = self.window_steps / elapsed
        scalars["perf/examples_per_sec"] = self.window_steps * self.batch_size / elapsed
        scalars["perf/data_wait_fraction"] = self.data_secs / elapsed
        self._reset_window()
        return scalars


_SEMANTIC_CLASSIFIER = "semantic_head/final/"  # The last semantic layer (1x1 conv, bias).


def _checkpoint_class_names(path: str) -> tuple[str, ...] | None:
    """Class names of the run a checkpoint comes from (its workdir's config.json), if known."""
    for directory in (path, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        if os.path.isfile(os.path.join(directory, checkpointing.CONFIG_FILE)):
            try:
                return from_config.descriptor(checkpointing.load_config(directory)).class_names
            except (ValueError, KeyError, FileNotFoundError, AttributeError):
                return None
    return None


def _warm_start(config, model) -> tuple[list[str], list[str]]:
    """`checkpointing.warm_start`, with a fresh last semantic layer for another class set.

    Arrays whose shape differs (another number of classes) keep their initialisation anyway;
    when the count is equal but the checkpoint's run names other classes (its config.json), the
    restored semantic classifier is put back to its initial values too. Returns `(restored,
    initialised)` for `checkpointing.log_restore_report`.
    """
    head = model.semantic_head.final
    fresh = nnx.to_pure_dict(nnx.state(head))  # Immutable arrays: a snapshot.
    restored, initialised = checkpointing.warm_start(model, config.init.checkpoint)
    source = _checkpoint_class_names(config.init.checkpoint)
    target = from_config.descriptor(config).class_names
    moved = [p for p in restored if p.startswith(_SEMANTIC_CLASSIFIER)]
    if source is not None and tuple(source) != tuple(target) and moved:
        state = nnx.state(head)
        nnx.replace_by_pure_dict(state, fresh)
        nnx.update(head, state)
        restored = [p for p in restored if p not in moved]
        initialised = initialised + [f"{p} (the checkpoint's classes differ)" for p in moved]
    return restored, initialised


def _init_or_restore(config, manager, init: ShardedInit, train_iter, writer):
    """Own checkpoint > warm start (`config.init.checkpoint`) > fresh.

    Returns (model, optimizer, start step). Resuming reads the checkpoint into abstract objects
    (no initialiser runs); warm start and fresh runs initialise in one compiled function.
    """
    start_step = manager.latest_step()
    if start_step is not None:
        logging.info("Resuming from %s step %d", manager.directory, start_step)
        model, optimizer = init.abstract()
        checkpointing.restore_checkpoint(manager, start_step, model, optimizer, train_iter,
                                         shardings=init.shardings)
        return model, optimizer, start_step
    model, optimizer = init()
    if config.init.checkpoint:
        restored, initialised = _warm_start(config, model)
        report = checkpointing.log_restore_report(restored, initialised, config.init.checkpoint)
        if jax.process_index() == 0:
            print(report, flush=True)
            writer.write_texts(0, {"warm_start": report})
    return model, optimizer, 0


def _log_start(config, model, writer) -> None:
    from clu import parameter_overview

    # Shapes only (include_stats=False reads no values), so this works multi-host.
    overview = parameter_overview.get_parameter_overview(
        nnx.to_pure_dict(nnx.state(model, nnx.Param)), include_stats=False
    )
    logging.info("Parameters:\n%s", overview)
    hparams = from_config.flat(config)
    writer.write_hparams({k: v for k, v in hparams.items() if isinstance(v, int | float | str | bool)})


def _setup(config, mesh, manager, writer):
    """Model, optimizer and data iterator (sharded, then restored or warm-started) and the step."""
    tx, schedule = from_config.optimizer(config)
    init = make_sharded_init(
        lambda: from_config.create_model(config, rngs=nnx.Rngs(config.seed)),
        tx,
        mesh,
        min_fsdp_size=config.mesh.min_fsdp_size,
    )
    train_iter = from_config.train_iterator(config, mesh)
    model, optimizer, start_step = _init_or_restore(config, manager, init, train_iter, writer)
    if jax.process_index() == 0 and start_step == 0:
        _log_start(config, model, writer)
    step_fn = make_train_step(
        make_loss_fn(config),
        schedule,
        grad_accum_steps=config.optim.grad_accum_steps,
        mesh=mesh,
        model_shardings=shardings_of(model),
        optimizer_shardings=shardings_of(optimizer),
    )
    return model, optimizer, train_iter, start_step, step_fn


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    step_callback: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Trains (resuming from `<workdir>/checkpoints` if present) and evaluates.

    Args:
      config: a config from `configs/*.py`.
      workdir: run directory: `config.json`, TensorBoard events, `checkpoints/`.
      step_callback: called with the step number after every step (its checkpoint, if any,
        has been started); for notebooks and tests.

    Returns:
      The final metrics: `step`, the last logged `train/*` values and the last `eval/*` values.
      After SIGTERM the run saves, stops early and returns with `preempted` = 1.0.

    Raises:
      NonFiniteLossError: when a loss term, the gradient or the parameter norm is not finite.

    Long because the per-step order (step, log, images, evaluate, checkpoint, callback,
    preemption) is kept in this one loop so it reads top to bottom; set-up is `_setup`.
    """
    from clu import metric_writers, periodic_actions

    # Custom data: the descriptor goes into the saved config.json (prediction needs no data).
    config = from_config.with_dataset_descriptor(config)
    _validate_config(config)
    workdir = os.path.abspath(workdir)
    t, is_chief = config.train, jax.process_index() == 0
    if is_chief:
        checkpointing.save_config(config, workdir)
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief)
    mesh = parallel.create_mesh(config.mesh.data, config.mesh.fsdp)
    manager = checkpointing.create_manager(
        checkpointing.checkpoint_dir(workdir),
        keep=t.keep_checkpoints,
        best_metric=checkpointing.BEST_METRIC if config.eval.mode != "none" else None,
    )
    preemption = checkpointing.PreemptionWatcher(manager)
    evaluator = None
    final: dict[str, float] = {}
    try:
        with jax.set_mesh(mesh):
            model, optimizer, train_iter, start_step, step_fn = _setup(
                config, mesh, manager, writer
            )
            image_fn = _make_image_fn(config, mesh)
            sharding = parallel.batch_sharding(mesh)
            report = periodic_actions.ReportProgress(num_train_steps=t.num_steps, writer=writer)
            metrics = _Metrics(config.data.batch_size)
            step = start_step
            for step in range(start_step + 1, t.num_steps + 1):
                last = step == t.num_steps
                tic = time.perf_counter()
                with report.timed("data", wait_jax_async_dispatch=False):
                    batch = parallel.make_global_batch(next(train_iter), sharding)
                data_secs = time.perf_counter() - tic
                with jax.profiler.StepTraceAnnotation("train", step_num=step):
                    model, optimizer, step_metrics = step_fn(model, optimizer, batch)
                metrics.add(step, step_metrics, data_secs)
                report(step)

                if step % t.log_every_steps == 0 or last:
                    scalars = metrics.log_scalars()
                    writer.write_scalars(step, scalars)
                    final.update(scalars)
                if t.image_every_steps and (step % t.image_every_steps == 0 or step == 1):
                    pred = jax.device_get(image_fn(model, batch[keys.GT_IMAGE]))
                    if is_chief:
                        writer.write_images(
                            step, _summary_images(pred, from_config.descriptor(config))
                        )
                eval_metrics_ = None
                if config.eval.mode != "none" and (step % t.eval_every_steps == 0 or last):
                    metrics.flush()
                    with report.timed("eval"):
                        evaluator = evaluator or InLoopEvaluator(config)
                        eval_metrics_ = evaluator.run(model)
                    writer.write_scalars(step, eval_metrics_)
                    final.update(eval_metrics_)
                preempted = preemption.reached(step)
                if step % t.checkpoint_every_steps == 0 or last or eval_metrics_ or preempted:
                    metrics.flush()
                    with report.timed("checkpoint"):
                        checkpointing.save_checkpoint(
                            manager, step, model, optimizer, train_iter,
                            metrics=eval_metrics_, force=True,
                        )
                if step_callback is not None:
                    step_callback(step)
                if preempted:
                    logging.warning("SIGTERM received: saved step %d, stopping.", step)
                    final["preempted"] = 1.0
                    break
            metrics.flush()
            final.update(metrics.last)
            final["step"] = float(step)
    finally:
        manager.wait_until_finished()
        manager.close()
        preemption.close()
        writer.flush()
        writer.close()
    return final
