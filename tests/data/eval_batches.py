"""Padded, sharded evaluation batches of pairs (used by the pipeline tests only).

No augmentation, bottom/right padding to the eval crop, source order kept, a contiguous block of
examples per process padded to the same number of batches with a `"valid"` mask. vipdl evaluates
whole videos instead (`vipdl.video_evaluation`); this batch form is kept to test that the
pipeline's per-example work (`_batch_element`) is deterministic and shards cleanly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import grain
import numpy as np

from vipdl import keys
from vipdl.data import augment
from vipdl.data.descriptors import DatasetDescriptor, LabelConvention
from vipdl.data.pipeline import (
    PairSource,
    _batch_element,
    _check_crop,
    _check_shard,
    _select,
    _TargetOptions,
    validate_example,
)

VALID = "valid"  # bool [batch]: False on padding examples.
IMAGE_SIZE = "image_size"  # int32 [batch, 2]: (height, width) before padding; (0, 0) on padding.


@dataclasses.dataclass(frozen=True)
class _EvalElement:
    """Index `i` of this process's padded block -> one evaluation-batch element."""

    source: Any
    start: int
    stop: int
    spec: LabelConvention
    options: _TargetOptions
    crop_size_hw: tuple[int, int]
    use_next_frame: bool
    use_depth: bool
    with_targets: bool
    pad_image_value: float

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        index = self.start + int(i)
        valid = index < self.stop
        if valid:
            example = self.source[index]
            validate_example(
                example,
                num_classes=self.spec.num_classes,
                ignore_label=self.spec.ignore_label,
                label_divisor=self.spec.label_divisor,
                use_next_frame=self.use_next_frame,
                use_depth=self.use_depth,
            )
            example = _select(example, use_next_frame=self.use_next_frame, use_depth=self.use_depth)
            size = example[keys.IMAGE].shape[:2]
        else:
            example = self._padding_example()
            size = (0, 0)
        padded = augment.pad_bottom_right(
            example,
            self.crop_size_hw,
            ignore_label=self.spec.ignore_label,
            label_divisor=self.spec.label_divisor,
            pad_image_value=self.pad_image_value,
        )
        element = _batch_element(
            padded,
            self.spec,
            self.options,
            use_next_frame=self.use_next_frame,
            use_depth=self.use_depth,
            with_targets=self.with_targets,
        )
        element[VALID] = np.bool_(valid)
        element[IMAGE_SIZE] = np.asarray(size, dtype=np.int32)
        element[keys.SEQUENCE_ID] = str(example.get(keys.SEQUENCE_ID, ""))
        element[keys.FRAME_INDEX] = np.int32(example.get(keys.FRAME_INDEX, -1))
        if self.use_next_frame:
            element[keys.NEXT_FRAME_INDEX] = np.int32(example.get(keys.NEXT_FRAME_INDEX, -1))
        return element

    def _padding_example(self) -> dict:
        # A 1x1 void example; padding to the crop fills the rest with the same values.
        void = np.full((1, 1), self.spec.ignore_label * self.spec.label_divisor, np.int32)
        image = np.full((1, 1, 3), self.pad_image_value, np.float32)
        example = {keys.IMAGE: image, keys.PANOPTIC: void}
        if self.use_next_frame:
            example[keys.NEXT_IMAGE] = image
            example[keys.NEXT_PANOPTIC] = void
        if self.use_depth:
            example[keys.DEPTH] = np.zeros((1, 1), np.float32)
        return example


def num_eval_batches(num_examples: int, *, batch_size: int, shard_count: int = 1) -> int:
    """Batches every process runs in `make_eval_batches` (the same on all processes)."""
    per_process = math.ceil(num_examples / shard_count)
    return math.ceil(per_process / batch_size)


def make_eval_batches(
    source: PairSource,
    *,
    descriptor: DatasetDescriptor,
    crop_size_hw: tuple[int, int],
    batch_size: int,
    use_next_frame: bool = True,
    use_depth: bool = False,
    shard_index: int = 0,
    shard_count: int = 1,
    with_targets: bool = True,
    read_threads: int = 1,
    prefetch_batches: int = 2,
    pad_image_value: float = 127.5,
    sigma: float = 8.0,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3.0,
) -> grain.IterDataset:
    """Evaluation batches in source order, padded to the eval crop, with a validity mask.

    Process `shard_index` takes the contiguous block `[k * n, (k + 1) * n)` of the source with
    `n = ceil(len(source) / shard_count)`; every process yields `num_eval_batches(...)` batches,
    the missing examples being void padding with `VALID` False.

    Args:
      source: random-access source of decoded examples, in evaluation order.
      descriptor: dataset facts.
      crop_size_hw: eval crop `(height, width)` (e.g. (1025, 2049)); images are padded
        bottom/right to it (image `pad_image_value`, labels void, depth 0), never resized.
      batch_size: per-process batch size.
      use_next_frame, use_depth: as in `make_train_loader`.
      shard_index, shard_count: this process and the number of processes.
      with_targets: also compute the training targets (for an eval loss).
      read_threads, prefetch_batches: grain `ReadOptions`.
      pad_image_value, sigma, small_instance_area, small_instance_weight: as for training.

    Returns:
      An iterable of batches (a grain IterDataset: each `iter()` starts at the first batch). A
      batch has the training-batch keys (targets only with `with_targets`) plus `VALID` bool
      `[b]`, `IMAGE_SIZE` int32 `[b, 2]` (size before padding), `keys.SEQUENCE_ID` str `[b]`,
      `keys.FRAME_INDEX` (and `keys.NEXT_FRAME_INDEX` for pairs) int32 `[b]`.
    """
    crop = _check_crop(crop_size_hw)
    _check_shard(shard_index, shard_count)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    per_process = math.ceil(len(source) / shard_count)
    start = min(shard_index * per_process, len(source))
    stop = min(start + per_process, len(source))
    count = num_eval_batches(len(source), batch_size=batch_size, shard_count=shard_count)
    element = _EvalElement(
        source=source,
        start=start,
        stop=stop,
        spec=descriptor.labels,
        options=_TargetOptions(sigma, small_instance_area, small_instance_weight),
        crop_size_hw=crop,
        use_next_frame=use_next_frame,
        use_depth=use_depth,
        with_targets=with_targets,
        pad_image_value=pad_image_value,
    )
    ds = grain.MapDataset.range(count * batch_size).map(element).batch(batch_size)
    return ds.to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    )
