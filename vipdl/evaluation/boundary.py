"""Boundary IoU, Boundary PQ and Boundary VPQ (Cheng et al., CVPR 2021), in numpy.

Mask IoU hardly notices border errors of large segments: a mask whose outline is off by a few
pixels all around still has an IoU close to 1. Boundary IoU (docs/evaluation.md#boundary-iou)
scores only the band of each mask near its contour: with `G_d` the pixels of the ground-truth
mask G that lie within distance d of a pixel outside G (outside the image counts as outside G)
and `P_d` likewise,

    Boundary IoU(G, P) = |G_d ∩ P_d| / |G_d ∪ P_d|,

d = 2 % of the image diagonal (rounded, at least 1 pixel), distance measured in the chessboard
metric (d erosions with a 3 x 3 square), as the authors' reference implementation does.

Boundary PQ replaces the IoU of each (ground truth, prediction) pair by min(mask IoU, boundary
IoU), both to decide a match (> 0.5) and in the sum of matched IoUs; Boundary VPQ does the same
on the spatio-temporal tubes of VPQ (bands of every frame of the window pooled). Predicted band
pixels that lie on void ground truth are dropped, as void pixels are dropped from the mask union.

`vipdl.evaluation.vpq.evaluate_arrays(..., boundary_dilation=0.02)` and
`vpq.panoptic_quality(..., boundary_dilation=0.02)` score Boundary VPQ / PQ of label maps.
Everything reuses the pair histograms of `vipdl.evaluation.pq`: as segments do not overlap, the
bands of all segments of a label map form one "band label map" (segment id inside its band, 0
elsewhere), and a pair's band intersection is a cell of the histogram of the two band maps.
"""

from __future__ import annotations

import math

import numpy as np

from vipdl.evaluation import pq

DEFAULT_DILATION_RATIO = 0.02


def dilation_pixels(height: int, width: int, dilation_ratio: float = DEFAULT_DILATION_RATIO) -> int:
    """Band width d: `round(dilation_ratio * image diagonal)`, at least 1 pixel."""
    if dilation_ratio <= 0:
        raise ValueError(f"dilation_ratio must be > 0, got {dilation_ratio}")
    return max(int(round(dilation_ratio * math.hypot(height, width))), 1)


def _window_reduce(x: np.ndarray, size: int, axis: int, op) -> np.ndarray:
    """`op` over windows of `size` along `axis`: output i reduces x[i : i + size].

    Doubling (sparse table): windows of 2^j come from two of 2^(j-1); the final window is two
    overlapping power-of-two windows. O(n log size) and exact for min / max.
    """
    out_len = x.shape[axis] - size + 1
    span, table = 1, x
    while 2 * span <= size:
        n = table.shape[axis] - span
        table = op(np.take(table, np.arange(n), axis), np.take(table, np.arange(span, span + n), axis))
        span *= 2
    first = np.take(table, np.arange(out_len), axis)
    second = np.take(table, np.arange(size - span, size - span + out_len), axis)
    return op(first, second)


def inner_band(labels: np.ndarray, d: int) -> np.ndarray:
    """bool [h, w]: pixels within chessboard distance `d` of a pixel with another label.

    Pixels outside the image count as another label, so segments touching the image border have
    their band along it, as in the reference implementation (which pads masks with background).

    Args:
      labels: int [height, width] label map (e.g. segment ids), values >= 0.
      d: band width in pixels (>= 1).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [height, width], got shape {labels.shape}")
    if d < 1:
        raise ValueError(f"band width d must be >= 1, got {d}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative")
    x = labels.astype(np.int64)
    size = 2 * d + 1
    lo = np.pad(x, d, constant_values=-1)  # The outside differs from every label.
    lo = _window_reduce(_window_reduce(lo, size, 0, np.minimum), size, 1, np.minimum)
    hi = np.pad(x, d, constant_values=-1)
    hi = _window_reduce(_window_reduce(hi, size, 0, np.maximum), size, 1, np.maximum)
    return lo != hi


def mask_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """bool [h, w]: `G_d ∩ G`, the pixels of `mask` within distance `d` of its outside."""
    mask = np.asarray(mask, bool)
    return mask & inner_band(mask.astype(np.int64), d)


def boundary_iou(
    gt_mask: np.ndarray, pred_mask: np.ndarray, dilation_ratio: float = DEFAULT_DILATION_RATIO
) -> float:
    """Boundary IoU of two binary masks of one image (1.0 when both are empty).

    Args:
      gt_mask, pred_mask: bool [height, width].
      dilation_ratio: band width as a fraction of the image diagonal.
    """
    gt_mask, pred_mask = np.asarray(gt_mask, bool), np.asarray(pred_mask, bool)
    if gt_mask.shape != pred_mask.shape or gt_mask.ndim != 2:
        raise ValueError(
            f"masks must be [height, width] of one shape, got {gt_mask.shape} and {pred_mask.shape}"
        )
    d = dilation_pixels(*gt_mask.shape, dilation_ratio)
    g, p = mask_boundary(gt_mask, d), mask_boundary(pred_mask, d)
    union = int((g | p).sum())
    return 1.0 if union == 0 else int((g & p).sum()) / union


def band_keys(keys: np.ndarray, d: int) -> np.ndarray:
    """Segment keys kept in each segment's band, 0 elsewhere (int64 [h, w])."""
    keys = np.asarray(keys, np.int64)
    return np.where(inner_band(keys, d), keys, 0)


def boundary_pair_counts(
    gt_keys: np.ndarray, pred_keys: np.ndarray, dilation_ratio: float = DEFAULT_DILATION_RATIO
) -> pq.PairCounts:
    """Pair histogram of the band maps of one frame (`pq.pair_counts` of `band_keys`).

    Args:
      gt_keys, pred_keys: int [height, width] segment keys, 0 = void / no prediction (e.g.
        `vpq.panoptic_to_keys`).
      dilation_ratio: band width as a fraction of the image diagonal.

    Returns:
      PairCounts whose gt / pred id 0 means "not in a band"; predicted band pixels on void
      ground truth are dropped.
    """
    gt_keys, pred_keys = np.asarray(gt_keys), np.asarray(pred_keys)
    if gt_keys.shape != pred_keys.shape or gt_keys.ndim != 2:
        raise ValueError(
            f"gt and prediction must be [height, width] of one shape, got {gt_keys.shape} and "
            f"{pred_keys.shape}"
        )
    d = dilation_pixels(*gt_keys.shape, dilation_ratio)
    gb = band_keys(gt_keys, d)
    pb = np.where(gt_keys == 0, 0, band_keys(pred_keys, d))
    return pq.pair_counts(gb, pb)


def matched_boundary_ious(
    pairs: pq.PairCounts,
    boundary: pq.PairCounts,
    gt_table: pq.SegmentTable,
    pred_table: pq.SegmentTable,
) -> np.ndarray:
    """Boundary IoUs (float64 [n]) of the pairs that PQ matches by mask IoU (> 0.5).

    Averaged over a data set this is the "Boundary IoU" of a panoptic model: how closely the
    outlines of the segments it finds follow the ground truth.

    Args:
      pairs: the mask pair histogram of one (possibly multi-frame) image.
      boundary: the band-map histogram of the same frames (`boundary_pair_counts`).
      gt_table, pred_table: as in `pq.match_pairs`.
    """
    if pairs.count.size == 0:
        return np.zeros(0)
    g_rows = gt_table.lookup(pairs.gt, "ground truth")
    gcat, gflag = gt_table.category[g_rows], gt_table.flag[g_rows]
    is_pred = pairs.pred != pq.NO_PREDICTION
    pcat = np.full(pairs.pred.shape, -1, np.int64)
    if is_pred.any():
        pcat[is_pred] = pred_table.category[pred_table.lookup(pairs.pred[is_pred], "prediction")]
    c = pairs.count
    g_area = pq.sums_by_id(pairs.gt, c, pairs.gt)
    p_area = pq.sums_by_id(pairs.pred, c, pairs.pred)
    p_void = pq.sums_by_id(pairs.pred, c * (gflag == pq.VOID), pairs.pred)
    union = g_area + p_area - c - p_void
    match = (gflag == pq.NORMAL) & is_pred & (gcat == pcat) & (2 * c > union)
    inter, b_union = pq.boundary_overlaps(pairs.gt[match], pairs.pred[match], boundary)
    return inter / np.maximum(b_union, 1)
