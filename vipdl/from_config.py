"""Config -> typed objects: the one library module (besides the trainer) that reads a config.

A config is an `ml_collections.ConfigDict` from `configs/*.py` (or a workdir's `config.json`).
Everything here turns one of its sections into the typed object the library takes: the dataset
descriptor, the `ModelConfig` and model, the post-processing options, the data sources, the
optimizer and the loss weights. Trainer, `VideoPredictor.from_checkpoint`, the CLIs and the
notebooks call these functions; nothing below this module reads a config.

Heavy optional dependencies (the TFDS/grain input pipeline) are imported inside the functions
that need them, so building a model for inference stays cheap to import.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from vipdl import models, optim, parallel
from vipdl.data import descriptors
from vipdl.postprocess import PostprocessOptions

META_ARCHS = ("vip_deeplab", "panoptic_deeplab")


CUSTOM = "custom"  # config.data.dataset of your own videos (docs/datasets.md#custom).


def descriptor(config: ml_collections.ConfigDict) -> descriptors.DatasetDescriptor:
    """The `DatasetDescriptor` of `config.data.dataset`.

    A custom dataset's descriptor is `config.data.custom_descriptor` (JSON, written there at
    train start by `with_dataset_descriptor`, so a run's config.json alone names its classes),
    else the one stored with the prepared data in `config.data.data_dir`.
    """
    d = config.data
    if d.dataset != CUSTOM:
        return descriptors.get_descriptor(d.dataset)
    stored = d.get("custom_descriptor", "")
    if stored:
        try:
            obj = json.loads(stored)
        except ValueError as e:
            raise ValueError(f"config.data.custom_descriptor is not valid JSON ({e})") from None
        return descriptors.DatasetDescriptor.from_dict(obj, "config.data.custom_descriptor")
    if not d.data_dir:
        raise ValueError(
            "config.data.dataset='custom' needs config.data.data_dir: the --data_dir given to "
            "`vipdl-prepare-data --dataset custom`"
        )
    from vipdl.data import custom

    return custom.read_prepared_descriptor(d.data_dir)


def with_dataset_descriptor(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` with a custom dataset's descriptor in `config.data.custom_descriptor`.

    Other datasets come back unchanged. The trainer saves the result as the workdir's
    config.json, so evaluation and `VideoPredictor.from_checkpoint` know the class names and
    colours without the prepared data.

    Raises:
        ValueError: the config already carries a descriptor that differs from the prepared
            data's (e.g. a workdir reused for another dataset).
    """
    if config.data.dataset != CUSTOM:
        return config
    stored = config.data.get("custom_descriptor", "")
    prepared = None
    if config.data.data_dir:
        from vipdl.data import custom

        if custom.prepared_descriptor_path(config.data.data_dir).is_file() or not stored:
            prepared = custom.read_prepared_descriptor(config.data.data_dir)
    if prepared is None:
        descriptor(config)  # Validates the stored one.
        return config
    if stored and descriptor(config) != prepared:
        raise ValueError(
            f"config.data.custom_descriptor ({descriptor(config).name}: "
            f"{list(descriptor(config).class_names)}) differs from the dataset prepared in "
            f"{config.data.data_dir} ({prepared.name}: {list(prepared.class_names)})"
        )
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.data.custom_descriptor = json.dumps(prepared.to_dict(), separators=(",", ":"))
    return config


def is_vip(config: ml_collections.ConfigDict) -> bool:
    """Whether `config.model.meta_arch` is ViP-DeepLab (else Panoptic-DeepLab)."""
    meta = config.model.meta_arch
    if meta not in META_ARCHS:
        raise ValueError(f"config.model.meta_arch must be one of {META_ARCHS}, got {meta!r}")
    return meta == "vip_deeplab"


def model_config(config: ml_collections.ConfigDict) -> models.ModelConfig:
    """The `ModelConfig` of `config.model` for the classes of `config.data.dataset`."""
    m = config.model
    d = descriptor(config)
    if m.aspp_pooling == "global":
        pool = None
    elif m.aspp_pooling == "train_crop":
        # deeplab2 sizes the ASPP image-pooling window from the training crop
        # (docs/architecture.md#aspp).
        pool = models.aspp_pool_size(tuple(config.data.crop_size_hw), m.output_stride)
    else:
        raise ValueError(
            f"config.model.aspp_pooling must be 'global' or 'train_crop', got {m.aspp_pooling!r}"
        )
    if m.use_depth and not d.has_depth:
        raise ValueError(f"config.model.use_depth=True but dataset {d.name} has no depth")
    return models.ModelConfig(
        num_classes=d.num_classes,
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
        max_depth=d.max_depth,
        depth_head_channels=m.depth_head_channels,
        dropout_rate=m.dropout_rate,
        # Configs saved before the field existed used deeplab2's default.
        batchnorm_epsilon=m.get("batchnorm_epsilon", 1e-3),
        dtype=m.dtype,
        remat=m.remat,
    )


def create_model(config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> nnx.Module:
    """Builds (and initialises) the model of `config.model`."""
    cls = models.ViPDeepLab if is_vip(config) else models.PanopticDeepLab
    return cls(model_config(config), rngs=rngs)


def abstract_model(config: ml_collections.ConfigDict) -> nnx.Module:
    """The model of `config.model` with shape-only arrays (no initialiser runs).

    For code that restores every weight anyway (inference, evaluation, conversion): fill it with
    `checkpointing.restore_model_weights` (see `restored_model`).
    """
    return nnx.eval_shape(lambda: create_model(config, rngs=nnx.Rngs(0)))


def restored_model(config: ml_collections.ConfigDict, checkpoint, *,
                   which: str = "latest") -> nnx.Module:
    """The model of `config.model` holding the weights of `checkpoint`, without initialising.

    Builds the shape-only model and reads the checkpoint into it (seconds, where running the
    random initialisers op by op takes minutes on a CPU). `checkpoint`: a workdir, its
    checkpoint directory or a step directory; `which`: "latest" or "best".

    Raises:
      ValueError: the checkpoint does not fit the model (the mismatches are named).
    """
    from vipdl import checkpointing

    model = abstract_model(config)
    checkpointing.restore_model_weights(model, checkpoint, which=which)
    return model


def postprocess_options(config: ml_collections.ConfigDict) -> PostprocessOptions:
    """The Panoptic-DeepLab post-processing options of `config.postprocess`."""
    p = config.postprocess
    return PostprocessOptions(
        center_threshold=float(p.center_threshold),
        nms_kernel=int(p.nms_kernel),
        keep_k_centers=int(p.keep_k_centers),
        stuff_area_limit=int(p.stuff_area_limit),
    )


def eval_crop_size_hw(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """The model input size at evaluation, `config.data.eval_crop_size_hw`."""
    return tuple(int(v) for v in config.data.eval_crop_size_hw)


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
    # Per-split seeds: the videos `scripts/make_synthetic.py --seed` writes for that split, so
    # in-memory runs and runs on the prepared copy see the same data; splits never share videos.
    n = s.num_train_videos if split == d.train_split else s.num_eval_videos
    return synthetic.SyntheticPairSource(n, config=synthetic_world(config), seed=s.seed, split=split)


def eval_videos(config: ml_collections.ConfigDict, split: str | None = None, *,
                max_videos: int = 0) -> Iterator[tuple[str, Any, Any]]:
    """`(sequence id, frames uint8 [T, H, W, 3], panoptic int32 [T, H, W])` per video of `split`
    (default `config.data.eval_split`), at most `max_videos` (0 = all), one video at a time."""
    from vipdl.data import pipeline

    videos = pipeline.iter_videos(create_source(config, split or config.data.eval_split))
    for i, video in enumerate(videos):
        if max_videos and i >= max_videos:
            return
        yield video


def train_iterator(config: ml_collections.ConfigDict, mesh: Mesh) -> Iterator[dict]:
    """The grain iterator of this process's share of the training batches."""
    from vipdl.data import augment, pipeline

    d = config.data
    dataset = descriptor(config)
    if is_vip(config) and not dataset.is_video:
        raise ValueError(
            f"{dataset.name} is an image dataset (no next frame): train it with "
            "config.model.meta_arch='panoptic_deeplab'"
        )
    return pipeline.make_train_loader(
        create_source(config, d.train_split),
        descriptor=dataset,
        crop_size_hw=tuple(d.crop_size_hw),
        batch_size=parallel.process_batch_size(d.batch_size, mesh),
        seed=config.seed,
        scales=augment.scale_set(d.scales_min, d.scales_max, d.scales_step),
        use_next_frame=is_vip(config),
        use_depth=config.model.use_depth,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        num_workers=d.num_workers,
    )


def optimizer(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation,
                                                          optax.Schedule]:
    """Adam under the poly schedule of `config.optim` over `config.train.num_steps`."""
    o = config.optim
    return optim.make_optimizer(
        learning_rate=o.learning_rate,
        num_steps=config.train.num_steps,
        power=o.power,
        end_learning_rate=o.end_learning_rate,
        adam_eps=o.adam_eps,
    )


def loss_weights(config: ml_collections.ConfigDict) -> dict[str, float]:
    """Keyword arguments of `vipdl.losses.compute_losses` from `config.loss`."""
    c = config.loss
    return dict(
        semantic_weight=c.semantic_weight,
        top_k_percent=c.top_k_percent,
        center_weight=c.center_weight,
        offset_weight=c.offset_weight,
        next_offset_weight=c.next_offset_weight,
        depth_weight=c.depth_weight,
        ignore_label=descriptor(config).ignore_label,
    )


def flat(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    """`{"section.field": value}` for every leaf of `config` (e.g. for hyper-parameter logs)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out

