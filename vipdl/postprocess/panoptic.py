"""Panoptic-DeepLab post-processing as a jitted, static-shape JAX function (docs/postprocessing.md#panoptic-deeplab-post-processing).

Semantic argmax, center thresholding and max-pool NMS, a fixed number of top-k center slots
with a validity mask, grouping of pixels to the nearest center through the predicted offsets,
and the pure-TF merge of deeplab2 (majority-vote class per instance, per-class renumbering in
order of first appearance, stuff area limit). Nothing depends on data-dependent shapes or host
round trips, so the function runs under `jax.jit` and `jax.vmap` (one call per batch element)
on CPU, GPU and TPU. `vipdl.postprocess.reference` holds a numpy twin of the same rules; the
tests assert that both return identical maps.

Deliberate deviation from deeplab2: when more than `keep_k_centers` centers survive NMS, the
reference thresholds at the last element of an *unsorted* `tf.math.top_k`, which is
ill-defined. Here the `keep_k_centers` highest scores are kept, ties going to the earlier
pixel in row-major order; the kept centers are then numbered in row-major order, as deeplab2
numbers all centers when there are at most `keep_k_centers`.

Distances are compared squared (deeplab2 takes the Euclidean norm); the square root is
monotonic, so this only changes which center wins when two distances differ by less than the
rounding of a float32 square root.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


@dataclasses.dataclass(frozen=True)
class PostprocessOptions:
    """Panoptic-DeepLab post-processing knobs (docs/postprocessing.md; deeplab2's defaults).

    Attributes:
      center_threshold: heatmap values <= threshold are no centers.
      nms_kernel: max-pool NMS window (odd, >= 1).
      keep_k_centers: maximum number of centers (static slots); <= 0 keeps all (one slot per
        pixel, small maps only). Must give fewer slots than the label divisor.
      stuff_area_limit: a stuff class is kept if its area is >= this many pixels.
    """

    center_threshold: float = 0.1
    nms_kernel: int = 13
    keep_k_centers: int = 400
    stuff_area_limit: int = 2048

    def __post_init__(self):
        # Normalised types keep equal options equal as jit static arguments.
        object.__setattr__(self, "center_threshold", float(self.center_threshold))
        for name in ("nms_kernel", "keep_k_centers", "stuff_area_limit"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.nms_kernel < 1:
            raise ValueError(f"PostprocessOptions.nms_kernel must be >= 1, got {self.nms_kernel}")


DEFAULT_OPTIONS = PostprocessOptions()


class Centers(NamedTuple):
    """Fixed-size table of instance centers.

    Attributes:
      yx: int32 [k, 2] center coordinates (y, x), in row-major order; 0 in unused slots.
      valid: bool [k], true for real centers (they come first).
      scores: float32 [k], NMS'ed heatmap value at the center; 0 in unused slots.
    """

    yx: jax.Array
    valid: jax.Array
    scores: jax.Array


def num_center_slots(keep_k_centers: int, num_pixels: int) -> int:
    """Static number of center slots: `keep_k_centers`, capped at the pixel count.

    A non-positive `keep_k_centers` keeps all centers, as in deeplab2; statically that means
    one slot per pixel, which is only practical for small maps.
    """
    if keep_k_centers <= 0:
        return num_pixels
    return min(keep_k_centers, num_pixels)


def nms_heatmap(
    center_heatmap: jax.Array, *, center_threshold: float, nms_kernel: int
) -> jax.Array:
    """Thresholds the raw heatmap and keeps only local maxima (plateaus keep all ties).

    Args:
      center_heatmap: float [height, width], raw center heatmap (no sigmoid).
      center_threshold: values <= threshold are zeroed.
      nms_kernel: max-pool window size; the map is zero-padded by `(k - 1) // 2` before and
        `k - 1 - (k - 1) // 2` after, as deeplab2 does.

    Returns:
      float32 [height, width]: heatmap value at local maxima above the threshold, else 0.
    """
    heat = center_heatmap.astype(jnp.float32)
    heat = jnp.where(heat > center_threshold, heat, 0.0)
    pad_begin = (nms_kernel - 1) // 2
    pad_end = nms_kernel - 1 - pad_begin
    padded = jnp.pad(heat, ((pad_begin, pad_end), (pad_begin, pad_end)))
    # Max-pooling is separable: a k x 1 then a 1 x k window give the k x k maximum exactly, with
    # 2k instead of k^2 comparisons per pixel.
    pooled = lax.reduce_window(padded, -jnp.inf, lax.max, (nms_kernel, 1), (1, 1), "VALID")
    pooled = lax.reduce_window(pooled, -jnp.inf, lax.max, (1, nms_kernel), (1, 1), "VALID")
    return jnp.where(pooled == heat, heat, 0.0)


def find_centers(
    center_heatmap: jax.Array,
    *,
    center_threshold: float = 0.1,
    nms_kernel: int = 13,
    keep_k_centers: int = 400,
) -> Centers:
    """Instance centers of a raw heatmap: threshold, NMS, then the top-k scores.

    Args:
      center_heatmap: float [height, width].
      center_threshold, nms_kernel: see `nms_heatmap`.
      keep_k_centers: number of center slots (see `num_center_slots`).

    Returns:
      `Centers` with `k = num_center_slots(keep_k_centers, height * width)` slots.
    """
    height, width = center_heatmap.shape
    nms = nms_heatmap(center_heatmap, center_threshold=center_threshold, nms_kernel=nms_kernel)
    flat = nms.reshape(-1)
    k = num_center_slots(keep_k_centers, height * width)
    # lax.top_k puts the lower index first among equal values: ties go to row-major order.
    scores, index = lax.top_k(flat, k)
    valid = scores > 0
    sentinel = height * width
    index = jnp.sort(jnp.where(valid, index, sentinel))
    valid = index < sentinel
    index = jnp.where(valid, index, 0)
    yx = jnp.stack([index // width, index % width], axis=-1).astype(jnp.int32)
    scores = jnp.where(valid, flat[index], 0.0)
    return Centers(yx=yx, valid=valid, scores=scores)


def group_pixels(
    centers: Centers, offset_map: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Assigns every pixel to the nearest valid center after moving it by its offset.

    Exact, with a cost that follows the pixels rather than pixels x centers: centers are
    bucketed per cell of a grid over the frame, each cell keeps only the centers that can be
    nearest to a point inside it, and each pixel compares its moved position with its cell's
    candidates only (docs/postprocessing.md#grouping).

    Args:
      centers: `Centers` with k slots.
      offset_map: float [height, width, 2], (dy, dx) from each pixel to its center.
      mask: optional bool [height, width]; pixels where it is False get 0 (no work is spent on
        them), e.g. pixels of stuff classes whose instance is discarded anyway.

    Returns:
      int32 [height, width]: 1 + slot index of the nearest valid center (first slot on exact
      ties), or 0 everywhere when there is no valid center.
    """
    height, width, _ = offset_map.shape
    offsets = offset_map.astype(jnp.float32)
    ys, xs = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
    )
    py = (ys + offsets[..., 0]).reshape(-1)
    px = (xs + offsets[..., 1]).reshape(-1)
    cyx = jnp.asarray(centers.yx, jnp.float32)
    valid = jnp.asarray(centers.valid)
    num_slots = valid.shape[0]

    # The grid: cells of `size` pixels covering the frame plus a margin; positions outside it
    # go to an extra cell whose candidates are all centers.
    size = max(12, int(math.sqrt(height * width / 512)))
    margin = 2 * size
    rows = -(-(height + 2 * margin) // size)
    cols = -(-(width + 2 * margin) // size)
    top = jnp.arange(rows, dtype=jnp.float32) * size - margin  # [rows]
    left = jnp.arange(cols, dtype=jnp.float32) * size - margin  # [cols]
    cy, cx = cyx[:, 0], cyx[:, 1]
    # Per (row, center) and (col, center): nearest and farthest distance between the center and
    # the cell's extent along that axis; squared sums give the box distances.
    near_y = jnp.maximum(jnp.maximum(top[:, None] - cy[None], cy[None] - top[:, None] - size), 0)
    far_y = jnp.maximum(jnp.abs(cy[None] - top[:, None]), jnp.abs(cy[None] - top[:, None] - size))
    near_x = jnp.maximum(jnp.maximum(left[:, None] - cx[None], cx[None] - left[:, None] - size), 0)
    far_x = jnp.maximum(jnp.abs(cx[None] - left[:, None]),
                        jnp.abs(cx[None] - left[:, None] - size))
    near = near_y[:, None, :] ** 2 + near_x[None, :, :] ** 2  # [rows, cols, k]
    far = far_y[:, None, :] ** 2 + far_x[None, :, :] ** 2
    near = jnp.where(valid, near, jnp.inf).reshape(rows * cols, num_slots)
    far = jnp.where(valid, far, jnp.inf).reshape(rows * cols, num_slots)
    # A point in the cell is at most `bound` from some center, so its nearest center (and every
    # center at the same distance) is no farther than that from the cell: only those centers
    # are candidates. The slack absorbs float32 rounding; extra candidates are harmless.
    bound = jnp.min(far, axis=1, keepdims=True)
    candidate = valid & (near <= bound * (1 + 1e-4) + 1e-3)
    # Each cell's candidates first, in slot order (so ties keep the earliest slot).
    candidate = jnp.concatenate([candidate, valid[None]], axis=0)  # + the all-centers cell
    count = jnp.sum(candidate, axis=1, dtype=jnp.int32)
    rank = jnp.cumsum(candidate, axis=1, dtype=jnp.int32) - 1
    slots = jnp.arange(num_slots, dtype=jnp.int32)
    cells = candidate.shape[0]
    table = jnp.zeros((cells, num_slots), jnp.int32).at[
        jnp.arange(cells)[:, None], jnp.where(candidate, rank, num_slots)
    ].set(jnp.broadcast_to(slots, candidate.shape), mode="drop")

    row = jnp.floor((py + margin) / size).astype(jnp.int32)
    col = jnp.floor((px + margin) / size).astype(jnp.int32)
    inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
    cell = jnp.where(inside, row * cols + col, rows * cols)
    todo = count[cell]
    if mask is not None:
        todo = jnp.where(mask.reshape(-1), todo, 0)
    # Loop bound: the longest candidate list of a cell in use (under vmap the loop runs until
    # every example is done).
    steps = jnp.max(todo, initial=0)

    def body(state):
        i, best, arg = state
        j = table[cell, jnp.minimum(i, num_slots - 1)]
        dy = py - cyx[j, 0]
        dx = px - cyx[j, 1]
        dist = dy * dy + dx * dx
        # Strictly smaller only: the earlier center keeps exact ties, like argmin.
        closer = (i < todo) & (dist < best)
        return i + 1, jnp.where(closer, dist, best), jnp.where(closer, j, arg)

    init = (
        jnp.int32(0),
        jnp.full(py.shape, jnp.inf, jnp.float32),
        jnp.full(py.shape, -1, jnp.int32),
    )
    _, _, arg = lax.while_loop(lambda state: state[0] < steps, body, init)
    return (arg + 1).reshape(height, width)


def merge_semantic_and_instance(
    semantic: jax.Array,
    instance: jax.Array,
    *,
    num_classes: int,
    max_instance_id: int,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    stuff_area_limit: int,
) -> jax.Array:
    """Deeplab2's pure-TF merge of semantic and class-agnostic instance maps, static shapes.

    Things: every instance id > 0, taken on thing-class pixels only, gets the most frequent
    semantic class inside it (ties to the smaller class id) and a per-class id counting from 1
    in order of the id's first appearance in a row-major scan of `instance`. Stuff: class c is
    kept where `semantic == c` and `instance == 0` if that area is >= `stuff_area_limit`.
    Everything else (including thing pixels with instance 0) is void.

    Args:
      semantic: int [height, width], class ids in [0, num_classes).
      instance: int [height, width], ids in [0, max_instance_id]; larger ids are dropped.
      num_classes: number of semantic classes (static).
      max_instance_id: largest instance id (static; sets the size of the count tables).
      thing_ids, label_divisor, ignore_label, stuff_area_limit: as in
        `panoptic_from_predictions`.

    Returns:
      int32 [height, width] panoptic map `class * label_divisor + instance`.
    """
    sem = semantic.reshape(-1).astype(jnp.int32)
    inst = instance.reshape(-1).astype(jnp.int32)
    num_ids = max_instance_id + 1
    is_thing_class = jnp.zeros((num_classes,), bool).at[jnp.asarray(thing_ids, jnp.int32)].set(True)
    thing_pixel = is_thing_class[sem]

    # Votes: [instance id, class] counts over thing pixels only.
    vote_index = jnp.where(thing_pixel, inst, 0) * num_classes + sem
    votes = jax.ops.segment_sum(
        thing_pixel.astype(jnp.int32), vote_index, num_segments=num_ids * num_classes
    ).reshape(num_ids, num_classes)
    majority = jnp.argmax(votes, axis=1).astype(jnp.int32)  # ties -> smaller class id
    present = (jnp.sum(votes, axis=1) > 0).at[0].set(False)

    # Order of first appearance of each id anywhere in the map (tf.unique order).
    first = jax.ops.segment_min(
        jnp.arange(sem.shape[0], dtype=jnp.int32), inst, num_segments=num_ids
    )
    same_class_before = (
        (majority[:, None] == majority[None, :])
        & present[None, :]
        & (first[None, :] <= first[:, None])
    )
    new_id = jnp.sum(same_class_before, axis=1, dtype=jnp.int32)  # counts itself: starts at 1
    thing_label = majority * label_divisor + new_id

    stuff_pixel = inst == 0
    stuff_area = jax.ops.segment_sum(stuff_pixel.astype(jnp.int32), sem, num_segments=num_classes)
    keep_stuff = (~is_thing_class) & (stuff_area >= stuff_area_limit)

    void = jnp.int32(ignore_label * label_divisor)
    in_range = inst < num_ids
    safe_inst = jnp.where(in_range, inst, 0)
    is_thing_segment = thing_pixel & (inst > 0) & in_range
    panoptic = jnp.where(
        is_thing_segment,
        thing_label[safe_inst],
        jnp.where(stuff_pixel & keep_stuff[sem], sem * label_divisor, void),
    )
    return panoptic.reshape(semantic.shape).astype(jnp.int32)


def _validate(
    height,
    width,
    num_classes,
    center_heatmap,
    offset_map,
    thing_ids,
    label_divisor,
    ignore_label,
    options: PostprocessOptions,
) -> None:
    if center_heatmap.shape != (height, width):
        raise ValueError(
            f"center_heatmap must be [height, width] = {(height, width)}, "
            f"got shape {center_heatmap.shape}"
        )
    if offset_map.shape != (height, width, 2):
        raise ValueError(
            f"offset_map must be [height, width, 2] = {(height, width, 2)}, "
            f"got shape {offset_map.shape}"
        )
    bad = [t for t in thing_ids if not 0 <= t < num_classes]
    if bad:
        raise ValueError(f"thing_ids {bad} outside [0, num_classes={num_classes})")
    if not 0 <= ignore_label < label_divisor:
        raise ValueError(
            f"ignore_label {ignore_label} must be in [0, label_divisor={label_divisor})"
        )
    slots = num_center_slots(options.keep_k_centers, height * width)
    if slots >= label_divisor:
        raise ValueError(
            f"keep_k_centers={options.keep_k_centers} gives {slots} center slots; per-class instance ids "
            f"could then reach label_divisor={label_divisor}. Use fewer centers."
        )


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_classes",
        "thing_ids",
        "label_divisor",
        "ignore_label",
        "options",
    ),
)
def _panoptic_jit(
    semantic,
    center_heatmap,
    offset_map,
    *,
    num_classes,
    thing_ids,
    label_divisor,
    ignore_label,
    options: PostprocessOptions,
):
    if semantic.ndim == 3:  # logits or probabilities
        semantic = jnp.argmax(semantic, axis=-1)
    semantic = semantic.astype(jnp.int32)
    centers = find_centers(
        center_heatmap,
        center_threshold=options.center_threshold,
        nms_kernel=options.nms_kernel,
        keep_k_centers=options.keep_k_centers,
    )
    is_thing_class = jnp.zeros((num_classes,), bool).at[jnp.asarray(thing_ids, jnp.int32)].set(True)
    thing = is_thing_class[semantic]
    instance = jnp.where(thing, group_pixels(centers, offset_map, thing), 0)
    return merge_semantic_and_instance(
        semantic,
        instance,
        num_classes=num_classes,
        max_instance_id=centers.valid.shape[0],
        thing_ids=thing_ids,
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        stuff_area_limit=options.stuff_area_limit,
    )


def panoptic_from_semantic(
    semantic: jax.Array,
    center_heatmap: jax.Array,
    offset_map: jax.Array,
    *,
    num_classes: int,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    options: PostprocessOptions = DEFAULT_OPTIONS,
) -> jax.Array:
    """`panoptic_from_predictions` from a semantic label map instead of logits.

    Args:
      semantic: int [height, width] class ids in [0, num_classes) (the logits' argmax).
      num_classes: number of semantic classes (static).
      Others: as in `panoptic_from_predictions`.

    Returns:
      int32 [height, width] panoptic map.
    """
    if semantic.ndim != 2:
        raise ValueError(f"semantic must be [height, width], got shape {semantic.shape}")
    return _run(
        semantic,
        center_heatmap,
        offset_map,
        num_classes=num_classes,
        thing_ids=thing_ids,
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        options=options,
    )


def panoptic_from_predictions(
    semantic_logits: jax.Array,
    center_heatmap: jax.Array,
    offset_map: jax.Array,
    *,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    options: PostprocessOptions = DEFAULT_OPTIONS,
) -> jax.Array:
    """Panoptic-DeepLab post-processing of one image (docs/postprocessing.md#panoptic-deeplab-post-processing), jitted with static shapes.

    Works inside `jax.jit` and under `jax.vmap` (map over a leading batch axis); the keyword
    options are static.

    Args:
      semantic_logits: float [height, width, num_classes], logits or probabilities (only the
        argmax is used; ties go to the smaller class id).
      center_heatmap: float [height, width], raw heatmap (no sigmoid).
      offset_map: float [height, width, 2], (dy, dx) from each pixel to its instance center.
      thing_ids: class ids that carry instances.
      label_divisor: D of `class * D + instance`.
      ignore_label: void class; void pixels are `ignore_label * D`.
      options: the post-processing knobs (static).

    Returns:
      int32 [height, width] panoptic map.
    """
    if semantic_logits.ndim != 3:
        raise ValueError(
            f"semantic_logits must be [height, width, classes], got shape {semantic_logits.shape}"
        )
    return _run(
        semantic_logits,
        center_heatmap,
        offset_map,
        num_classes=semantic_logits.shape[-1],
        thing_ids=thing_ids,
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        options=options,
    )


def _run(
    semantic,
    center_heatmap,
    offset_map,
    *,
    num_classes,
    thing_ids,
    label_divisor,
    ignore_label,
    options: PostprocessOptions,
):
    """Validates (trace-time shapes and options) and calls the jitted core with hashable
    static options."""
    thing_ids = tuple(int(t) for t in thing_ids)
    height, width = semantic.shape[:2]
    _validate(
        height,
        width,
        num_classes,
        center_heatmap,
        offset_map,
        thing_ids,
        label_divisor,
        ignore_label,
        options,
    )
    return _panoptic_jit(
        semantic,
        center_heatmap,
        offset_map,
        num_classes=int(num_classes),
        thing_ids=thing_ids,
        label_divisor=int(label_divisor),
        ignore_label=int(ignore_label),
        options=options,
    )
