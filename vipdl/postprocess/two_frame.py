"""ViP-DeepLab two-frame inference (spec §7.2): the H x 2W canvas and the pairwise stitcher.

For a pair (t, t+1) the model gives frame t's semantic logits, center heatmap and offsets,
frame t+1's own outputs, and next-frame offsets predicted on frame t+1's pixels that point to
frame t's centers. `two_frame_panoptic` lays both frames side by side (t left, t+1 right),
keeps centers from frame t only, shifts the next-frame x-offsets by -W so right-half pixels
point into the left half, runs the single-frame post-processing on the canvas and splits it:
the left half is frame t, the right half is frame t+1 with instance ids shared with frame t.
Majority vote and the stuff area test therefore run over both frames jointly (spec §11.15).

`stitch_pair` then transfers those shared ids onto frame t+1's standalone panoptic map by
mutual-best IoU (no threshold, same class, instance 0 excluded); unmatched segments keep their
id + D // 2 and are new instances. It runs on device (static shapes, under `jit`/`vmap`) for JAX
inputs and as the numpy reference (`reference.stitch_pair`) for numpy inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vipdl import keys
from vipdl.postprocess import panoptic as panoptic_lib
from vipdl.postprocess import reference


def build_canvas(
    pred_t: Mapping[str, jax.Array],
    pred_t1: Mapping[str, jax.Array],
    next_offset_map: jax.Array,
    *,
    with_logits: bool = True,
) -> tuple[jax.Array | None, jax.Array, jax.Array]:
    """The H x 2W inputs of the two-frame post-processing (spec §7.2 step 3).

    Args:
      pred_t: frame t predictions of one example, keyed by `vipdl.keys`:
        `PRED_SEMANTIC_LOGITS` float [h, w, classes], `PRED_CENTER_HEATMAP` float [h, w],
        `PRED_OFFSET_MAP` float [h, w, 2].
      pred_t1: frame t+1's own predictions; only `PRED_SEMANTIC_LOGITS` is used.
      next_offset_map: float [h, w, 2], (dy, dx) from frame t+1 pixels to frame t centers.

      with_logits: False skips the logits canvas (returned as None).

    Returns:
      (semantic logits [h, 2w, classes], center heatmap [h, 2w], offsets [h, 2w, 2]).
    """
    logits_t = jnp.asarray(pred_t[keys.PRED_SEMANTIC_LOGITS])
    logits_t1 = jnp.asarray(pred_t1[keys.PRED_SEMANTIC_LOGITS])
    heat_t = jnp.asarray(pred_t[keys.PRED_CENTER_HEATMAP])
    offset_t = jnp.asarray(pred_t[keys.PRED_OFFSET_MAP])
    next_offset = jnp.asarray(next_offset_map)
    if logits_t.ndim != 3 or logits_t1.shape != logits_t.shape:
        raise ValueError(
            f"{keys.PRED_SEMANTIC_LOGITS} of both frames must be [h, w, classes] with equal "
            f"shapes, got {logits_t.shape} and {logits_t1.shape}"
        )
    height, width, _ = logits_t.shape
    if next_offset.shape != (height, width, 2):
        raise ValueError(
            f"next_offset_map must be [h, w, 2] = {(height, width, 2)}, got {next_offset.shape}"
        )
    semantic = None
    if with_logits:
        semantic = jnp.concatenate([logits_t, logits_t1.astype(logits_t.dtype)], axis=1)
    heat = jnp.concatenate([heat_t, jnp.zeros_like(heat_t)], axis=1)
    # Canvas column x + W minus W plus dx lands on frame t's column x + dx.
    shifted = next_offset.astype(offset_t.dtype) - jnp.asarray([0.0, width], offset_t.dtype)
    offsets = jnp.concatenate([offset_t, shifted], axis=1)
    return semantic, heat, offsets


@functools.partial(
    jax.jit,
    static_argnames=(
        "thing_ids",
        "label_divisor",
        "ignore_label",
        "center_threshold",
        "nms_kernel",
        "keep_k_centers",
        "stuff_area_limit",
    ),
)
def _two_frame_jit(pred_t, pred_t1, next_offset_map, **options):
    logits_t = pred_t[keys.PRED_SEMANTIC_LOGITS]
    width = logits_t.shape[1]
    # Same canvas as `build_canvas`, but the argmax is taken per frame before concatenating:
    # an int32 [h, 2w] map instead of a float [h, 2w, classes] copy of the logits.
    _, heat, offsets = build_canvas(pred_t, pred_t1, next_offset_map, with_logits=False)
    semantic = jnp.concatenate(
        [jnp.argmax(logits_t, axis=-1), jnp.argmax(pred_t1[keys.PRED_SEMANTIC_LOGITS], axis=-1)],
        axis=1,
    )
    canvas = panoptic_lib.panoptic_from_semantic(
        semantic, heat, offsets, num_classes=logits_t.shape[-1], **options
    )
    return canvas[:, :width], canvas[:, width:]


def two_frame_panoptic(
    pred_t: Mapping[str, jax.Array],
    pred_t1: Mapping[str, jax.Array],
    next_offset_map: jax.Array,
    *,
    thing_ids,
    label_divisor: int,
    ignore_label: int,
    center_threshold: float = 0.1,
    nms_kernel: int = 13,
    keep_k_centers: int = 400,
    stuff_area_limit: int = 2048,
) -> tuple[jax.Array, jax.Array]:
    """Two-frame ViP-DeepLab post-processing of one pair (spec §7.2 steps 3-4), jitted.

    Works under `jax.vmap` over a leading batch axis of all inputs. Options are those of
    `panoptic.panoptic_from_predictions`.

    Args:
      pred_t, pred_t1, next_offset_map: see `build_canvas`.

    Returns:
      (panoptic_t, concat_next_t1): int32 [h, w] each; frame t and frame t+1 with shared
      instance ids (the "concat" prediction).
    """
    return _two_frame_jit(
        {
            k: pred_t[k]
            for k in (keys.PRED_SEMANTIC_LOGITS, keys.PRED_CENTER_HEATMAP, keys.PRED_OFFSET_MAP)
        },
        {keys.PRED_SEMANTIC_LOGITS: pred_t1[keys.PRED_SEMANTIC_LOGITS]},
        next_offset_map,
        thing_ids=tuple(int(t) for t in thing_ids),
        label_divisor=int(label_divisor),
        ignore_label=int(ignore_label),
        center_threshold=float(center_threshold),
        nms_kernel=int(nms_kernel),
        keep_k_centers=int(keep_k_centers),
        stuff_area_limit=int(stuff_area_limit),
    )


# Default size of the on-device segment tables of `stitch_pair`: a post-processed map has at
# most keep_k_centers thing segments plus one per stuff class and void (400 + 19 + 1 for the
# Cityscapes configs).
DEFAULT_MAX_SEGMENTS = 1024


@functools.partial(jax.jit, static_argnames=("label_divisor", "max_segments"))
def _stitch_pair_jax(concat_next, next_panoptic, *, label_divisor, max_segments):
    shape = next_panoptic.shape
    a = concat_next.reshape(-1).astype(jnp.int32)
    b = next_panoptic.reshape(-1).astype(jnp.int32)
    s = max_segments
    fill = jnp.iinfo(jnp.int32).max

    def table(x):
        labels = jnp.unique(x, size=s, fill_value=fill)  # sorted, padded with `fill`
        slot = jnp.clip(jnp.searchsorted(labels, x), 0, s - 1)
        found = labels[slot] == x
        return labels, jnp.where(found, slot, s), found  # slot s = "not in the table"

    labels_a, slot_a, _ = table(a)
    labels_b, slot_b, found_b = table(b)
    ones = jnp.ones_like(a)
    area_a = jax.ops.segment_sum(ones, slot_a, num_segments=s + 1)[:s]
    area_b = jax.ops.segment_sum(ones, slot_b, num_segments=s + 1)[:s]
    inter = jax.ops.segment_sum(ones, slot_a * (s + 1) + slot_b, num_segments=(s + 1) ** 2)
    inter = inter.reshape(s + 1, s + 1)[:s, :s]

    def is_instance(labels):
        return (labels != fill) & (labels % label_divisor > 0)

    candidate = (
        (inter > 0)
        & (labels_a[:, None] // label_divisor == labels_b[None, :] // label_divisor)
        & is_instance(labels_a)[:, None]
        & is_instance(labels_b)[None, :]
    )
    union = area_a[:, None] + area_b[None, :] - inter
    iou = jnp.where(candidate, inter.astype(jnp.float32) / jnp.maximum(union, 1), -1.0)
    # The reference visits pairs by ascending IoU in label order and keeps the last partner:
    # on equal IoU the larger label (slot) wins. Plain max reductions (cheaper than argmax).
    index = jnp.arange(s)
    best_b = jnp.max(jnp.where(iou == jnp.max(iou, axis=1, keepdims=True), index[None, :], -1), 1)
    best_a = jnp.max(jnp.where(iou == jnp.max(iou, axis=0, keepdims=True), index[:, None], -1), 0)
    has_a = jnp.any(candidate, axis=1)
    has_b = jnp.any(candidate, axis=0)
    mutual = has_b & has_a[best_a] & (best_b[best_a] == index)
    offset = label_divisor // 2
    unmatched = jnp.where(labels_b % label_divisor > 0, labels_b + offset, labels_b)
    new_labels = jnp.where(mutual, labels_a[best_a], unmatched)
    raw = jnp.where(b % label_divisor > 0, b + offset, b)
    out = jnp.where(found_b, new_labels[jnp.minimum(slot_b, s - 1)], raw)
    return out.reshape(shape).astype(jnp.int32)


def stitch_pair(
    concat_next: jax.Array | np.ndarray,
    next_panoptic: jax.Array | np.ndarray,
    *,
    label_divisor: int,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
) -> jax.Array | np.ndarray:
    """Propagates frame t ids onto frame t+1's standalone prediction (spec §7.2 step 6).

    Matching: pairs of segments with the same class, both instance ids non-zero and a
    non-empty intersection; mutual best IoU, no threshold (ties go to the larger label, as in
    deeplab2's ascending sort). Matched segments of `next_panoptic` take their concat label;
    unmatched instances become `instance + D // 2` (new instances); stuff, crowd and void are
    unchanged.

    With numpy inputs this runs `reference.stitch_pair` on host (and checks that ids + D // 2
    stay below D). With JAX arrays (or inside `jit`/`vmap`) it runs a static-shape version:
    each map's distinct labels go to a table of `max_segments` slots and IoUs are computed in
    float32. Segments beyond the table are treated as unmatched, and the overflow check is the
    caller's job (it holds when `keep_k_centers < D // 2`). Distinct IoUs closer than float32
    resolution may break ties differently from the float64 reference.

    Args:
      concat_next: int [h, w], frame t+1 from the two-frame canvas (ids shared with frame t).
      next_panoptic: int [h, w], frame t+1 post-processed on its own.
      label_divisor: D.
      max_segments: distinct labels per map handled on device (static).

    Returns:
      int32 [h, w] stitched frame t+1 (numpy for numpy inputs, else a JAX array).
    """
    if not isinstance(concat_next, jax.Array) and not isinstance(next_panoptic, jax.Array):
        return reference.stitch_pair(concat_next, next_panoptic, label_divisor=label_divisor)
    if jnp.shape(concat_next) != jnp.shape(next_panoptic) or jnp.ndim(next_panoptic) != 2:
        raise ValueError(
            f"concat_next {jnp.shape(concat_next)} and next_panoptic {jnp.shape(next_panoptic)} "
            "must both be [height, width]"
        )
    return _stitch_pair_jax(
        jnp.asarray(concat_next),
        jnp.asarray(next_panoptic),
        label_divisor=int(label_divisor),
        max_segments=int(max_segments),
    )
