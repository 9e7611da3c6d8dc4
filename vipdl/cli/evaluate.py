"""Evaluate a trained model on whole videos of a prepared split: VPQ (per k) and STQ.

    vipdl-evaluate --config configs/synthetic.py --checkpoint RUN [--split val] \
        [--out result.json] [--pred-dir DIR] [--tracker vip|iou] [--max-videos N] [--boundary]
    vipdl-evaluate --workdir RUN ...

Every video of the split (the prepared source, or the in-memory synthetic videos when
`config.data.data_dir` is empty) runs through `vipdl.inference.VideoPredictor` and is scored by
`vipdl.video_evaluation.evaluate_videos`. With `--pred-dir DIR`, predictions and ground truth are
also written in the Cityscapes-VPS layout (`DIR/vps/pred/` with `pred.json` + `pan_pred/`,
`DIR/vps/gt/`) and the KITTI-STEP layout (`DIR/step/{pred,gt}/<video>/<frame>.png`), VPQ is
computed from the written VPS files (the official procedure), and `scripts/eval_vpq.py` and
`scripts/eval_stq.py` can rescore them. `--boundary` adds Boundary VPQ and the mean Boundary IoU
of matched segments (Cheng et al. 2021, band = 2 % of the image diagonal). Exit code 1 on bad
input.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from vipdl import formats
from vipdl.cli import console
from vipdl.cli.predict_video import check_output_dir, load_config_file


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
    p.add_argument("--boundary", action="store_true",
                   help="also Boundary VPQ and Boundary IoU (docs/evaluation.md#boundary-iou)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --pred-dir")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console.quiet_library_logs()
    try:
        if not args.workdir and not args.config:
            raise ValueError("give --workdir, or --config together with --checkpoint")
        if args.pred_dir:
            check_output_dir(Path(args.pred_dir), overwrite=args.overwrite)
        from vipdl import checkpointing, from_config
        from vipdl.evaluation import report
        from vipdl.inference import VideoPredictor
        from vipdl.video_evaluation import evaluate_videos

        cache = console.enable_compilation_cache()
        config = (load_config_file(args.config) if args.config
                  else checkpointing.load_config(args.workdir))
        checkpoint = args.checkpoint or args.workdir
        if not checkpoint:
            raise ValueError("--config needs --checkpoint (or --workdir) to load weights from")
        overrides: dict[str, Any] = {"batch_size": args.batch_size, "return_depth": False,
                                     "stitching_mode": args.stitching_mode}
        if args.tracker:
            overrides["tracker"] = args.tracker
        predictor = VideoPredictor.from_checkpoint(config, checkpoint, which=args.which,
                                                   cache_dir=cache, **overrides)
        split = args.split or config.data.eval_split
        videos = from_config.eval_videos(config, split, max_videos=args.max_videos)
        if args.pred_dir:
            # Staged next to the target and swapped in at the end: a failed run keeps old files.
            out_dir = Path(args.pred_dir)
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
            try:
                summary = evaluate_videos(predictor, videos, out_dir=staging, split=split,
                                          workers=args.workers, progress=not args.no_progress,
                                          boundary=args.boundary)
                formats.replace_dir(staging, out_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        else:
            summary = evaluate_videos(predictor, videos, split=split,
                                      progress=not args.no_progress, boundary=args.boundary)
        summary.update(split=split, tracker=predictor.tracker, checkpoint=str(checkpoint))
        d = predictor.descriptor
        print(report.vpq_report(summary, class_names=list(d.class_names)))
        print()
        if args.boundary:
            print(report.vpq_report(summary["BVPQ"], prefix="BVPQ"))
            b = summary["boundary_iou"]
            mean = "n/a" if b["mean"] is None else f"{100 * b['mean']:.2f}"
            print(f"Boundary IoU = {mean} (mean over {b['num_segments']} matched segments, "
                  "k = 0)\n")
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
