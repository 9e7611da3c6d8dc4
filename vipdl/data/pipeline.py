"""Grain input pipelines: training batches of augmented pairs with targets; whole videos.

Training (`make_train_loader`): random-access source -> seeded global shuffle -> repeat ->
validate + pair-consistent augmentation + targets (grain `random_map`, seeded by the pipeline seed
and the element's global index) -> this process's stride of the global stream -> batch ->
optional multiprocess prefetch. Because randomness depends only on (seed, global index) and the
per-process slice is taken after it, the global batch of a step (for a fixed global batch size)
is the same for any number of processes or workers, and `get_state()` / `set_state()` resume on
the exact next batch.

Evaluation runs on whole videos: `iter_videos` rebuilds them from an ordered pair source (see
`vipdl.video_evaluation`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Protocol

import grain
import numpy as np
from absl import flags

from vipdl import keys
from vipdl.data import augment, targets
from vipdl.data.descriptors import DatasetDescriptor, LabelConvention

# Extra keys of evaluation batches (not in the training contract).

DEFAULT_SCALES = augment.scale_set()


class PairSource(Protocol):
    """Random-access source of decoded dataset examples (docs/architecture.md)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict: ...


def _where(example: dict, next_frame: bool = False) -> str:
    sequence = example.get(keys.SEQUENCE_ID, "?")
    frame = example.get(keys.NEXT_FRAME_INDEX if next_frame else keys.FRAME_INDEX, "?")
    return f"sequence {sequence!r} frame {frame}"


def validate_example(
    example: dict,
    *,
    num_classes: int,
    ignore_label: int,
    label_divisor: int,
    use_next_frame: bool = True,
    use_depth: bool = False,
) -> None:
    """Checks one decoded example against the contract; raises ValueError naming field and frame.

    Checks: required keys present; images uint8 `[h, w, 3]`; panoptic maps integer `[h, w]` of
    the image size; every class id in `[0, num_classes)` or equal to `ignore_label`; depth float
    `[h, w]`, finite and >= 0.
    """
    required = [keys.IMAGE, keys.PANOPTIC]
    if use_next_frame:
        required += [keys.NEXT_IMAGE, keys.NEXT_PANOPTIC]
    if use_depth:
        required.append(keys.DEPTH)
    missing = [k for k in required if k not in example]
    if missing:
        raise ValueError(f"{_where(example)}: missing fields {missing}; got {sorted(example)}")

    image = np.asarray(example[keys.IMAGE])
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"{keys.IMAGE} of {_where(example)}: expected uint8 [height, width, 3], "
            f"got {image.dtype} {image.shape}"
        )
    size = image.shape[:2]
    frames = [(keys.PANOPTIC, False)]
    if use_next_frame:
        frames.append((keys.NEXT_PANOPTIC, True))
        next_image = np.asarray(example[keys.NEXT_IMAGE])
        if next_image.dtype != np.uint8 or next_image.shape != image.shape:
            raise ValueError(
                f"{keys.NEXT_IMAGE} of {_where(example, True)}: expected uint8 {image.shape} like "
                f"{keys.IMAGE}, got {next_image.dtype} {next_image.shape}"
            )
    for key, is_next in frames:
        label = np.asarray(example[key])
        if not np.issubdtype(label.dtype, np.integer) or label.shape != size:
            raise ValueError(
                f"{key} of {_where(example, is_next)}: expected an integer map of the image size "
                f"{size}, got {label.dtype} {label.shape}"
            )
        semantic = label // label_divisor
        bad = (label < 0) | ((semantic >= num_classes) & (semantic != ignore_label))
        if bad.any():
            values = np.unique(label[bad])[:5].tolist()
            raise ValueError(
                f"{key} of {_where(example, is_next)}: {int(bad.sum())} pixels with class ids "
                f"outside [0, {num_classes}) and not ignore_label {ignore_label} (label_divisor "
                f"{label_divisor}); first values {values}"
            )
    if use_depth:
        depth = np.asarray(example[keys.DEPTH])
        if not np.issubdtype(depth.dtype, np.floating) or depth.shape != size:
            raise ValueError(
                f"{keys.DEPTH} of {_where(example)}: expected a float map of the image size "
                f"{size}, got {depth.dtype} {depth.shape}"
            )
        if not np.all(np.isfinite(depth) & (depth >= 0)):
            raise ValueError(f"{keys.DEPTH} of {_where(example)}: values must be finite and >= 0")


@dataclasses.dataclass(frozen=True)
class _TargetOptions:
    sigma: float = 8.0
    small_instance_area: int = 4096
    small_instance_weight: float = 3.0


def _batch_element(
    example: dict,
    spec: LabelConvention,
    options: _TargetOptions,
    *,
    use_next_frame: bool,
    use_depth: bool,
    with_targets: bool = True,
) -> dict[str, np.ndarray]:
    """Training-batch entries (without the batch axis) of a preprocessed example."""
    panoptic = example[keys.PANOPTIC]
    next_panoptic = example[keys.NEXT_PANOPTIC] if use_next_frame else None
    if use_next_frame:
        image = np.concatenate([example[keys.IMAGE], example[keys.NEXT_IMAGE]], axis=-1)
    else:
        image = example[keys.IMAGE]
    element = {keys.GT_IMAGE: image, keys.GT_PANOPTIC: panoptic}
    if use_next_frame:
        element[keys.GT_NEXT_PANOPTIC] = next_panoptic
    if with_targets:
        element.update(
            targets.make_targets(
                panoptic,
                next_panoptic,
                thing_ids=spec.thing_ids,
                label_divisor=spec.label_divisor,
                ignore_label=spec.ignore_label,
                sigma=options.sigma,
                small_instance_area=options.small_instance_area,
                small_instance_weight=options.small_instance_weight,
            )
        )
    if use_depth:
        element[keys.GT_DEPTH] = example[keys.DEPTH]
    return element


def _select(example: dict, *, use_next_frame: bool, use_depth: bool) -> dict:
    """Drops the fields this pipeline does not use, so they are not augmented."""
    dropped = set()
    if not use_next_frame:
        dropped |= {keys.NEXT_IMAGE, keys.NEXT_PANOPTIC}
    if not use_depth:
        dropped.add(keys.DEPTH)
    return {k: v for k, v in example.items() if k not in dropped}


@dataclasses.dataclass(frozen=True)
class _TrainTransform(grain.transforms.RandomMap):
    """validate -> augment -> targets for one example; module-level so worker processes load it."""

    spec: LabelConvention
    options: _TargetOptions
    crop_size_hw: tuple[int, int]
    scales: tuple[float, ...]
    use_next_frame: bool
    use_depth: bool
    pad_image_value: float

    def random_map(self, element: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
        validate_example(
            element,
            num_classes=self.spec.num_classes,
            ignore_label=self.spec.ignore_label,
            label_divisor=self.spec.label_divisor,
            use_next_frame=self.use_next_frame,
            use_depth=self.use_depth,
        )
        example = _select(element, use_next_frame=self.use_next_frame, use_depth=self.use_depth)
        example = augment.random_pair_transform(
            example,
            rng,
            crop_size_hw=self.crop_size_hw,
            scales=self.scales,
            ignore_label=self.spec.ignore_label,
            label_divisor=self.spec.label_divisor,
            pad_image_value=self.pad_image_value,
        )
        return _batch_element(
            example,
            self.spec,
            self.options,
            use_next_frame=self.use_next_frame,
            use_depth=self.use_depth,
        )


def _check_crop(crop_size_hw) -> tuple[int, int]:
    crop = tuple(int(v) for v in crop_size_hw)
    if len(crop) != 2 or min(crop) < 1:
        raise ValueError(f"crop_size_hw must be two positive ints, got {crop_size_hw}")
    return crop


def _check_shard(shard_index: int, shard_count: int) -> None:
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(
            f"need 0 <= shard_index < shard_count, got shard_index={shard_index}, "
            f"shard_count={shard_count}"
        )


def make_train_loader(
    source: PairSource,
    *,
    descriptor: DatasetDescriptor,
    crop_size_hw: tuple[int, int],
    batch_size: int,
    seed: int,
    scales: Sequence[float] = DEFAULT_SCALES,
    use_next_frame: bool = True,
    use_depth: bool = False,
    shard_index: int = 0,
    shard_count: int = 1,
    num_workers: int = 0,
    num_epochs: int | None = None,
    read_threads: int = 1,
    prefetch_batches: int = 2,
    worker_buffer_size: int = 1,
    pad_image_value: float = 127.5,
    sigma: float = 8.0,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3.0,
) -> grain.DatasetIterator:
    """The training input pipeline of one process.

    Args:
      source: random-access source of decoded examples (`builders.load_source`,
        `synthetic.SyntheticPairSource`, or any object with `__len__`/`__getitem__`).
      descriptor: dataset facts (classes, things, ignore label, label divisor).
      crop_size_hw: training crop `(height, width)`, e.g. (513, 1025) for Cityscapes.
      batch_size: per-process batch size (global batch / `shard_count`).
      seed: seeds the shuffle and the augmentation.
      scales: discrete random-scale set (`augment.scale_set`).
      use_next_frame: ViP-DeepLab pairs (6-channel images and next-frame targets); False gives
        Panoptic-DeepLab single-frame batches (3 channels, no next-frame keys).
      use_depth: add `GT_DEPTH` (the source must provide `DEPTH`).
      shard_index, shard_count: this process takes global elements `shard_index::shard_count`
        (normally `jax.process_index()`, `jax.process_count()`).
      num_workers: worker processes of grain's `mp_prefetch` (0: in-process).
      num_epochs: None repeats forever; otherwise the stream is truncated to whole global batches.
      read_threads, prefetch_batches: grain `ReadOptions` of each process (threads computing
        batches, batches buffered ahead).
      worker_buffer_size: batches buffered per worker process.
      pad_image_value: image padding value.
      sigma, small_instance_area, small_instance_weight: target options (docs/training.md#targets).

    Returns:
      A grain iterator: `next(it)` is a dict of numpy arrays with leading axis `batch_size`
      (the "Training batch" of docs/architecture.md); `it.get_state()` / `it.set_state(state)`
      save and restore the position (the state is a small JSON-able dict).

    Kept in one function so the order of the grain stages (which fixes the batches a seed gives)
    reads top to bottom.
    """
    crop = _check_crop(crop_size_hw)
    _check_shard(shard_index, shard_count)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(source) == 0:
        raise ValueError("the training source is empty")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None or >= 1, got {num_epochs}")
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales}")
    transform = _TrainTransform(
        spec=descriptor.labels,
        options=_TargetOptions(sigma, small_instance_area, small_instance_weight),
        crop_size_hw=crop,
        scales=tuple(float(s) for s in scales),
        use_next_frame=use_next_frame,
        use_depth=use_depth,
        pad_image_value=pad_image_value,
    )

    ds = grain.MapDataset.source(source).seed(seed)
    # Shuffle before repeat: every epoch is a fresh permutation and epochs do not mix.
    ds = ds.shuffle().repeat(num_epochs)
    ds = ds.random_map(transform)
    global_batch = batch_size * shard_count
    if num_epochs is not None:
        usable = len(ds) // global_batch * global_batch
        if usable == 0:
            raise ValueError(
                f"{len(ds)} examples cannot fill one global batch of {global_batch} "
                f"({shard_count} processes x {batch_size})"
            )
        ds = ds[:usable]
    # Slicing after the random map keeps each element's augmentation tied to its global index.
    ds = ds[shard_index::shard_count]
    ds = ds.batch(batch_size, drop_remainder=True)
    iter_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    )
    if num_workers > 0:
        # grain 0.2.18 reads an absl flag when starting workers and fails in programs that do
        # not parse absl flags (google/grain#1355, fixed upstream after this release).
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        # Workers take whole batches round-robin, so the batch sequence does not depend on
        # num_workers.
        iter_ds = iter_ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=num_workers, per_worker_buffer_size=worker_buffer_size
            )
        )
    return iter(iter_ds)


def iter_videos(source: PairSource) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Whole videos of an ordered pair source: `[pair.image ...] + [last_pair.next_image]`.

    Args:
      source: pairs of each video consecutive and in frame order (evaluation splits); examples
        without a next frame (image datasets) are frames, each image its own video.

    Yields:
      `(sequence_id, frames uint8 [T, H, W, 3], panoptic int32 [T, H, W])`, one video at a time.

    Raises:
      ValueError: if a video's pairs are not consecutive in the source, do not chain
        (`FRAME_INDEX` of a pair != `NEXT_FRAME_INDEX` of the previous one) or change size.
    """
    finished: set[str] = set()
    sequence, frames, panoptic, last = None, [], [], None

    def video():
        if keys.NEXT_IMAGE not in last:  # Image datasets: every example is a frame.
            return sequence, np.stack(frames), np.stack(panoptic).astype(np.int32)
        return (
            sequence,
            np.stack(frames + [np.asarray(last[keys.NEXT_IMAGE])]),
            np.stack(panoptic + [np.asarray(last[keys.NEXT_PANOPTIC])]).astype(np.int32),
        )

    for index in range(len(source)):
        example = source[index]
        current = str(example[keys.SEQUENCE_ID])
        if current != sequence:
            if sequence is not None:
                yield video()
                finished.add(sequence)
            if current in finished:
                raise ValueError(
                    f"sequence {current!r}: its pairs are not consecutive in the source "
                    f"(it appears again at pair {index} after other videos)"
                )
            sequence, frames, panoptic = current, [], []
        elif example[keys.FRAME_INDEX] != last.get(keys.NEXT_FRAME_INDEX, -1):
            raise ValueError(
                f"sequence {current!r}: pair {index} starts at frame {example[keys.FRAME_INDEX]} "
                f"but the previous pair ends at frame {last[keys.NEXT_FRAME_INDEX]}; pairs must "
                "be consecutive and in frame order"
            )
        image = np.asarray(example[keys.IMAGE])
        if frames and image.shape != frames[0].shape:
            raise ValueError(
                f"{keys.IMAGE} of {_where(example)}: shape {image.shape} differs from the "
                f"video's first frame {frames[0].shape}"
            )
        frames.append(image)
        panoptic.append(np.asarray(example[keys.PANOPTIC]))
        last = example
    if sequence is not None:
        yield video()
