"""Evaluate a trained model on whole videos of a prepared split: VPQ (per k) and STQ.

    vipdl-evaluate --config configs/synthetic.py --checkpoint RUN [--split val] \
        [--out result.json] [--pred-dir DIR] [--tracker vip|iou] [--max-videos N]
    vipdl-evaluate --workdir RUN ...

Every video of the split (`vipdl.data.pipeline.iter_videos` over the prepared source, or the
in-memory synthetic videos when `config.data.data_dir` is empty) runs through
`vipdl.inference.VideoPredictor`. Predictions and ground truth are written in the
Cityscapes-VPS layout (`DIR/vps/pred/` with `pred.json` + `pan_pred/`, `DIR/vps/gt/`) and the
KITTI-STEP layout (`DIR/step/{pred,gt}/<video>/<frame>.png`), so `scripts/eval_vpq.py` and
`scripts/eval_stq.py` can rescore them; DIR defaults to a temporary directory that is deleted
afterwards. VPQ is computed from the written VPS files (the official procedure), STQ from the
same maps in memory. Exit code 1 on bad input.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vipdl.cli import console
from vipdl.cli.predict_video import check_output_dir, load_config_file, replace_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vipdl-evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", help="training workdir (config.json + checkpoints)")
    p.add_argument("--config", help="config file (.py with get_config(), 'file.py:arg', or a "
                   "workdir's config.json)")
    p.add_argument("--checkpoint", help="checkpoint dir (default: the workdir)")
    p.add_argument("--which", choices=("latest", "best"), default="latest")
    p.add_argument("--split", help="split to evaluate (default: config.data.eval_split)")
    p.add_argument("--out", help="write the results as JSON")
    p.add_argument("--pred-dir", help="keep predictions + ground truth here (default: temporary)")
    p.add_argument("--tracker", choices=("vip", "iou"), help="default: from the model type")
    p.add_argument("--stitching-mode", choices=("clean", "reference"), default="clean")
    p.add_argument("--batch-size", type=int, default=1, help="frames per device call")
    p.add_argument("--max-videos", type=int, default=0, help="evaluate only the first N videos")
    p.add_argument("--workers", type=int, default=1, help="processes for the VPQ computation")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --pred-dir")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _image_id(sequence: str, frame: int) -> str:
    # The VPS layout groups frames by the first "_" token of the image id.
    return f"{re.sub(r'[^A-Za-z0-9.-]+', '-', sequence) or 'video'}_{frame:06d}"


def evaluate_videos(predictor, videos, out_dir: str | Path, *, split: str = "val",
                    workers: int = 1, progress: bool = True) -> dict[str, Any]:
    """Runs `predictor` over videos, writes both layouts to `out_dir` and scores them.

    Args:
      predictor: a `vipdl.inference.VideoPredictor`.
      videos: iterable of `(sequence_id, frames uint8 [T, H, W, 3], panoptic int32 [T, H, W])`,
        e.g. `vipdl.data.pipeline.iter_videos(source)`; consumed one video at a time.
      out_dir: where `vps/` and `step/` are written (must be empty or absent).
      split: split name used in the VPS ground-truth file names.
      workers: processes for the VPQ computation.
      progress: show a progress bar over videos.

    Returns:
      `{"VPQ": ..., "VPQ_th", "VPQ_st", "per_k": {...}, "STQ": {...}, "num_videos",
      "num_frames", "seconds", "fps"}` (percentages for VPQ, fractions for STQ as
      `vipdl.evaluation.stq` reports them).
    """
    from tqdm import tqdm

    from vipdl.evaluation import readers, stq, vpq, writers

    d = predictor.descriptor
    out_dir = Path(out_dir)
    vps_pred, vps_gt = out_dir / "vps" / "pred", out_dir / "vps" / "gt"
    step_pred, step_gt = out_dir / "step" / "pred", out_dir / "step" / "gt"
    opts = stq.StqOptions(num_classes=d.num_classes, thing_ids=tuple(d.thing_ids),
                          ignore_label=d.ignore_label)
    per_seq: dict[str, Any] = {}
    counts = {"videos": 0, "frames": 0, "seconds": 0.0}
    pred_writer = writers.VpsPredictionWriter(
        vps_pred, label_divisor=d.label_divisor, ignore_label=d.ignore_label,
        thing_ids=d.thing_ids)

    def split_labels(panoptic: np.ndarray) -> np.ndarray:
        return np.stack(np.divmod(np.asarray(panoptic, np.int64), d.label_divisor), axis=-1)

    def ground_truth():
        # Drives the whole run: write_vps_ground_truth pulls one GT frame at a time, and each
        # video is predicted just before its GT frames are handed over.
        for sequence, frames, panoptic in tqdm(videos, unit="video", disable=not progress):
            sequence = str(sequence)
            start = time.perf_counter()
            preds = [p.panoptic for p in predictor.predict(iter(frames))]
            counts["seconds"] += time.perf_counter() - start
            if len(preds) != len(panoptic):
                raise ValueError(f"video {sequence}: {len(preds)} predictions for "
                                 f"{len(panoptic)} ground-truth frames")
            stats = []
            for t, (pred, gt) in enumerate(zip(preds, panoptic)):
                image_id = _image_id(sequence, t)
                pred_writer.add(image_id, pred)
                seq_dir = image_id.split("_")[0]
                writers.write_step_png(step_pred / seq_dir / f"{t:06d}.png", pred,
                                       label_divisor=d.label_divisor)
                writers.write_step_png(step_gt / seq_dir / f"{t:06d}.png", gt,
                                       label_divisor=d.label_divisor)
                stats.append(stq.frame_stats(split_labels(gt), split_labels(pred), opts))
                yield image_id, gt
            if sequence in per_seq:
                raise ValueError(f"video {sequence} appears twice in the split")
            per_seq[sequence] = stq.merge(stats)
            counts["videos"] += 1
            counts["frames"] += len(preds)

    writers.write_vps_ground_truth(vps_gt, split, ground_truth(), descriptor=d)
    pred_writer.close()
    if not counts["videos"]:
        raise ValueError("the split holds no videos")
    dataset = readers.read_vps(vps_gt / f"panoptic_gt_{split}_city_vps.json",
                               vps_gt / split / "panoptic_video", vps_pred)
    result = vpq.evaluate_vps(dataset, window_sizes=d.eval_window_frames,
                              annotation_stride=d.annotation_stride, workers=workers)
    summary = result.summary("VPQ")
    summary["STQ"] = stq.StqResult(per_seq, opts).summary()
    summary.update(
        num_videos=counts["videos"], num_frames=counts["frames"],
        seconds=round(counts["seconds"], 3),
        fps=round(counts["frames"] / counts["seconds"], 3) if counts["seconds"] else None,
    )
    return summary


def _limited(videos, max_videos: int):
    for i, video in enumerate(videos):
        if max_videos and i >= max_videos:
            return
        yield video


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console.quiet_library_logs()
    try:
        if not args.workdir and not args.config:
            raise ValueError("give --workdir, or --config together with --checkpoint")
        if args.pred_dir:
            check_output_dir(Path(args.pred_dir), overwrite=args.overwrite)
        from vipdl import checkpointing, trainer
        from vipdl.data import pipeline
        from vipdl.evaluation import report
        from vipdl.inference import VideoPredictor

        config = (load_config_file(args.config) if args.config
                  else checkpointing.load_config(args.workdir))
        checkpoint = args.checkpoint or args.workdir
        if not checkpoint:
            raise ValueError("--config needs --checkpoint (or --workdir) to load weights from")
        overrides: dict[str, Any] = {"batch_size": args.batch_size, "return_depth": False,
                                     "stitching_mode": args.stitching_mode,
                                     "output_stride": int(config.model.output_stride)}
        if args.tracker:
            overrides["tracker"] = args.tracker
        predictor = VideoPredictor.from_checkpoint(config, checkpoint, which=args.which,
                                                   **overrides)
        split = args.split or config.data.eval_split
        videos = _limited(pipeline.iter_videos(trainer.create_source(config, split)),
                          args.max_videos)
        if args.pred_dir:
            # Staged next to the target and swapped in at the end: a failed run keeps old files.
            out_dir = Path(args.pred_dir)
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
            try:
                summary = evaluate_videos(predictor, videos, staging, split=split,
                                          workers=args.workers, progress=not args.no_progress)
                replace_dir(staging, out_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            with tempfile.TemporaryDirectory(prefix="vipdl-evaluate-") as tmp:
                summary = evaluate_videos(predictor, videos, tmp, split=split,
                                          workers=args.workers, progress=not args.no_progress)
        summary.update(split=split, tracker=predictor.tracker, checkpoint=str(checkpoint))
        d = predictor.descriptor
        print(report.vpq_report(summary, class_names=list(d.class_names)))
        print()
        print(report.stq_report(summary["STQ"]))
        print(f"\n{summary['num_videos']} videos, {summary['num_frames']} frames, "
              f"{summary['fps']} frames/s")
        if args.out:
            report.write_json(args.out, summary)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
