"""Segmentation and Tracking Quality (STQ) as deeplab2's numpy `STQuality` defines it.

STQ = sqrt(AQ * SQ) (Weber et al., "STEP: Segmenting and Tracking Every Pixel", 2021):

* SQ is the mean IoU of the semantic confusion matrix accumulated over a sequence (or all
  sequences), rows of the ignore class removed; classes with an empty union are not averaged
  (the column of predicted-ignore pixels counts as a class when it is non-empty, as in
  deeplab2).
* AQ: for each ground-truth track g (thing class, instance != 0; crowd = instance 0 is ignored,
  and predictions lying on crowd are dropped), (1 / |g|) * sum_p TPA(p, g) * IoU(p, g), summed
  over tracks and divided by the number of tracks.

Per frame a single pass builds the semantic confusion matrix (`np.bincount`) and a sparse
(track, predicted id) histogram of the thing pixels; a sequence is the sum of its frames.
Counts are exact integers (deeplab2 under NumPy >= 2 accumulates them in float32).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from vipdl import formats
from vipdl.evaluation import pq
from vipdl.evaluation.readers import EvalInputError, StepFrame
from vipdl.evaluation.vpq import map_videos

_EPSILON = 1e-15
# Track keys are (class << 32 | instance) + 1: any instance id of a tracked prediction fits.
_INSTANCE_BITS = 32


@dataclasses.dataclass(frozen=True)
class StqOptions:
    """Label convention (defaults: KITTI-STEP)."""

    num_classes: int = 19
    thing_ids: tuple[int, ...] = (11, 13)
    ignore_label: int = 255

    @property
    def matrix_size(self) -> int:
        return self.num_classes + 1 if self.ignore_label >= self.num_classes else self.num_classes


@dataclasses.dataclass
class SequenceStats:
    """Accumulated statistics of one sequence.

    Attributes:
      confusion: int64 [S, S] semantic confusion (rows = ground truth), S = matrix_size.
      tracks: pair histogram over thing pixels; gt / pred are panoptic ids + 1, 0 = none.
      num_frames: frames accumulated.
    """

    confusion: np.ndarray
    tracks: pq.PairCounts
    num_frames: int


def frame_stats(gt: np.ndarray, pred: np.ndarray, opts: StqOptions) -> SequenceStats:
    """Statistics of one frame from semantic / instance maps.

    Args:
      gt, pred: int [height, width, 2] = (semantic, instance) of ground truth and prediction;
        instance < 2^32.
      opts: label convention.
    """
    size = opts.matrix_size
    gs, gi = gt[..., 0].astype(np.int64), gt[..., 1].astype(np.int64)
    ps, pi = pred[..., 0].astype(np.int64), pred[..., 1].astype(np.int64)
    if opts.ignore_label > opts.num_classes:  # deeplab2 moves the ignore label to row S - 1.
        gs_m = np.where(gs == opts.ignore_label, opts.num_classes, gs)
        ps_m = np.where(ps == opts.ignore_label, opts.num_classes, ps)
    else:
        gs_m, ps_m = gs, ps
    for name, s in (("ground-truth", gs_m), ("predicted", ps_m)):
        if s.size and (s.min() < 0 or s.max() >= size):
            bad = np.unique(s[(s < 0) | (s >= size)])
            raise EvalInputError(
                f"{name} semantic classes {bad.tolist()} are neither in [0, {opts.num_classes}) "
                f"nor the ignore label {opts.ignore_label}"
            )
    confusion = np.bincount((gs_m * size + ps_m).ravel(), minlength=size * size)
    confusion = confusion.reshape(size, size).astype(np.int64)

    things = np.asarray(opts.thing_ids, np.int64)
    g_thing = np.isin(gs_m, things)
    crowd = g_thing & (gi == 0)
    g_mask = g_thing & ~crowd
    p_mask = np.isin(ps_m, things) & ~crowd
    sel = g_mask | p_mask
    g_keys = np.where(g_mask, ((gs << _INSTANCE_BITS) | gi) + 1, 0)[sel]
    p_keys = np.where(p_mask, ((ps << _INSTANCE_BITS) | pi) + 1, 0)[sel]
    tracks = pq.pair_counts(g_keys, p_keys) if g_keys.size else pq.PairCounts.empty()
    return SequenceStats(confusion, tracks, 1)


def merge(stats: Sequence[SequenceStats]) -> SequenceStats:
    return SequenceStats(
        sum(s.confusion for s in stats),
        pq.merge_pair_counts([s.tracks for s in stats]) if stats else pq.PairCounts.empty(),
        sum(s.num_frames for s in stats),
    )


def association(tracks: pq.PairCounts) -> tuple[float, int]:
    """(sum over gt tracks of (1/|g|) sum_p TPA * IoU, number of gt tracks)."""
    gt, pred, c = tracks.gt, tracks.pred, tracks.count
    if c.size == 0:
        return 0.0, 0
    ug, gi = np.unique(gt, return_inverse=True)
    up, pi = np.unique(pred, return_inverse=True)
    g_size = np.bincount(gi, weights=c, minlength=len(ug)).astype(np.int64)
    p_size = np.bincount(pi, weights=c, minlength=len(up)).astype(np.int64)
    both = (gt != 0) & (pred != 0)
    tpa = c[both]
    union = g_size[gi[both]] + p_size[pi[both]] - tpa  # tpa + fpa + fna
    inner = np.bincount(gi[both], weights=tpa * (tpa / union), minlength=len(ug))
    is_track = ug != 0
    total = float(np.sum(1.0 / g_size[is_track] * inner[is_track]))
    return total, int(is_track.sum())


def mean_iou(confusion: np.ndarray, opts: StqOptions) -> float | None:
    """Mean IoU over classes with a non-empty union, ignore rows removed (None if none)."""
    conf = confusion.astype(np.float64).copy()
    keep = np.zeros(conf.shape[0], bool)
    if opts.ignore_label >= opts.num_classes:
        keep[: opts.num_classes] = True
    else:
        keep[:] = True
        keep[opts.ignore_label] = False
    conf[~keep, :] = 0.0
    inter = conf.diagonal()
    union = conf.sum(axis=0) + conf.sum(axis=1) - inter
    n = np.count_nonzero(union)
    if n == 0:
        return None
    return float(np.sum(inter / np.maximum(union, _EPSILON)) / n)


@dataclasses.dataclass
class StqResult:
    """Per-sequence statistics; `summary()` gives STQ / AQ / SQ pooled and per sequence."""

    per_seq: dict[str, SequenceStats]
    opts: StqOptions

    def summary(self) -> dict:
        per_seq, aq_sum, tubes = {}, 0.0, 0
        total_conf = None
        for seq, s in self.per_seq.items():
            aq_s, n = association(s.tracks)
            aq_sum, tubes = aq_sum + aq_s, tubes + n
            total_conf = s.confusion if total_conf is None else total_conf + s.confusion
            aq = aq_s / max(n, _EPSILON)
            sq = mean_iou(s.confusion, self.opts)
            per_seq[seq] = {
                "STQ": None if sq is None else float(np.sqrt(aq * sq)),
                "AQ": float(aq),
                "SQ": sq,
                "num_tracks": n,
                "num_frames": s.num_frames,
            }
        aq = aq_sum / max(tubes, _EPSILON)
        sq = mean_iou(total_conf, self.opts) if total_conf is not None else None
        return {
            "STQ": None if sq is None else float(np.sqrt(aq * sq)),
            "AQ": float(aq),
            "SQ": sq,
            "num_tracks": tubes,
            "per_seq": per_seq,
        }


def read_step_frame(path) -> np.ndarray:
    """KITTI-STEP PNG -> int32 [height, width, 2] (semantic = R, instance = G * 256 + B)."""
    return np.stack(formats.read_step_png(path), axis=-1)


def _sequence(args) -> SequenceStats:
    frames, opts = args
    stats = []
    for f in frames:
        gt, pred = read_step_frame(f.gt), read_step_frame(f.pred)
        if gt.shape != pred.shape:
            raise EvalInputError(
                f"{f.pred}: prediction size {pred.shape[:2]} differs from ground truth "
                f"{gt.shape[:2]} ({f.gt})"
            )
        try:
            stats.append(frame_stats(gt, pred, opts))
        except EvalInputError as e:
            raise EvalInputError(f"{f.gt} / {f.pred}: {e}") from None
    return merge(stats)


def evaluate_step(
    sequences: dict[str, tuple[StepFrame, ...]],
    opts: StqOptions | None = None,
    *,
    workers: int = 1,
    progress: bool = False,
) -> StqResult:
    """STQ over KITTI-STEP style sequences from `readers.read_step`."""
    opts = opts or StqOptions()
    tasks = [(frames, opts) for frames in sequences.values()]
    stats = map_videos(_sequence, tasks, workers=workers, progress=progress, desc="STQ")
    return StqResult(dict(zip(sequences, stats)), opts)


def evaluate_arrays(
    sequences: dict[str, Sequence[tuple[np.ndarray, np.ndarray]]],
    opts: StqOptions,
    *,
    label_divisor: int,
    pred_label_divisor: int | None = None,
) -> StqResult:
    """STQ of in-memory sequences of (gt, pred) int panoptic maps `semantic * D + instance`.

    `pred_label_divisor`: the predictions' D when it differs, e.g. 2^32 for `class << 32 |
    track`.
    """
    pred_divisor = label_divisor if pred_label_divisor is None else int(pred_label_divisor)
    per_seq = {}
    for seq, frames in sequences.items():
        stats = []
        for gt, pred in frames:
            g = np.stack(np.divmod(np.asarray(gt, np.int64), label_divisor), axis=-1)
            p = np.stack(np.divmod(np.asarray(pred, np.int64), pred_divisor), axis=-1)
            stats.append(frame_stats(g, p, opts))
        per_seq[seq] = merge(stats)
    return StqResult(per_seq, opts)
