"""Training: config -> model, data and optimizer; the jitted step; the loop.

`train_and_evaluate(config, workdir)` is the one entry point (CLI, tests and notebooks call it).
Rerunning it on the same workdir resumes from the latest checkpoint on the exact next batch. The
start-up order is explicit: own checkpoint in `<workdir>/checkpoints` > warm start from
`config.init.checkpoint` (partial restore) > fresh initialisation.

This is the only library module that reads ConfigDicts; everything it calls takes typed
arguments. Heavy optional dependencies (clu pulls in TensorFlow, the input pipeline pulls in
grain/TFDS) are imported inside the functions that need them, so `create_model` stays cheap to
import for inference.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vipdl import checkpointing, keys, models, optim, parallel
from vipdl.data import descriptors

META_ARCHS = ("vip_deeplab", "panoptic_deeplab")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

LossFn = Callable[[Mapping[str, jax.Array], Mapping[str, jax.Array]], tuple[jax.Array, dict]]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss, gradient or parameter norm."""


# --- config -> library objects -------------------------------------------------------------------


def get_descriptor(config: ml_collections.ConfigDict) -> descriptors.DatasetDescriptor:
    return descriptors.get_descriptor(config.data.dataset)


def _is_vip(config: ml_collections.ConfigDict) -> bool:
    meta = config.model.meta_arch
    if meta not in META_ARCHS:
        raise ValueError(f"config.model.meta_arch must be one of {META_ARCHS}, got {meta!r}")
    return meta == "vip_deeplab"


def model_config(config: ml_collections.ConfigDict) -> models.ModelConfig:
    """The `ModelConfig` of `config.model` for the classes of `config.data.dataset`."""

    m = config.model
    descriptor = get_descriptor(config)
    if m.aspp_pooling == "global":
        pool = None
    elif m.aspp_pooling == "train_crop":
        # deeplab2 sizes the ASPP image-pooling window from the training crop.
        pool = models.aspp_pool_size(tuple(config.data.crop_size_hw), m.output_stride)
    else:
        raise ValueError(
            f"config.model.aspp_pooling must be 'global' or 'train_crop', got {m.aspp_pooling!r}"
        )
    if m.dtype not in _DTYPES:
        raise ValueError(f"config.model.dtype must be one of {sorted(_DTYPES)}, got {m.dtype!r}")
    if m.use_depth and not descriptor.has_depth:
        raise ValueError(f"config.model.use_depth=True but dataset {descriptor.name} has no depth")
    return models.ModelConfig(
        num_classes=descriptor.num_classes,
        backbone=m.backbone,
        backbone_width=m.backbone_width or None,
        backbone_blocks=tuple(m.backbone_blocks) or None,
        output_stride=m.output_stride,
        aspp_rates=tuple(m.aspp_rates),
        aspp_channels=m.aspp_channels,
        aspp_pool_size_hw=pool,
        semantic_decoder_channels=m.semantic_decoder_channels,
        semantic_head_channels=m.semantic_head_channels,
        semantic_low_level_channels=tuple(m.semantic_low_level_channels),
        instance_decoder_channels=m.instance_decoder_channels,
        instance_head_channels=m.instance_head_channels,
        instance_low_level_channels=tuple(m.instance_low_level_channels),
        use_depth=m.use_depth,
        max_depth=descriptor.max_depth,
        depth_head_channels=m.depth_head_channels,
        dropout_rate=m.dropout_rate,
        # Configs saved before the field existed used deeplab2's default.
        batchnorm_epsilon=m.get("batchnorm_epsilon", 1e-3),
        dtype=m.dtype,
        remat=m.remat,
    )


def create_model(config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the model of `config.model` for the classes of `config.data.dataset`."""

    cls = models.ViPDeepLab if _is_vip(config) else models.PanopticDeepLab
    return cls(model_config(config), rngs=rngs)


def synthetic_world(config: ml_collections.ConfigDict):
    """The `vipdl.data.synthetic.SyntheticConfig` described by `config.data.synthetic`."""
    from vipdl.data import synthetic

    s = config.data.synthetic
    return synthetic.SyntheticConfig(
        height=s.height,
        width=s.width,
        num_frames=s.num_frames,
        # Absent in configs saved before they existed.
        object_scale=s.get("object_scale", 1.0),
        annotation_stride=s.get("annotation_stride", 1),
    )


def create_source(config: ml_collections.ConfigDict, split: str):
    """Random-access pair source of `split`: prepared TFDS data, or in-memory synthetic videos."""
    d = config.data
    if d.data_dir:
        from vipdl.data import builders

        return builders.load_source(d.dataset, split, d.data_dir)
    if d.dataset != "synthetic":
        raise ValueError(
            f"config.data.data_dir is empty, which means in-memory synthetic data, but "
            f"config.data.dataset is {d.dataset!r}; set data_dir to the prepared dataset"
        )
    from vipdl.data import synthetic

    s = d.synthetic
    cfg = synthetic_world(config)
    # Per-split seeds: the videos `scripts/make_synthetic.py --seed` writes for that split, so
    # in-memory runs and runs on the prepared copy see the same data; splits never share videos.
    n = s.num_train_videos if split == d.train_split else s.num_eval_videos
    return synthetic.SyntheticPairSource(n, config=cfg, seed=s.seed, split=split)


def create_train_iterator(config: ml_collections.ConfigDict, mesh: Mesh) -> Iterator[dict]:
    """The grain iterator of this process's share of the training batches."""
    from vipdl.data import augment, pipeline

    d = config.data
    return pipeline.make_train_loader(
        create_source(config, d.train_split),
        descriptor=get_descriptor(config),
        crop_size_hw=tuple(d.crop_size_hw),
        batch_size=parallel.process_batch_size(d.batch_size, mesh),
        seed=config.seed,
        scales=augment.scale_set(d.scales_min, d.scales_max, d.scales_step),
        use_next_frame=_is_vip(config),
        use_depth=config.model.use_depth,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        num_workers=d.num_workers,
    )


def make_loss_fn(config: ml_collections.ConfigDict) -> LossFn:
    """`(predictions, batch) -> (scalar loss, {term: scalar})` with deeplab2's batch averaging.

    `losses.reduce_losses` averages each weighted term over the (global) batch with a NaN mean
    replaced by 0 (spec §4), then sums them. The next-offset and depth terms are only present
    when the model predicts them.
    """
    from vipdl import losses

    descriptor = get_descriptor(config)
    c = config.loss
    weights = dict(
        semantic_weight=c.semantic_weight,
        top_k_percent=c.top_k_percent,
        center_weight=c.center_weight,
        offset_weight=c.offset_weight,
        next_offset_weight=c.next_offset_weight,
        depth_weight=c.depth_weight,
        ignore_label=descriptor.ignore_label,
    )

    def loss_fn(predictions, batch):
        _, terms = losses.compute_losses(predictions, batch, **weights)
        total, reduced = losses.reduce_losses(terms)
        reduced.pop(keys.LOSS_TOTAL)
        return total, reduced

    return loss_fn


# --- the jitted step -----------------------------------------------------------------------------


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


def make_sharded_init(
    model_fn: Callable[[], nnx.Module],
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    min_fsdp_size: int = 2**14,
) -> Callable[[], tuple[nnx.Module, nnx.Optimizer]]:
    """A jitted `() -> (model, optimizer)` that creates every array directly in its shards.

    Shapes come first (`nnx.eval_shape`), the sharding rule of `parallel.state_shardings` maps
    them to shardings, and the initialiser writes each array straight into its shards, so the
    full unsharded state never exists on one device.
    """

    def init():
        model = model_fn()
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    abstract_model, abstract_opt = nnx.eval_shape(init)
    model_shardings = parallel.state_shardings(
        nnx.state(abstract_model), mesh, min_fsdp_size=min_fsdp_size
    )
    opt_shardings = parallel.state_shardings(
        nnx.state(abstract_opt), mesh, min_fsdp_size=min_fsdp_size
    )

    @jax.jit
    def sharded_init():
        model, opt = init()
        nnx.update(model, jax.lax.with_sharding_constraint(nnx.state(model), model_shardings))
        nnx.update(opt, jax.lax.with_sharding_constraint(nnx.state(opt), opt_shardings))
        return model, opt

    return sharded_init


def create_train_state(
    model_fn: Callable[[], nnx.Module],
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    min_fsdp_size: int = 2**14,
) -> tuple[nnx.Module, nnx.Optimizer]:
    """Model and optimizer created with their mesh shardings (see `make_sharded_init`)."""
    return make_sharded_init(model_fn, tx, mesh, min_fsdp_size=min_fsdp_size)()


def shardings_of(obj) -> Any:
    """The `nnx.State` tree of the current shardings of `obj`'s arrays."""
    return jax.tree.map(lambda x: x.sharding, nnx.state(obj))


# --- evaluation ----------------------------------------------------------------------------------


class Evaluator(Protocol):
    """What the loop calls every `config.train.eval_every_steps` steps and at the end."""

    def run(self, model: nnx.Module, step: int) -> dict[str, float]: ...


class VideoVPQEvaluator:
    """Full-video VPQ of the model on whole evaluation videos (`vipdl.inference`).

    Every video of the evaluation source is run through `inference.VideoPredictor` (frame
    encoded once, two-frame propagation and sequence stitching for ViP-DeepLab, IoU tracking for
    Panoptic-DeepLab) and scored with `evaluation.vpq` over the dataset's window sizes. Metric
    values are percentages; `eval/vpq` is the mean over windows (the keep-best metric).

    Every process evaluates all videos (replicated inputs), so the numbers agree across
    processes; sharding evaluation videos over processes is left for large validation sets.
    """

    def __init__(
        self,
        videos: list[tuple[np.ndarray, np.ndarray]],
        *,
        descriptor: descriptors.DatasetDescriptor,
        predictor_kwargs: Mapping[str, Any],
    ):
        """Args:
        videos: `(frames uint8 [T, H, W, 3], panoptic int32 [T, H, W])` per video.
        descriptor: dataset facts for the VPQ convention.
        predictor_kwargs: keyword arguments of `inference.VideoPredictor` (not `descriptor`).
        """
        if not videos:
            raise ValueError("evaluation needs at least one video")
        self.videos = videos
        self.descriptor = descriptor
        self.predictor_kwargs = dict(predictor_kwargs)
        self._predictor = None

    def run(self, model: nnx.Module, step: int) -> dict[str, float]:
        from vipdl import inference
        from vipdl.evaluation import vpq

        del step
        d = self.descriptor
        # The predictor switches its model to eval mode: give it a view, not the training model
        # (changing the training model's static flags would retrace the train step).
        eval_model = nnx.view(
            model, deterministic=True, use_running_average=True, raise_if_not_found=False
        )
        if self._predictor is None:
            self._predictor = inference.VideoPredictor(
                eval_model, descriptor=d, return_depth=False, **self.predictor_kwargs
            )
        else:
            # Same architecture, new weights: reuse the predictor's compiled functions.
            self._predictor.load_weights(eval_model)
        predictor = self._predictor
        pairs = []
        for frames, gt in self.videos:
            pred = [p.panoptic for p in predictor.predict(list(frames))]
            pairs.append((list(gt), pred))
        result = vpq.evaluate_arrays(
            pairs,
            num_classes=d.num_classes,
            thing_ids=d.thing_ids,
            label_divisor=d.label_divisor,
            ignore_label=d.ignore_label,
            window_sizes=d.eval_window_frames,
            annotation_stride=d.annotation_stride,
        )
        summary = result.summary("VPQ")
        out = {f"eval/{k.lower()}": float(v or 0.0) for k, v in summary.items() if k != "per_k"}
        for k, entry in summary["per_k"].items():
            out[f"eval/vpq_k{k}"] = float(entry["VPQ"] or 0.0)
        return out


def create_evaluator(config: ml_collections.ConfigDict) -> Evaluator | None:
    """The evaluator chosen by `config.eval.mode` ('none' or 'video')."""
    mode = config.eval.mode
    if mode == "none":
        return None
    if mode != "video":
        raise ValueError(f"config.eval.mode must be 'none' or 'video', got {mode!r}")
    from vipdl import inference
    from vipdl.data import pipeline

    videos = []
    for _, frames, panoptic in pipeline.iter_videos(create_source(config, config.data.eval_split)):
        videos.append((frames, panoptic))
        if config.eval.max_videos and len(videos) >= config.eval.max_videos:
            break
    kwargs = inference.predictor_kwargs_from_config(config)
    kwargs.pop("descriptor")
    kwargs.update(output_stride=config.model.output_stride, batch_size=config.eval.batch_size)
    return VideoVPQEvaluator(videos, descriptor=get_descriptor(config), predictor_kwargs=kwargs)


# --- the loop ------------------------------------------------------------------------------------


class _PreemptionWatcher:
    """Turns SIGTERM into "save and stop after this step".

    Multi-process runs use Orbax/JAX's preemption sync point, which makes every process agree
    on the step; JAX installs its own SIGTERM notifier there. A single process handles the
    signal itself.
    """

    def __init__(self, manager):
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
    from vipdl import inference
    from vipdl.postprocess import panoptic

    # The same post-processing options as evaluation and `predict_video` use.
    kw = inference.predictor_kwargs_from_config(config)
    descriptor = kw["descriptor"]

    @jax.jit
    def predict(model, images):
        m = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
        pred = m(images[:1])
        pan = panoptic.panoptic_from_predictions(
            pred[keys.PRED_SEMANTIC_LOGITS][0],
            pred[keys.PRED_CENTER_HEATMAP][0],
            pred[keys.PRED_OFFSET_MAP][0],
            thing_ids=descriptor.thing_ids,
            label_divisor=descriptor.label_divisor,
            ignore_label=descriptor.ignore_label,
            center_threshold=kw["center_threshold"],
            nms_kernel=kw["nms_kernel"],
            keep_k_centers=kw["keep_k_centers"],
            stuff_area_limit=kw["stuff_area_limit"],
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
    from vipdl import visualize

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


@dataclasses.dataclass
class _Compiled:
    """Jitted functions of one (config structure, mesh), reused by later runs in this process."""

    schedule: optax.Schedule
    init: Callable
    image: Callable
    step: Callable | None = None  # Built after init, from the state's shardings.
    evaluator: Evaluator | None = None  # Built at the first evaluation.


_COMPILED: collections.OrderedDict[tuple, _Compiled] = collections.OrderedDict()
_COMPILED_MAX = 2  # Compiled executables can be large; keep only the most recent configs.


def _compiled_functions(config: ml_collections.ConfigDict, mesh: Mesh) -> _Compiled:
    """The jitted init / step / image functions for `config`, cached across runs.

    Re-running `train_and_evaluate` in one process (a notebook, the resume tests) then reuses
    the traced and compiled programs. The key holds every config field the functions read.
    """
    sections = {
        name: config[name].to_json_best_effort(sort_keys=True)
        for name in ("data", "model", "loss", "optim", "postprocess", "eval", "mesh")
    }
    key = (
        json.dumps(sections, sort_keys=True),
        config.data.dataset,
        tuple(config.data.crop_size_hw),
        config.seed,
        config.train.num_steps,
        mesh,
    )
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    tx, schedule = optim.make_optimizer(
        learning_rate=config.optim.learning_rate,
        num_steps=config.train.num_steps,
        power=config.optim.power,
        end_learning_rate=config.optim.end_learning_rate,
        adam_eps=config.optim.adam_eps,
    )
    init = make_sharded_init(
        lambda: create_model(config, rngs=nnx.Rngs(config.seed)),
        tx,
        mesh,
        min_fsdp_size=config.mesh.min_fsdp_size,
    )
    _COMPILED[key] = _Compiled(schedule=schedule, init=init, image=_make_image_fn(config, mesh))
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return _COMPILED[key]


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
    _is_vip(config)
    get_descriptor(config)


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
    """
    from clu import metric_writers, parameter_overview, periodic_actions

    _validate_config(config)
    workdir = os.path.abspath(workdir)
    descriptor = get_descriptor(config)
    t = config.train
    is_chief = jax.process_index() == 0
    if is_chief:
        checkpointing.save_config(config, workdir)
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief)

    mesh = parallel.create_mesh(config.mesh.data, config.mesh.fsdp)
    compiled = _compiled_functions(config, mesh)
    manager = checkpointing.create_manager(
        checkpointing.checkpoint_dir(workdir),
        keep=t.keep_checkpoints,
        best_metric=checkpointing.BEST_METRIC if config.eval.mode != "none" else None,
    )
    preemption = _PreemptionWatcher(manager)
    final: dict[str, float] = {}
    try:
        with jax.set_mesh(mesh):
            model, optimizer = compiled.init()
            train_iter = create_train_iterator(config, mesh)

            # Own checkpoint > warm start > scratch.
            start_step = manager.latest_step()
            if start_step is not None:
                logging.info("Resuming from %s step %d", manager.directory, start_step)
                checkpointing.restore_checkpoint(manager, start_step, model, optimizer, train_iter)
            else:
                start_step = 0
                if config.init.checkpoint:
                    restored, initialised = checkpointing.warm_start(model, config.init.checkpoint)
                    report_text = checkpointing.log_restore_report(
                        restored, initialised, config.init.checkpoint
                    )
                    if is_chief:
                        print(report_text, flush=True)
                        writer.write_texts(0, {"warm_start": report_text})
            if is_chief and start_step == 0:
                # Shapes only (include_stats=False reads no values), so this works multi-host.
                overview = parameter_overview.get_parameter_overview(
                    nnx.to_pure_dict(nnx.state(model, nnx.Param)), include_stats=False
                )
                logging.info("Parameters:\n%s", overview)
                writer.write_hparams(
                    {
                        k: v
                        for k, v in _flat_config(config).items()
                        if isinstance(v, int | float | str | bool)
                    }
                )

            if compiled.step is None:
                compiled.step = make_train_step(
                    make_loss_fn(config),
                    compiled.schedule,
                    grad_accum_steps=config.optim.grad_accum_steps,
                    mesh=mesh,
                    model_shardings=shardings_of(model),
                    optimizer_shardings=shardings_of(optimizer),
                )
            step_fn, image_fn = compiled.step, compiled.image
            sharding = parallel.batch_sharding(mesh)
            report = periodic_actions.ReportProgress(num_train_steps=t.num_steps, writer=writer)

            pending: list[tuple[int, dict[str, jax.Array]]] = []
            window_start, window_steps, data_secs = time.perf_counter(), 0, 0.0
            eval_metrics: dict[str, float] = {}
            step = start_step

            def flush_pending() -> list[tuple[int, dict[str, float]]] | None:
                nonlocal pending
                if pending:
                    history = [(s, jax.tree.map(float, jax.device_get(m))) for s, m in pending]
                    pending = []
                    _check_finite(history)
                    final.update(_mean_metrics(history))
                    return history
                return None

            for step in range(start_step + 1, t.num_steps + 1):
                tic = time.perf_counter()
                with report.timed("data", wait_jax_async_dispatch=False):
                    batch = parallel.make_global_batch(next(train_iter), sharding)
                data_secs += time.perf_counter() - tic
                with jax.profiler.StepTraceAnnotation("train", step_num=step):
                    model, optimizer, metrics = step_fn(model, optimizer, batch)
                pending.append((step, metrics))
                window_steps += 1
                report(step)
                last = step == t.num_steps

                if step % t.log_every_steps == 0 or last:
                    history = flush_pending()
                    elapsed = time.perf_counter() - window_start
                    scalars = _mean_metrics(history)
                    scalars["perf/steps_per_sec"] = window_steps / elapsed
                    scalars["perf/examples_per_sec"] = (
                        window_steps * config.data.batch_size / elapsed
                    )
                    scalars["perf/data_wait_fraction"] = data_secs / elapsed
                    writer.write_scalars(step, scalars)
                    final.update(scalars)
                    window_start, window_steps, data_secs = time.perf_counter(), 0, 0.0
                if t.image_every_steps and (step % t.image_every_steps == 0 or step == 1):
                    pred = jax.device_get(image_fn(model, batch[keys.GT_IMAGE]))
                    if is_chief:
                        writer.write_images(step, _summary_images(pred, descriptor))

                save_metrics = None
                if config.eval.mode != "none" and (step % t.eval_every_steps == 0 or last):
                    flush_pending()  # never evaluate or keep a diverged model
                    with report.timed("eval"):
                        compiled.evaluator = compiled.evaluator or create_evaluator(config)
                        eval_metrics = compiled.evaluator.run(model, step)
                    writer.write_scalars(step, eval_metrics)
                    final.update(eval_metrics)
                    save_metrics = eval_metrics
                preempted = preemption.reached(step)
                if step % t.checkpoint_every_steps == 0 or last or save_metrics or preempted:
                    flush_pending()
                    with report.timed("checkpoint"):
                        checkpointing.save_checkpoint(
                            manager,
                            step,
                            model,
                            optimizer,
                            train_iter,
                            metrics=save_metrics,
                            force=True,
                        )
                if step_callback is not None:
                    step_callback(step)
                if preempted:
                    logging.warning("SIGTERM received: saved step %d, stopping.", step)
                    final["preempted"] = 1.0
                    break
            flush_pending()
            final["step"] = float(step)
    finally:
        manager.wait_until_finished()
        manager.close()
        preemption.close()
        writer.flush()
        writer.close()
    return final


def _flat_config(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict):
            out.update(_flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
