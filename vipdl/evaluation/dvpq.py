"""Depth-aware VPQ (DVPQ) and AbsRel as ViP-DeepLab `cityscapes-dvps/eval_dvpq.py` defines them.

Ground truth: `class * 1000 + instance` single-channel PNGs, void = class `ignore_label` (32).
Predictions: PNG with channel 0 = class, channel 1 = instance; depth as uint16 PNG (metres *
256). For a depth threshold lambda > 0, predicted pixels with ground-truth depth and relative
error |pred - gt| / gt > lambda lose their prediction (the official script relabels them to
class 19, `num_classes`, which never matches and is not averaged: the same thing); lambda = 0
is plain VPQ. Predicted pixels of class `num_classes`, the ignore label or 255 are "no
prediction" too. Windows are n consecutive frames of a sequence, scored as one image.

Unlike `tools/eval_vpq.py` this script has no crowd rule: a thing segment with instance 0 is an
ordinary segment. Ground-truth segments of the void class are not counted as FN; the union of a
pair excludes the prediction's overlap with the exact void id `ignore_label * 1000`; an
unmatched prediction is not a FP if more than half of it lies on any void-class id.

Each frame is decoded once; the depth error is computed once and reused for every threshold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from vipdl import formats
from vipdl.evaluation import pq
from vipdl.evaluation.readers import DvpsFrame, EvalInputError
from vipdl.evaluation.vpq import VpqResult, check_window_sizes, map_videos, windows_stats

# Prediction classes that mean "no prediction" besides the ignore label and `num_classes`.
_PRED_VOID_CLASSES = (255,)


@dataclasses.dataclass(frozen=True)
class DvpqOptions:
    """Label convention and evaluation settings (defaults: Cityscapes-DVPS, as eval_dvpq.py)."""

    num_classes: int = 19
    thing_ids: tuple[int, ...] = tuple(range(11, 19))
    ignore_label: int = 32
    label_divisor: int = 1000
    depth_thresholds: tuple[float, ...] = (0.5, 0.25, 0.1)
    window_sizes: tuple[int, ...] = (1, 2, 3, 4)
    annotation_stride: int = 5


@dataclasses.dataclass
class DvpqResult:
    """runs: threshold -> VpqResult; abs_rel: mean over sequences (None without depth)."""

    runs: dict[float, VpqResult]
    abs_rel: float | None
    num_sequences: int

    def summary(self) -> dict:
        """JSON-ready results (percentages).

        Returns:
          {"DVPQ", "DVPQ_th", "DVPQ_st": mean over k and thresholds > 0,
           "VPQ", "VPQ_th", "VPQ_st": the threshold-0 run's mean over k (if run),
           "abs_rel", "per_threshold": {lambda: {DVPQ, DVPQ_th, DVPQ_st} (mean over k)},
           "runs": {lambda: {k: {DVPQ, DVPQ_th, DVPQ_st, SQ, RQ, ..., per_class}}}}.
        """
        out: dict = {}
        runs, means = {}, {}
        for thr, result in sorted(self.runs.items(), reverse=True):
            s = result.summary("DVPQ")
            runs[_thr_key(thr)] = s["per_k"]
            means[_thr_key(thr)] = {k: s[k] for k in ("DVPQ", "DVPQ_th", "DVPQ_st")}
        for key in ("DVPQ", "DVPQ_th", "DVPQ_st"):
            values = [
                r[key] for thr, per_k in runs.items() if float(thr) > 0 for r in per_k.values()
            ]
            out[key] = None if not values or None in values else float(np.mean(values))
        if 0.0 in self.runs:
            plain = means[_thr_key(0.0)]
            out.update(
                {"VPQ": plain["DVPQ"], "VPQ_th": plain["DVPQ_th"], "VPQ_st": plain["DVPQ_st"]}
            )
        out["abs_rel"] = self.abs_rel
        out["per_threshold"] = means
        out["runs"] = runs
        return out


def _thr_key(thr: float) -> str:
    return f"{thr:g}"


def _frame_stats(
    frame: DvpsFrame, opts: DvpqOptions, thresholds: Sequence[float]
) -> tuple[dict[float, pq.PairCounts], np.ndarray, float, int]:
    """Decodes one frame; returns pair histograms per threshold, GT ids, AbsRel sum and count."""
    gt = formats.read_grey_png(
        frame.gt_panoptic, f"a single-channel class * {opts.label_divisor} + instance PNG"
    )
    cls, inst = formats.read_dvps_prediction_png(frame.pred_panoptic)
    if cls.shape != gt.shape:
        raise EvalInputError(
            f"{frame.pred_panoptic}: prediction size {cls.shape} differs from ground truth "
            f"{gt.shape} ({frame.gt_panoptic.name})"
        )
    gvals, gi = pq.dense_ids(gt.astype(np.int32))
    gclass = gvals // opts.label_divisor
    bad = gclass[(gclass >= opts.num_classes) & (gclass != opts.ignore_label)]
    if bad.size:
        raise EvalInputError(
            f"{frame.gt_panoptic}: classes {sorted(set(bad.tolist()))} are neither in "
            f"[0, {opts.num_classes}) nor the ignore label {opts.ignore_label}"
        )

    # Class `num_classes` (19) is the official script's own "ignored" category: it relabels
    # depth-rejected pixels to it, it never matches a GT class and its FP are not averaged, so
    # it is "no prediction" (docs/evaluation.md#void-predictions).
    void = (
        (cls == opts.ignore_label) | (cls == opts.num_classes) | np.isin(cls, _PRED_VOID_CLASSES)
    )
    bad = np.unique(cls[(cls >= opts.num_classes) & ~void])
    if bad.size:
        raise EvalInputError(
            f"{frame.pred_panoptic}: predicted classes {bad.tolist()} are neither in "
            f"[0, {opts.num_classes}) nor void ({opts.num_classes}, {opts.ignore_label} or 255)"
        )
    # +1 keeps 0 free for "no prediction" (class 0 instance 0 is a real segment here).
    keys = np.where(void, pq.NO_PREDICTION, cls * opts.label_divisor + inst + 1)
    pvals, pi = pq.dense_ids(keys)
    if pvals.size == 0 or pvals[0] != pq.NO_PREDICTION:
        pvals = np.concatenate([[pq.NO_PREDICTION], pvals])
        pi = pi + 1

    rel_sum, rel_count, rejected = 0.0, 0, None
    if frame.pred_depth is not None:
        # Raw depth PNG values: the relative error is the same in metres (the scale cancels).
        gd = formats.read_grey_png(frame.gt_depth, "a single-channel depth PNG")
        pd = formats.read_grey_png(frame.pred_depth, "a single-channel depth PNG")
        for path, d in ((frame.gt_depth, gd), (frame.pred_depth, pd)):
            if d.shape != gt.shape:
                raise EvalInputError(
                    f"{path}: expected a single-channel depth PNG of size {gt.shape}, "
                    f"got shape {d.shape}"
                )
        valid = gd > 0
        g = gd[valid].astype(np.int64)
        # int64 before subtracting: Pillow decodes 16-bit PNGs as uint16, which would wrap.
        rel = np.abs(pd[valid].astype(np.int64) - g) / g
        rel_sum, rel_count = float(rel.sum()), int(rel.size)
        rejected = (valid, rel)

    pairs = {}
    for thr in thresholds:
        if thr > 0:
            if rejected is None:
                raise EvalInputError(f"depth threshold {thr} needs depth predictions")
            valid, rel = rejected
            pi_t = pi.ravel().copy()
            sel = np.flatnonzero(valid.ravel())[rel > thr]
            pi_t[sel] = 0  # Index 0 is NO_PREDICTION.
        else:
            pi_t = pi
        pairs[thr] = pq.dense_pair_counts(gvals, gi, pvals, pi_t)
    return pairs, gvals, rel_sum, rel_count


def _sequence(args):
    frames, opts, thresholds = args
    per_frame = [_frame_stats(f, opts, thresholds) for f in frames]
    gt_ids = np.unique(np.concatenate([p[1] for p in per_frame]))
    gt_class, gt_inst = gt_ids // opts.label_divisor, gt_ids % opts.label_divisor
    is_void = gt_class == opts.ignore_label
    flag = np.where(is_void, np.where(gt_inst == 0, pq.VOID, pq.IGNORED), pq.NORMAL)
    gt_table = pq.SegmentTable(gt_ids, np.where(is_void, -1, gt_class), flag)
    out = {}
    for thr in thresholds:
        frames_t = [p[0][thr] for p in per_frame]
        pred_ids = np.unique(np.concatenate([f.pred for f in frames_t]))
        pred_ids = pred_ids[pred_ids != pq.NO_PREDICTION]
        pred_table = pq.SegmentTable(
            pred_ids, (pred_ids - 1) // opts.label_divisor, np.zeros_like(pred_ids)
        )
        out[thr] = windows_stats(
            frames_t, gt_table, pred_table, opts.num_classes, opts.window_sizes
        )
    rel_sum = sum(p[2] for p in per_frame)
    rel_count = sum(p[3] for p in per_frame)
    return out, (rel_sum / rel_count if rel_count else None)


def evaluate_dvps(
    sequences: dict[str, tuple[DvpsFrame, ...]],
    opts: DvpqOptions | None = None,
    *,
    workers: int = 1,
    progress: bool = False,
) -> DvpqResult:
    """DVPQ for each depth threshold (0 = plain VPQ) and AbsRel over Cityscapes-DVPS sequences.

    Args:
      sequences: from `readers.read_dvps` (depth paths needed for thresholds > 0 and AbsRel).
      opts: label convention, thresholds and window sizes.
      workers: processes over sequences.
      progress: show a progress bar.
    """
    opts = opts or DvpqOptions()
    if any(not 0 <= t < opts.num_classes for t in opts.thing_ids):
        raise ValueError(f"thing ids {opts.thing_ids} must be in [0, {opts.num_classes})")
    if not 0 <= opts.ignore_label < opts.label_divisor or opts.ignore_label < opts.num_classes:
        raise ValueError(
            f"ignore label {opts.ignore_label} must be in [num_classes, label_divisor) = "
            f"[{opts.num_classes}, {opts.label_divisor})"
        )
    thresholds = tuple(sorted({float(t) for t in opts.depth_thresholds}, reverse=True))
    if not thresholds or min(thresholds) < 0:
        raise ValueError(f"depth thresholds must be >= 0, got {opts.depth_thresholds}")
    opts = dataclasses.replace(opts, window_sizes=check_window_sizes(opts.window_sizes))
    has_depth = all(f.pred_depth is not None for fs in sequences.values() for f in fs)
    if max(thresholds) > 0 and not has_depth:
        raise ValueError("depth thresholds > 0 need depth predictions (--depth-dir)")
    tasks = [(frames, opts, thresholds) for frames in sequences.values()]
    results = map_videos(_sequence, tasks, workers=workers, progress=progress, desc="DVPQ")
    things = tuple(sorted(opts.thing_ids))
    stuff = tuple(c for c in range(opts.num_classes) if c not in things)
    runs = {}
    for thr in thresholds:
        total = {n: pq.PQStats.zeros(opts.num_classes) for n in opts.window_sizes}
        for per_thr, _ in results:
            for n, s in per_thr[thr].items():
                total[n] += s
        runs[thr] = VpqResult(total, things, stuff, opts.annotation_stride, len(tasks))
    rels = [r for _, r in results if r is not None]
    abs_rel = float(np.mean(rels)) if has_depth and rels else None
    return DvpqResult(runs, abs_rel, len(tasks))
