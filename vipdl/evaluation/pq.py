"""Panoptic quality from segment-pair statistics (numpy).

The expensive part of PQ / VPQ is a single pass over the pixels: a sparse histogram of
(ground-truth segment id, predicted segment id) pairs (`pair_counts`). Everything else -
segment areas, IoUs, matches, TP / FP / FN - follows from that histogram, and a tube over n
frames is the sum of the n per-frame histograms (`merge_pair_counts`). So each frame is decoded
once and every window size reuses the per-frame statistics.

Matching (`match_pairs`) follows COCO panopticapi as used by mcahny/vps `tools/eval_vpq.py` and
ViP-DeepLab `eval_dvpq.py`:

* a (gt, pred) pair of the same category matches if IoU > 0.5, with the prediction's overlap
  with the void ground-truth id removed from the union;
* unmatched non-crowd, non-void ground-truth segments are false negatives;
* an unmatched prediction is a false positive unless more than half of it lies on void /
  ignored ground truth or on a crowd segment of its own category.

All decisions compare integers (2 * intersection > union), so float rounding can never change
TP / FP / FN; IoUs are summed in float64.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

# Ground-truth segment kinds (the `flag` of a `SegmentTable`).
NORMAL = 0  # matched, counted as FN when unmatched.
CROWD = 1  # never matched nor FN; predictions of its category lying on it are not FP.
VOID = 2  # removed from the union of every pair; predictions lying on it are not FP.
IGNORED = 3  # like VOID for the FP rule but not removed from the union (eval_dvpq.py quirk).

# The predicted id that means "no prediction" (void / depth-rejected pixels).
NO_PREDICTION = 0


@dataclasses.dataclass(frozen=True)
class PairCounts:
    """Sparse histogram of (gt id, pred id) pixel pairs, sorted by (gt, pred), no zero counts.

    Attributes:
      gt: int64 [n] ground-truth segment ids.
      pred: int64 [n] predicted segment ids (`NO_PREDICTION` = none).
      count: int64 [n] number of pixels carrying both ids.
    """

    gt: np.ndarray
    pred: np.ndarray
    count: np.ndarray

    @staticmethod
    def empty() -> PairCounts:
        z = np.zeros(0, np.int64)
        return PairCounts(z, z, z)


@dataclasses.dataclass(frozen=True)
class SegmentTable:
    """Category (and kind) of each segment id, sorted by id.

    Attributes:
      ids: int64 [m] sorted unique segment ids.
      category: int64 [m] class id of each segment (-1 for void / no-prediction ids).
      flag: int64 [m] one of NORMAL, CROWD, VOID, IGNORED (ground truth only).
    """

    ids: np.ndarray
    category: np.ndarray
    flag: np.ndarray

    @staticmethod
    def from_mapping(category: Mapping[int, int], flag: Mapping[int, int] | None = None):
        ids = np.array(sorted(category), dtype=np.int64)
        cat = np.array([category[int(i)] for i in ids], dtype=np.int64)
        flags = np.array([(flag or {}).get(int(i), NORMAL) for i in ids], dtype=np.int64)
        return SegmentTable(ids, cat, flags)

    def lookup(self, ids: np.ndarray, what: str) -> np.ndarray:
        """Row index of each id; raises ValueError naming `what` for unknown ids."""
        pos = np.searchsorted(self.ids, ids)
        pos = np.minimum(pos, max(len(self.ids) - 1, 0))
        bad = (self.ids[pos] != ids) if len(self.ids) else np.ones(len(ids), bool)
        if bad.any():
            raise ValueError(f"{what}: segment ids {sorted(set(ids[bad].tolist()))} are unknown")
        return pos


@dataclasses.dataclass
class PQStats:
    """Per-class sums of IoU (float64 [C]) and TP / FP / FN (int64 [C])."""

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @staticmethod
    def zeros(num_classes: int) -> PQStats:
        z = np.zeros(num_classes, np.int64)
        return PQStats(np.zeros(num_classes, np.float64), z.copy(), z.copy(), z.copy())

    def __iadd__(self, other: PQStats) -> PQStats:
        self.iou = self.iou + other.iou
        self.tp = self.tp + other.tp
        self.fp = self.fp + other.fp
        self.fn = self.fn + other.fn
        return self


# --- Pixel pass ---------------------------------------------------------------------------

_LUT = np.zeros(0, np.int32)  # Per-process scratch lookup table, all -1 between calls.


def _scratch_lut(size: int) -> np.ndarray:
    global _LUT
    if _LUT.size < size:
        # Grow geometrically, but never beyond the 2^24 ids an RGB PNG can hold (64 MB).
        _LUT = np.full(max(size, min(2 * _LUT.size, 1 << 24)), -1, np.int32)
    return _LUT


def dense_ids(ids: np.ndarray, known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Maps ids to dense indices with one gather through a lookup table (no sort of the pixels).

    Args:
      ids: non-negative int [n]; with `known`, values >= 2^24 are reported as unknown.
      known: optional sorted int64 [m] of allowed ids; the result then indexes `known`.

    Returns:
      (values int64 [m'] sorted, index int32 [n] with values[index] == ids).

    Raises:
      UnknownIdsError: if `known` is given and some ids are not in it.
    """
    ids = ids.ravel()
    if ids.size == 0:
        vals = known if known is not None else np.zeros(0, np.int64)
        return vals, np.zeros(0, np.int32)
    top = int(ids.max())
    if known is None:
        if top >= 1 << 22:  # A presence table would be large; sort instead.
            vals, inv = np.unique(ids, return_inverse=True)
            return vals.astype(np.int64), inv.astype(np.int32)
        vals = np.flatnonzero(np.bincount(ids, minlength=top + 1)).astype(np.int64)
    else:
        vals = known
        if top >= 1 << 24:
            raise UnknownIdsError(np.unique(ids[ids >= 1 << 24]))
    size = top + 1 if not len(vals) else max(top, int(vals[-1])) + 1
    lut = _scratch_lut(size)
    lut[vals] = np.arange(len(vals), dtype=np.int32)
    try:
        index = lut[ids]
    finally:
        lut[vals] = -1
    if known is not None:
        unknown = index < 0
        if unknown.any():
            raise UnknownIdsError(np.unique(ids[unknown]))
    return vals, index


class UnknownIdsError(ValueError):
    """Pixel ids that are not in the allowed set (e.g. a PNG segment missing from the JSON)."""

    def __init__(self, ids: np.ndarray):
        self.ids = [int(i) for i in ids]
        super().__init__(f"unknown segment ids {self.ids}")

    def __reduce__(self):  # Picklable across worker processes.
        return (UnknownIdsError, (np.asarray(self.ids, np.int64),))


def pair_counts(
    gt_ids: np.ndarray,
    pred_ids: np.ndarray,
    *,
    gt_known: np.ndarray | None = None,
    pred_known: np.ndarray | None = None,
) -> PairCounts:
    """Sparse histogram of (gt, pred) id pairs of one frame.

    Args:
      gt_ids, pred_ids: non-negative int arrays of the same shape, e.g. [height, width].
      gt_known, pred_known: optional sorted allowed ids (see `dense_ids`).

    Returns:
      PairCounts sorted by (gt, pred).
    """
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"shape mismatch: gt {gt_ids.shape} vs prediction {pred_ids.shape}")
    gvals, gi = dense_ids(gt_ids, gt_known)
    pvals, pi = dense_ids(pred_ids, pred_known)
    return dense_pair_counts(gvals, gi, pvals, pi)


def dense_pair_counts(
    gvals: np.ndarray, gi: np.ndarray, pvals: np.ndarray, pi: np.ndarray
) -> PairCounts:
    """`pair_counts` from dense indices (`dense_ids` outputs) of the gt and pred ids."""
    npred = max(len(pvals), 1)
    combined = gi.astype(np.int64) * npred + pi
    if len(gvals) * npred <= 1 << 24:
        hist = np.bincount(combined, minlength=len(gvals) * npred)
        nz = np.flatnonzero(hist)
        count = hist[nz]
    else:
        nz, count = np.unique(combined, return_counts=True)
    return PairCounts(gvals[nz // npred], pvals[nz % npred], count.astype(np.int64))


def merge_pair_counts(parts: Sequence[PairCounts]) -> PairCounts:
    """Sum of several pair histograms (e.g. the frames of a tube)."""
    if len(parts) == 1:
        return parts[0]
    gt = np.concatenate([p.gt for p in parts])
    pred = np.concatenate([p.pred for p in parts])
    count = np.concatenate([p.count for p in parts])
    if gt.size == 0:
        return PairCounts.empty()
    if gt.max() < 1 << 31 and pred.max() < 1 << 31:
        keys, inv = np.unique((gt << 32) | pred, return_inverse=True)
        total = np.zeros(len(keys), np.int64)
        np.add.at(total, inv.ravel(), count)
        return PairCounts(keys >> 32, keys & 0xFFFFFFFF, total)
    # Wide ids (e.g. tracked predictions `class << 32 | track`): pack dense indices instead.
    gvals, gi = np.unique(gt, return_inverse=True)
    pvals, pi = np.unique(pred, return_inverse=True)
    keys, inv = np.unique(gi.ravel() * len(pvals) + pi.ravel(), return_inverse=True)
    total = np.zeros(len(keys), np.int64)
    np.add.at(total, inv.ravel(), count)
    return PairCounts(gvals[keys // len(pvals)], pvals[keys % len(pvals)], total)


# --- Matching -----------------------------------------------------------------------------


def sums_by_id(ids: np.ndarray, count: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each id of `query`, the sum of `count` over the rows whose id equals it."""
    values, inverse = np.unique(ids, return_inverse=True)
    sums = np.bincount(inverse.ravel(), weights=count, minlength=len(values)).astype(np.int64)
    pos = np.minimum(np.searchsorted(values, query), max(len(values) - 1, 0))
    found = values[pos] == query if len(values) else np.zeros(len(query), bool)
    return np.where(found, sums[pos] if len(values) else 0, 0)


def boundary_overlaps(
    gt: np.ndarray, pred: np.ndarray, boundary: PairCounts
) -> tuple[np.ndarray, np.ndarray]:
    """Band intersection and union (int64 [n] each) of (gt id, pred id) pairs.

    Args:
      gt, pred: int64 [n] segment ids.
      boundary: pair histogram of the band maps (`evaluation.boundary.boundary_pair_counts`),
        where id 0 means "in no band".
    """
    gt, pred = np.asarray(gt, np.int64), np.asarray(pred, np.int64)
    keys = (boundary.gt << 32) | boundary.pred  # Sorted: histograms are sorted by (gt, pred).
    query = (gt << 32) | pred
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    hit = keys[pos] == query if len(keys) else np.zeros(len(query), bool)
    inter = np.where(hit, boundary.count[pos] if len(keys) else 0, 0)
    gt_band = sums_by_id(boundary.gt, boundary.count, gt)
    pred_band = sums_by_id(boundary.pred, boundary.count, pred)
    return inter, gt_band + pred_band - inter


def match_pairs(
    pairs: PairCounts,
    gt_table: SegmentTable,
    pred_table: SegmentTable,
    num_classes: int,
    boundary: PairCounts | None = None,
) -> PQStats:
    """TP / FP / FN / IoU per class of one (possibly multi-frame) panoptic image.

    Args:
      pairs: the pair histogram; every gt id must be in `gt_table`, every pred id other than
        `NO_PREDICTION` in `pred_table`.
      gt_table: category and flag of the ground-truth ids.
      pred_table: category of the predicted ids.
      num_classes: length of the returned per-class arrays; categories must be below it.
      boundary: optional band-map histogram of the same frames; a pair's IoU is then
        min(mask IoU, boundary IoU), for matching and for the IoU sums (Boundary PQ, see
        `vipdl.evaluation.boundary`).

    Returns:
      PQStats for this image.
    """
    stats = PQStats.zeros(num_classes)
    if pairs.count.size == 0:
        return stats
    ug, gi = np.unique(pairs.gt, return_inverse=True)
    up, pi = np.unique(pairs.pred, return_inverse=True)
    gi, pi, c = gi.ravel(), pi.ravel(), pairs.count
    g_rows = gt_table.lookup(ug, "ground truth")
    gcat, gflag = gt_table.category[g_rows], gt_table.flag[g_rows]
    is_pred = up != NO_PREDICTION
    pcat = np.full(len(up), -1, np.int64)
    if is_pred.any():
        pcat[is_pred] = pred_table.category[pred_table.lookup(up[is_pred], "prediction")]

    g_area = np.bincount(gi, weights=c, minlength=len(ug)).astype(np.int64)
    p_area = np.bincount(pi, weights=c, minlength=len(up)).astype(np.int64)
    pair_flag = gflag[gi]
    p_void = np.bincount(pi, weights=c * (pair_flag == VOID), minlength=len(up)).astype(np.int64)
    on_crowd = (pair_flag == CROWD) & (gcat[gi] == pcat[pi])
    ignorable = (pair_flag == VOID) | (pair_flag == IGNORED) | on_crowd
    p_ignored = np.bincount(pi, weights=c * ignorable, minlength=len(up)).astype(np.int64)

    candidate = (pair_flag == NORMAL) & is_pred[pi] & (gcat[gi] == pcat[pi])
    union = g_area[gi] + p_area[pi] - c - p_void[pi]
    match = candidate & (2 * c > union)  # IoU > 0.5, decided in integers.
    iou = c / np.maximum(union, 1)
    if boundary is not None:
        b_inter, b_union = boundary_overlaps(ug[gi], up[pi], boundary)
        match &= 2 * b_inter > b_union
        iou = np.minimum(iou, b_inter / np.maximum(b_union, 1))
    m_cat = gcat[gi[match]]
    stats.tp += np.bincount(m_cat, minlength=num_classes)
    stats.iou += np.bincount(m_cat, weights=iou[match], minlength=num_classes)

    g_matched = np.zeros(len(ug), bool)
    g_matched[gi[match]] = True
    p_matched = np.zeros(len(up), bool)
    p_matched[pi[match]] = True
    fn = (gflag == NORMAL) & ~g_matched
    stats.fn += np.bincount(gcat[fn], minlength=num_classes)
    fp = is_pred & ~p_matched & ~(2 * p_ignored > p_area)
    stats.fp += np.bincount(pcat[fp], minlength=num_classes)
    return stats


# --- Summaries ----------------------------------------------------------------------------


def class_scores(stats: PQStats) -> dict[str, np.ndarray]:
    """Per-class PQ, SQ, RQ (float64 [C], fractions); 0 where a class has no TP."""
    denom = stats.tp + 0.5 * stats.fp + 0.5 * stats.fn
    safe = np.where(denom > 0, denom, 1.0)
    pq = np.where(denom > 0, stats.iou / safe, 0.0)
    rq = np.where(denom > 0, stats.tp / safe, 0.0)
    sq = np.where(stats.tp > 0, stats.iou / np.maximum(stats.tp, 1), 0.0)
    return {"pq": pq, "sq": sq, "rq": rq}


def average(stats: PQStats, class_ids: Iterable[int]) -> dict[str, float | int | None]:
    """Mean PQ / SQ / RQ over the classes in `class_ids` that occur (TP + FP + FN > 0).

    This is `PQStat.pq_average` of the official scripts, except that a group without any
    occurring class gives None instead of raising ZeroDivisionError.

    Returns:
      {"pq", "sq", "rq": fraction or None, "n": number of classes averaged}.
    """
    ids = np.asarray(sorted(set(int(c) for c in class_ids)), np.int64)
    scores = class_scores(stats)
    present = ids[(stats.tp + stats.fp + stats.fn)[ids] > 0] if ids.size else ids
    if present.size == 0:
        return {"pq": None, "sq": None, "rq": None, "n": 0}
    return {k: float(np.mean(scores[k][present])) for k in ("pq", "sq", "rq")} | {
        "n": int(present.size)
    }


def per_class_table(stats: PQStats, class_ids: Iterable[int]) -> dict[str, dict]:
    """{class id (str): {tp, fp, fn, iou, pq, sq, rq}} for JSON output.

    `iou` is the raw sum of matched IoUs (as in the official per-class tables); pq / sq / rq are
    percentages.
    """
    scores = class_scores(stats)
    return {
        str(c): {
            "tp": int(stats.tp[c]),
            "fp": int(stats.fp[c]),
            "fn": int(stats.fn[c]),
            "iou": float(stats.iou[c]),
            "pq": 100.0 * float(scores["pq"][c]),
            "sq": 100.0 * float(scores["sq"][c]),
            "rq": 100.0 * float(scores["rq"][c]),
        }
        for c in sorted(set(int(c) for c in class_ids))
    }


# --- Reference ----------------------------------------------------------------------------


def reference_match(
    gt_ids: np.ndarray,
    pred_ids: np.ndarray,
    gt_segments: Mapping[int, tuple[int, int]],
    pred_segments: Mapping[int, int],
    num_classes: int,
) -> PQStats:
    """Slow, literal reference of `pair_counts` + `match_pairs` (dict loops, like panopticapi).

    Args:
      gt_ids, pred_ids: int arrays of equal shape (frames of a tube concatenated).
      gt_segments: gt id -> (category, flag); every gt pixel id must be listed.
      pred_segments: pred id -> category; `NO_PREDICTION` must not be listed.
      num_classes: number of classes.
    """
    stats = PQStats.zeros(num_classes)
    gt_area: dict[int, int] = {}
    pred_area: dict[int, int] = {}
    inter: dict[tuple[int, int], int] = {}
    for g, p in zip(gt_ids.ravel().tolist(), pred_ids.ravel().tolist()):
        gt_area[g] = gt_area.get(g, 0) + 1
        pred_area[p] = pred_area.get(p, 0) + 1
        inter[(g, p)] = inter.get((g, p), 0) + 1
    void_overlap: dict[int, int] = {}
    ignored_overlap: dict[int, int] = {}
    for (g, p), n in inter.items():
        cat, flag = gt_segments[g]
        if flag == VOID:
            void_overlap[p] = void_overlap.get(p, 0) + n
        if flag in (VOID, IGNORED) or (
            flag == CROWD and p != NO_PREDICTION and pred_segments[p] == cat
        ):
            ignored_overlap[p] = ignored_overlap.get(p, 0) + n
    gt_matched, pred_matched = set(), set()
    for (g, p), n in sorted(inter.items()):
        cat, flag = gt_segments[g]
        if flag != NORMAL or p == NO_PREDICTION or pred_segments[p] != cat:
            continue
        union = gt_area[g] + pred_area[p] - n - void_overlap.get(p, 0)
        iou = n / union
        if iou > 0.5:
            stats.tp[cat] += 1
            stats.iou[cat] += iou
            gt_matched.add(g)
            pred_matched.add(p)
    for g in gt_area:
        cat, flag = gt_segments[g]
        if flag == NORMAL and g not in gt_matched:
            stats.fn[cat] += 1
    for p, area in pred_area.items():
        if p == NO_PREDICTION or p in pred_matched:
            continue
        if ignored_overlap.get(p, 0) / area > 0.5:
            continue
        stats.fp[pred_segments[p]] += 1
    return stats
