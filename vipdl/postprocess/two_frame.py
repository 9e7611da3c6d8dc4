"""ViP-DeepLab two-frame inference (docs/postprocessing.md#two-frame-inference): the H x 2W canvas and the pairwise stitcher.

For a pair (t, t+1) the model gives frame t's semantic logits, center heatmap and offsets,
frame t+1's own outputs, and next-frame offsets predicted on frame t+1's pixels that point to
frame t's centers. `two_frame_panoptic` lays both frames side by side (t left, t+1 right),
keeps centers from frame t only, shifts the next-frame x-offsets by -W so right-half pixels
point into the left half, runs the single-frame post-processing on the canvas and splits it:
the left half is frame t, the right half is frame t+1 with instance ids shared with frame t.
Majority vote and the stuff area test therefore run over both frames jointly (docs/postprocessing.md#two-frame-inference).

`stitch_pair` then transfers those shared ids onto frame t+1's standalone panoptic map by
mutual-best IoU (no threshold, same class, instance 0 excluded); unmatched segments keep their
id + D // 2 and are new instances. It runs on the host in numpy (deeplab2's
`stitch_video_panoptic_prediction`) on the table of label pairs, so its cost is a few passes over
the pixels whatever the number of segments; a static-shape on-device version was measured 6.7x
slower on CPU and removed (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vipdl import keys
from vipdl.postprocess import labels
from vipdl.postprocess import panoptic as panoptic_lib


def build_canvas(
    pred_t: Mapping[str, jax.Array],
    pred_t1: Mapping[str, jax.Array],
    next_offset_map: jax.Array,
    *,
    with_logits: bool = True,
) -> tuple[jax.Array | None, jax.Array, jax.Array]:
    """The H x 2W inputs of the two-frame post-processing (docs/postprocessing.md#two-frame-inference step 3).

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
        "options",
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
    options: panoptic_lib.PostprocessOptions = panoptic_lib.DEFAULT_OPTIONS,
) -> tuple[jax.Array, jax.Array]:
    """Two-frame ViP-DeepLab post-processing of one pair (docs/postprocessing.md#two-frame-inference steps 3-4), jitted.

    Works under `jax.vmap` over a leading batch axis of all inputs. Label convention and
    options are those of `panoptic.panoptic_from_predictions`.

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
        options=options,
    )


def _best_partner(key: np.ndarray, other: np.ndarray, iou: np.ndarray, size: int) -> np.ndarray:
    """Per key, the partner with the highest IoU, ties to the larger partner index; -1 if none."""
    best = np.full(size, -1, np.int64)
    if key.size == 0:
        return best
    order = np.lexsort((other, iou, key))
    key, other = key[order], other[order]
    last = np.flatnonzero(np.append(key[1:] != key[:-1], True))
    best[key[last]] = other[last]
    return best


def match_tables(
    concat_values: np.ndarray,
    concat_index: np.ndarray,
    concat_areas: np.ndarray,
    next_values: np.ndarray,
    next_index: np.ndarray,
    next_areas: np.ndarray,
    *,
    label_divisor: int,
) -> np.ndarray:
    """`pair_matches` on dense tables (see `vipdl.postprocess.labels.dense`).

    Returns:
      int64 [len(next_values)]: the matched concat index of each next segment, or -1.
    """
    kc, kn = len(concat_values), len(next_values)
    a, b, inter = labels.pair_counts(concat_index, kc, next_index, kn)
    ca, cb = concat_values[a], next_values[b]
    keep = (
        (ca // label_divisor == cb // label_divisor)
        & (ca % label_divisor != 0)
        & (cb % label_divisor != 0)
    )
    a, b, inter = a[keep], b[keep], inter[keep]
    # The same float64 division the pairwise definition uses, so IoU ties are exact ties.
    iou = inter / (concat_areas[a] + next_areas[b] - inter)
    best_next = _best_partner(a, b, iou, kc)
    best_concat = _best_partner(b, a, iou, kn)
    matched = np.full(kn, -1, np.int64)
    has = best_concat >= 0
    mutual = has.copy()
    mutual[has] = best_next[best_concat[has]] == np.flatnonzero(has)
    matched[mutual] = best_concat[mutual]
    return matched


def pair_matches(
    concat_next: np.ndarray, next_panoptic: np.ndarray, *, label_divisor: int
) -> dict[int, int]:
    """Mutual-best-IoU matches of the pair stitcher: {next label: concat label}.

    Candidates are pairs of segments with the same class, both instance ids non-zero and a
    non-empty intersection; there is no IoU threshold. Pairs are visited by ascending IoU
    (ties in ascending (concat, next) label order) and each side remembers its last partner,
    i.e. its best one; a pair is kept when the choice is mutual. Computed on the table of
    label pairs (one bincount), not per segment.
    """
    concat_next, next_panoptic = np.asarray(concat_next), np.asarray(next_panoptic)
    if concat_next.shape != next_panoptic.shape:
        raise ValueError(
            f"concat_next {concat_next.shape} and next_panoptic {next_panoptic.shape} differ in shape"
        )
    cv, ci, ca = labels.dense(concat_next, what="concat_next")
    nv, ni, na = labels.dense(next_panoptic, what="next_panoptic")
    matched = match_tables(cv, ci, ca, nv, ni, na, label_divisor=label_divisor)
    ok = matched >= 0
    return dict(zip(nv[ok].tolist(), cv[matched[ok]].tolist()))


def stitch_table(
    next_values: np.ndarray, concat_values: np.ndarray, matched: np.ndarray, *, label_divisor: int
) -> np.ndarray:
    """The stitched label of each next segment (see `stitch_pair`), int64 [len(next_values)]."""
    offset = label_divisor // 2
    instance = next_values % label_divisor
    if instance.size and instance.max() + offset >= label_divisor:
        raise ValueError(
            f"next_panoptic has instance id {instance.max()}; with the new-instance offset "
            f"{offset} it would reach label_divisor={label_divisor}"
        )
    out = np.where(instance > 0, next_values + offset, next_values)
    ok = matched >= 0
    out[ok] = concat_values[matched[ok]]
    return out


def stitch_pair(
    concat_next: np.ndarray, next_panoptic: np.ndarray, *, label_divisor: int
) -> np.ndarray:
    """Propagates frame t ids onto frame t+1's standalone prediction (pair stitching).

    Args:
      concat_next: int [h, w], frame t+1 from the two-frame canvas (ids shared with frame t).
      next_panoptic: int [h, w], frame t+1 post-processed on its own.
      label_divisor: D.

    Returns:
      int32 [h, w]: `next_panoptic` where matched segments take their concat label and
      unmatched instances get `instance + D // 2` (new instances); stuff, crowd and void are
      unchanged.

    Raises:
      ValueError: if an instance id + D // 2 would reach D, or the shapes differ.
    """
    concat_next, next_panoptic = np.asarray(concat_next), np.asarray(next_panoptic)
    if concat_next.shape != next_panoptic.shape:
        raise ValueError(
            f"concat_next {concat_next.shape} and next_panoptic {next_panoptic.shape} differ in shape"
        )
    cv, ci, ca = labels.dense(concat_next, what="concat_next")
    nv, ni, na = labels.dense(next_panoptic, what="next_panoptic")
    matched = match_tables(cv, ci, ca, nv, ni, na, label_divisor=label_divisor)
    table = stitch_table(nv, cv, matched, label_divisor=label_divisor)
    return table.astype(np.int32)[ni]
