"""Video -> VPQ / STQ: the one evaluation path of a predictor on labelled videos.

`evaluate_videos` runs a `vipdl.inference.VideoPredictor` over whole videos, one at a time, and
scores the tracked predictions with `vipdl.evaluation` (VPQ over the dataset's window sizes and
STQ). The trainer's in-loop evaluation, `scripts/evaluate.py` and the notebooks all call it.

By default everything stays in memory. With `out_dir`, predictions and ground truth are also
written in the Cityscapes-VPS layout (`out_dir/vps/pred/` with `pred.json` + `pan_pred/`,
`out_dir/vps/gt/`) and the KITTI-STEP layout (`out_dir/step/{pred,gt}/<video>/<frame>.png`), and
VPQ is computed from the written files, the official procedure, so `scripts/eval_vpq.py` and
`scripts/eval_stq.py` can rescore them. Both ways give the same numbers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vipdl import formats
from vipdl.data.descriptors import DatasetDescriptor
from vipdl.evaluation import pq, readers, stq, vpq, writers
from vipdl.inference import FramePrediction, VideoPredictor
from vipdl.postprocess import labels

Video = tuple[str, np.ndarray, np.ndarray]  # (sequence id, frames [T, H, W, 3], panoptic [T, H, W])


def image_id(sequence: str, frame: int) -> str:
    """The VPS-layout image id of frame `frame` of `sequence` (grouped by its first "_" token)."""
    return f"{re.sub(r'[^A-Za-z0-9.-]+', '-', sequence) or 'video'}_{frame:06d}"


def _class_instance(panoptic: np.ndarray, label_divisor: int) -> np.ndarray:
    return np.stack(np.divmod(np.asarray(panoptic, np.int64), label_divisor), axis=-1)


class _Run:
    """Predicts the videos one at a time and accumulates STQ statistics and counts."""

    def __init__(self, predictor: VideoPredictor, descriptor: DatasetDescriptor,
                 boundary_dilation: float | None = None):
        self.predictor = predictor
        self.descriptor = descriptor
        self.boundary_dilation = boundary_dilation
        self.boundary_stats: list[dict] = []
        self.boundary_ious: list[np.ndarray] = []
        self.stq_options = stq.StqOptions(
            num_classes=descriptor.num_classes,
            thing_ids=tuple(descriptor.thing_ids),
            ignore_label=descriptor.ignore_label,
        )
        self.per_sequence: dict[str, Any] = {}
        self.videos = self.frames = 0
        self.seconds = 0.0

    def predict(self, sequence: str, frames: np.ndarray, gt: np.ndarray) -> list[FramePrediction]:
        """Tracked predictions of one video (any number of tracks); its STQ statistics are
        recorded."""
        start = time.perf_counter()
        preds = list(self.predictor.predict(iter(frames)))
        self.seconds += time.perf_counter() - start
        if len(preds) != len(gt):
            raise ValueError(
                f"video {sequence}: {len(preds)} predictions for {len(gt)} ground-truth frames"
            )
        if sequence in self.per_sequence:
            raise ValueError(f"video {sequence} appears twice in the split")
        d = self.descriptor.label_divisor
        self.per_sequence[sequence] = stq.merge(
            [
                stq.frame_stats(_class_instance(g, d), np.stack([p.semantic, p.track], -1),
                                self.stq_options)
                for g, p in zip(gt, preds)
            ]
        )
        if self.boundary_dilation is not None:
            self.boundary_stats.append(vpq.video_stats_from_arrays(
                list(gt), [p.segments[p.segment_map] for p in preds],
                num_classes=self.descriptor.num_classes,
                thing_ids=self.descriptor.thing_ids, label_divisor=d,
                pred_label_divisor=1 << labels.TRACK_BITS,
                ignore_label=self.descriptor.ignore_label,
                window_sizes=self.descriptor.eval_window_frames,
                boundary_dilation=self.boundary_dilation, boundary_ious=self.boundary_ious))
        self.videos += 1
        self.frames += len(preds)
        return preds

    def summary(self, vpq_result: vpq.VpqResult) -> dict[str, Any]:
        if not self.videos:
            raise ValueError("the split holds no videos")
        summary = vpq_result.summary("VPQ")
        summary["STQ"] = stq.StqResult(self.per_sequence, self.stq_options).summary()
        if self.boundary_dilation is not None:
            d = self.descriptor
            sizes = vpq.check_window_sizes(d.eval_window_frames)
            stats = {n: pq.PQStats.zeros(d.num_classes) for n in sizes}
            for video in self.boundary_stats:
                for n, s in video.items():
                    stats[n] += s
            result = vpq.VpqResult(
                stats=stats,
                thing_ids=tuple(sorted(d.thing_ids)),
                stuff_ids=tuple(c for c in range(d.num_classes) if c not in d.thing_ids),
                annotation_stride=d.annotation_stride, num_videos=self.videos)
            ious = np.concatenate(self.boundary_ious) if self.boundary_ious else np.zeros(0)
            summary["BVPQ"] = result.summary("BVPQ")
            summary["boundary_iou"] = {
                "mean": float(ious.mean()) if ious.size else None,
                "num_segments": int(ious.size),
                "dilation_ratio": self.boundary_dilation,
            }
        summary.update(
            num_videos=self.videos,
            num_frames=self.frames,
            seconds=round(self.seconds, 3),
            fps=round(self.frames / self.seconds, 3) if self.seconds else None,
        )
        return summary


def evaluate_videos(
    predictor: VideoPredictor,
    videos: Iterable[Video],
    *,
    out_dir: str | Path | None = None,
    split: str = "val",
    workers: int = 1,
    progress: bool = False,
    boundary: bool = False,
    boundary_dilation: float = 0.02,
) -> dict[str, Any]:
    """Runs `predictor` over labelled videos and scores VPQ (per window k) and STQ.

    Args:
      predictor: the predictor; its `descriptor` gives the label convention and window sizes.
      videos: `(sequence id, frames uint8 [T, H, W, 3], panoptic int32 [T, H, W])` per video,
        e.g. `vipdl.from_config.eval_videos(config)`; consumed one video at a time.
      out_dir: also write both layouts here (must be empty or absent) and score VPQ from the
        written files; None keeps everything in memory.
      split: split name used in the VPS ground-truth file names.
      workers: processes for the file-based VPQ computation.
      progress: show a progress bar over videos.
      boundary: also score Boundary VPQ and the mean Boundary IoU of matched segments
        (`vipdl.evaluation.boundary`; in memory, whatever `out_dir` says).
      boundary_dilation: the boundary band width as a fraction of the image diagonal.

    Returns:
      `{"VPQ", "VPQ_th", "VPQ_st", "per_k": {k: {...}}, "STQ": {...}, "num_videos",
      "num_frames", "seconds", "fps"}`: VPQ in percent, STQ as fractions (as
      `vipdl.evaluation.stq` reports them); `seconds` counts prediction time only. With
      `boundary`, also "BVPQ" (the same layout as VPQ's, prefix "BVPQ") and "boundary_iou"
      ({"mean", "num_segments", "dilation_ratio"}, k = 0 pairs matched by mask IoU).
    """
    from tqdm import tqdm

    d = predictor.descriptor
    run = _Run(predictor, d, boundary_dilation if boundary else None)
    videos = tqdm(videos, unit="video", disable=not progress)
    if out_dir is None:
        result = vpq.evaluate_arrays(
            ((list(gt), [p.segments[p.segment_map] for p in run.predict(str(seq), frames, gt)])
             for seq, frames, gt in videos),
            num_classes=d.num_classes,
            thing_ids=d.thing_ids,
            label_divisor=d.label_divisor,
            ignore_label=d.ignore_label,
            window_sizes=d.eval_window_frames,
            annotation_stride=d.annotation_stride,
            pred_label_divisor=1 << labels.TRACK_BITS,
        )
        return run.summary(result)
    return run.summary(_evaluate_via_files(run, videos, Path(out_dir), split, workers))


def _evaluate_via_files(run: _Run, videos: Iterable[Video], out_dir: Path, split: str,
                        workers: int) -> vpq.VpqResult:
    d = run.descriptor
    vps_pred, vps_gt = out_dir / "vps" / "pred", out_dir / "vps" / "gt"
    step_pred, step_gt = out_dir / "step" / "pred", out_dir / "step" / "gt"
    pred_writer = writers.VpsPredictionWriter(
        vps_pred, label_divisor=d.label_divisor, ignore_label=d.ignore_label, thing_ids=d.thing_ids
    )

    def ground_truth() -> Iterator[tuple[str, np.ndarray]]:
        # Drives the whole run: write_vps_ground_truth pulls one GT frame at a time, and each
        # video is predicted just before its GT frames are handed over.
        for sequence, frames, panoptic in videos:
            preds = run.predict(str(sequence), frames, panoptic)
            for t, (pred, gt) in enumerate(zip(preds, panoptic)):
                iid = image_id(str(sequence), t)
                semantic, track = labels.split_wide(pred.segments)
                pred_writer.add_segments(iid, pred.segment_map, semantic, track)
                seq_dir = iid.split("_")[0]
                formats.write_step_segments(step_pred / seq_dir / f"{t:06d}.png",
                                            pred.segment_map, semantic, track)
                formats.write_step_png(step_gt / seq_dir / f"{t:06d}.png", gt,
                                       label_divisor=d.label_divisor)
                yield iid, gt

    writers.write_vps_ground_truth(vps_gt, split, ground_truth(), descriptor=d)
    pred_writer.close()
    if not run.videos:
        raise ValueError("the split holds no videos")
    dataset = readers.read_vps(vps_gt / f"panoptic_gt_{split}_city_vps.json",
                               vps_gt / split / "panoptic_video", vps_pred)
    return vpq.evaluate_vps(dataset, window_sizes=d.eval_window_frames,
                            annotation_stride=d.annotation_stride, workers=workers)
