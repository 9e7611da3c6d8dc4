"""Video panoptic quality (VPQ) as defined by VPSNet / mcahny/vps `tools/eval_vpq.py`.

For each window size n (n annotated frames, k = (n - 1) * annotation_stride raw frames) every
run of n consecutive annotated frames of every video is scored as one panoptic "image" whose
segments are tubes (a segment id spans the frames of its video). TP / FP / FN / IoU are summed
over all windows and videos, PQ is computed per class and averaged over the classes that occur;
the final VPQ is the mean over k. PQ of single images is the n = 1 case.

Each frame is decoded once into a sparse (gt id, pred id) histogram; the windows are sums of
those histograms, so memory is bounded by one frame per worker plus the per-frame histograms
of one video.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from vipdl.evaluation import boundary, pq
from vipdl.evaluation.readers import EvalInputError, VpsFrame, VpsSet, vps_frame_pairs


@dataclasses.dataclass
class VpqResult:
    """Summed statistics per window size.

    Attributes:
      stats: window size n (annotated frames) -> PQStats over all windows and videos.
      thing_ids, stuff_ids: the classes averaged for the _th / _st scores.
      annotation_stride: raw frames between annotated frames (k = (n - 1) * stride).
      num_videos: number of videos evaluated.
    """

    stats: dict[int, pq.PQStats]
    thing_ids: tuple[int, ...]
    stuff_ids: tuple[int, ...]
    annotation_stride: int
    num_videos: int

    def k(self, n: int) -> int:
        return (n - 1) * self.annotation_stride

    def summary(self, prefix: str = "VPQ") -> dict:
        """JSON-ready summary (percentages): {prefix, prefix_th, prefix_st, per_k: {...}}."""
        classes = self.thing_ids + self.stuff_ids
        per_k = {}
        for n in sorted(self.stats):
            s = self.stats[n]
            all_, th, st = (pq.average(s, ids) for ids in (classes, self.thing_ids, self.stuff_ids))
            per_k[str(self.k(n))] = {
                prefix: _pct(all_["pq"]),
                f"{prefix}_th": _pct(th["pq"]),
                f"{prefix}_st": _pct(st["pq"]),
                "SQ": _pct(all_["sq"]),
                "RQ": _pct(all_["rq"]),
                "SQ_th": _pct(th["sq"]),
                "RQ_th": _pct(th["rq"]),
                "SQ_st": _pct(st["sq"]),
                "RQ_st": _pct(st["rq"]),
                "num_classes": all_["n"],
                "num_frames": n,
                "per_class": pq.per_class_table(s, classes),
            }
        out = {}
        for key in (prefix, f"{prefix}_th", f"{prefix}_st"):
            values = [v[key] for v in per_k.values()]
            out[key] = None if not values or None in values else float(np.mean(values))
        out["per_k"] = per_k
        return out


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def check_window_sizes(window_sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(sorted(set(int(n) for n in window_sizes)))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"window sizes must be >= 1, got {list(window_sizes)}")
    return sizes


def windows_stats(
    frames: Sequence[pq.PairCounts],
    gt_table: pq.SegmentTable,
    pred_table: pq.SegmentTable,
    num_classes: int,
    window_sizes: Sequence[int],
    boundary_frames: Sequence[pq.PairCounts] | None = None,
) -> dict[int, pq.PQStats]:
    """Sums match statistics over all windows of each size of one video.

    Args:
      frames: per-frame pair histograms of one video, in frame order.
      gt_table, pred_table: the video's segment tables.
      num_classes: size of the per-class arrays.
      window_sizes: window lengths n in frames; videos shorter than n contribute nothing.
      boundary_frames: optional per-frame band-map histograms (Boundary VPQ, see
        `vipdl.evaluation.boundary`).
    """
    out = {}
    for n in window_sizes:
        stats = pq.PQStats.zeros(num_classes)
        for start in range(len(frames) - n + 1):
            tube = pq.merge_pair_counts(frames[start : start + n])
            band = (None if boundary_frames is None
                    else pq.merge_pair_counts(boundary_frames[start : start + n]))
            stats += pq.match_pairs(tube, gt_table, pred_table, num_classes, boundary=band)
        out[n] = stats
    return out


# --- Cityscapes-VPS files -----------------------------------------------------------------


def _vps_tables(frames: Sequence[VpsFrame]) -> tuple[pq.SegmentTable, pq.SegmentTable]:
    """Segment tables of one video; a segment id must mean the same thing in every frame."""
    gt_cat: dict[int, int] = {0: -1}
    gt_flag: dict[int, int] = {0: pq.VOID}
    gt_first: dict[int, str] = {}
    pred_cat: dict[int, int] = {}
    pred_first: dict[int, str] = {}
    for f in frames:
        for sid, (cat, crowd, _) in f.gt_segments.items():
            flag = pq.CROWD if crowd else pq.NORMAL
            if sid in gt_cat and (gt_cat[sid], gt_flag[sid]) != (cat, flag):
                raise EvalInputError(
                    f"GT JSON: segment {sid} of video {f.video} is (category {cat}, iscrowd "
                    f"{crowd}) in {f.image_id!r} but (category {gt_cat[sid]}, iscrowd "
                    f"{int(gt_flag[sid] == pq.CROWD)}) in {gt_first[sid]!r}"
                )
            gt_cat[sid], gt_flag[sid] = cat, flag
            gt_first.setdefault(sid, f.image_id)
        for sid, cat in f.pred_segments.items():
            if pred_cat.get(sid, cat) != cat:
                raise EvalInputError(
                    f"pred.json: segment {sid} of video {f.video} has category {cat} in "
                    f"{f.image_id!r} but {pred_cat[sid]} in {pred_first[sid]!r}; a segment id "
                    "must keep its category within a video"
                )
            pred_cat[sid] = cat
            pred_first.setdefault(sid, f.image_id)
    return pq.SegmentTable.from_mapping(gt_cat, gt_flag), pq.SegmentTable.from_mapping(pred_cat)


def map_frames(fn: Callable, items: Sequence, *, workers: int = 1) -> Iterator:
    """`fn(item)` for each item, in order, lazily; with `workers` > 1 over a process pool.

    Frame-sized tasks keep the workers evenly busy whatever the video lengths, and the caller
    consumes (accumulates) results while the workers decode the next frames.
    """
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with _pool_context().Pool(min(workers, len(items)), initializer=keep_freed_memory) as pool:
        yield from pool.imap(fn, items, chunksize=2)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> None:
    """Makes glibc keep freed label maps for the next frame instead of returning them.

    By default glibc serves a large allocation with its own mmap and unmaps it when freed, so
    the next frame's 8-16 MB arrays are faulted in page by page again: in a pool worker that was
    over a third of the time (3 M page faults on the Cityscapes-sized benchmark set,
    docs/benchmarks.md#eval). A fixed mmap threshold at glibc's maximum (32 MB) and a 512 MB trim
    threshold keep them in the heap; the peak memory is unchanged. The evaluation pools call it
    in every worker. No-op where there is no glibc `mallopt` (macOS, Windows, musl).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 512 << 20)


def _pool_context():
    """fork when this process runs no other thread (the evaluation CLIs: workers start at once,
    nothing is re-imported), else spawn (safe with JAX / TF threads, ~1 s to start a worker)."""
    import sys
    import threading

    if (threading.active_count() == 1 and "jax" not in sys.modules
            and "fork" in multiprocessing.get_all_start_methods()):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def map_videos(
    fn: Callable, tasks: Sequence, *, workers: int = 1, progress: bool = False, desc: str = ""
) -> list:
    """`[fn(t) for t in tasks]`, in order, optionally over a process pool with a progress bar."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=desc, unit="video")
    results = []
    try:
        if workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                results.append(fn(t))
                if bar is not None:
                    bar.update()
        else:
            with _pool_context().Pool(min(workers, len(tasks)),
                                      initializer=keep_freed_memory) as pool:
                for r in pool.imap(fn, tasks):
                    results.append(r)
                    if bar is not None:
                        bar.update()
    finally:
        if bar is not None:
            bar.close()
    return results


def evaluate_vps(
    dataset: VpsSet,
    *,
    window_sizes: Sequence[int] = (1, 2, 3, 4),
    annotation_stride: int = 5,
    workers: int = 1,
    progress: bool = False,
) -> VpqResult:
    """VPQ of a Cityscapes-VPS prediction folder (see `readers.read_vps`).

    Args:
      dataset: the validated ground truth + predictions.
      window_sizes: window lengths in annotated frames (k = (n - 1) * annotation_stride).
      annotation_stride: raw frames between annotated frames (5 for Cityscapes-VPS).
      workers: processes over videos.
      progress: show a progress bar on stderr.
    """
    sizes = check_window_sizes(window_sizes)
    num_classes = max(dataset.categories) + 1
    videos = list(dataset.videos.values())
    # Tables first (JSON only), so a bad file is reported before any PNG is decoded.
    tables = [_vps_tables(frames) for frames in videos]
    pairs = map_frames(vps_frame_pairs, [f for frames in videos for f in frames],
                       workers=workers)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(videos), desc="VPQ", unit="video")
    total = {n: pq.PQStats.zeros(num_classes) for n in sizes}
    try:
        for frames, (gt_table, pred_table) in zip(videos, tables):
            video_pairs = [next(pairs) for _ in frames]
            for n, s in windows_stats(video_pairs, gt_table, pred_table, num_classes,
                                      sizes).items():
                total[n] += s
            if bar is not None:
                bar.update()
    finally:
        pairs.close()
        if bar is not None:
            bar.close()
    return VpqResult(
        stats=total,
        thing_ids=dataset.thing_ids,
        stuff_ids=dataset.stuff_ids,
        annotation_stride=annotation_stride,
        num_videos=len(videos),
    )


def _sum(per_video: Iterable[Mapping[int, pq.PQStats]], sizes, num_classes) -> dict:
    total = {n: pq.PQStats.zeros(num_classes) for n in sizes}
    for video in per_video:
        for n, s in video.items():
            total[n] += s
    return total


# --- In-memory label maps -----------------------------------------------------------------


def panoptic_to_keys(panoptic: np.ndarray, *, label_divisor: int, ignore_label: int) -> np.ndarray:
    """int [h, w] `semantic * D + instance` -> int64 segment keys, 0 = void, else value + 1."""
    panoptic = np.asarray(panoptic).astype(np.int64)
    return np.where(panoptic // label_divisor == ignore_label, 0, panoptic + 1)


def video_stats_from_arrays(
    gt: Sequence[np.ndarray],
    pred: Sequence[np.ndarray],
    *,
    num_classes: int,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    window_sizes: Sequence[int] = (1, 2, 3, 4),
    pred_label_divisor: int | None = None,
    boundary_dilation: float | None = None,
    boundary_ious: list[np.ndarray] | None = None,
) -> dict[int, pq.PQStats]:
    """VPQ statistics of one video given as in-memory panoptic maps.

    Args:
      gt, pred: per-frame int [height, width] maps, `semantic * label_divisor + instance`;
        void = semantic `ignore_label` (in the prediction too); crowd = thing class with
        instance 0 in the ground truth. A (class, instance) pair is one tube across frames.
      num_classes, thing_ids, label_divisor, ignore_label: the label convention.
      window_sizes: window lengths in frames.
      pred_label_divisor: the predictions' divisor when it differs from the ground truth's,
        e.g. 2^32 for tracked predictions as `class << 32 | track` (any number of tracks).
      boundary_dilation: with a band width (fraction of the image diagonal, 0.02 in the paper),
        Boundary VPQ statistics instead: pair IoUs are min(mask IoU, boundary IoU).
      boundary_ious: with `boundary_dilation`, a list that receives, per frame, the boundary
        IoUs of the segments PQ matches by mask IoU (`boundary.matched_boundary_ious`).

    Returns:
      window size -> PQStats summed over the windows of this video.
    """
    if len(gt) != len(pred):
        raise ValueError(f"{len(gt)} ground-truth frames but {len(pred)} predicted frames")
    things = set(int(t) for t in thing_ids)
    pred_divisor = label_divisor if pred_label_divisor is None else int(pred_label_divisor)
    frames, bands, gt_cat, gt_flag, pred_cat = [], [], {0: -1}, {0: pq.VOID}, {}
    for i, (g, p) in enumerate(zip(gt, pred)):
        gk = panoptic_to_keys(g, label_divisor=label_divisor, ignore_label=ignore_label)
        pk = panoptic_to_keys(p, label_divisor=pred_divisor, ignore_label=ignore_label)
        if gk.shape != pk.shape:
            raise ValueError(f"frame {i}: gt shape {gk.shape} != prediction shape {pk.shape}")
        pairs = pq.pair_counts(gk, pk)
        for key in np.unique(pairs.gt[pairs.gt > 0]).tolist():
            cat, inst = divmod(key - 1, label_divisor)
            _check_class(cat, num_classes, f"ground truth frame {i}")
            gt_cat[key] = cat
            gt_flag[key] = pq.CROWD if (cat in things and inst == 0) else pq.NORMAL
        for key in np.unique(pairs.pred[pairs.pred > 0]).tolist():
            cat = (key - 1) // pred_divisor
            _check_class(cat, num_classes, f"prediction frame {i}")
            pred_cat[key] = cat
        frames.append(pairs)
        if boundary_dilation is not None:
            bands.append(boundary.boundary_pair_counts(gk, pk, boundary_dilation))
    tables = pq.SegmentTable.from_mapping(gt_cat, gt_flag), pq.SegmentTable.from_mapping(pred_cat)
    if boundary_dilation is not None and boundary_ious is not None:
        boundary_ious.extend(boundary.matched_boundary_ious(f, b, *tables)
                             for f, b in zip(frames, bands))
    return windows_stats(frames, *tables, num_classes, check_window_sizes(window_sizes),
                         boundary_frames=bands if boundary_dilation is not None else None)


def _check_class(cat: int, num_classes: int, where: str) -> None:
    if not 0 <= cat < num_classes:
        raise ValueError(f"{where}: class {cat} outside [0, {num_classes}) and not void")


def evaluate_arrays(
    videos: Iterable[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    *,
    num_classes: int,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    window_sizes: Sequence[int] = (1, 2, 3, 4),
    annotation_stride: int = 1,
    pred_label_divisor: int | None = None,
    boundary_dilation: float | None = None,
) -> VpqResult:
    """VPQ over videos given as (gt frames, predicted frames) in memory.

    PQ of single images is `window_sizes=(1,)` (each image may be its own one-frame video).
    `pred_label_divisor`: see `video_stats_from_arrays`.
    With `boundary_dilation` (see `video_stats_from_arrays`) the result is Boundary VPQ.
    """
    sizes = check_window_sizes(window_sizes)
    per_video, count = [], 0
    for gt, pred in videos:
        per_video.append(
            video_stats_from_arrays(
                gt,
                pred,
                num_classes=num_classes,
                thing_ids=thing_ids,
                label_divisor=label_divisor,
                ignore_label=ignore_label,
                window_sizes=sizes,
                pred_label_divisor=pred_label_divisor,
                boundary_dilation=boundary_dilation,
            )
        )
        count += 1
    things = tuple(sorted(set(int(t) for t in thing_ids)))
    return VpqResult(
        stats=_sum(per_video, sizes, num_classes),
        thing_ids=things,
        stuff_ids=tuple(c for c in range(num_classes) if c not in things),
        annotation_stride=annotation_stride,
        num_videos=count,
    )


def panoptic_quality(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    num_classes: int,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    boundary_dilation: float | None = None,
) -> dict:
    """PQ of a single image pair (the k = 0 case). Returns the `VpqResult.summary("PQ")` dict.

    With `boundary_dilation` (0.02 in the paper) it is Boundary PQ, summarised as "BPQ".
    """
    result = evaluate_arrays(
        [([gt], [pred])],
        num_classes=num_classes,
        thing_ids=thing_ids,
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        window_sizes=(1,),
        boundary_dilation=boundary_dilation,
    )
    return result.summary("PQ" if boundary_dilation is None else "BPQ")
