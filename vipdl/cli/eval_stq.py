"""STQ on the KITTI-STEP layout, as deeplab2 `evaluation/numpy/segmentation_and_tracking_quality.py`.

    vipdl-eval-stq --gt-dir GT/ --pred-dir PRED/ [--num-classes 19 --things 11,13 \
        --ignore-label 255] [--out result.json]

Both folders hold `<seq>/<frame>.png` RGB PNGs (R = semantic, G * 256 + B = instance).
Exit code 1 on bad input.
"""

from __future__ import annotations

import argparse

from vipdl.evaluation import readers, report, stq
from vipdl.evaluation.cli_utils import add_common_args, int_list, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vipdl-eval-stq", description=__doc__.split("\n\n")[0])
    p.add_argument("--gt-dir", required=True, help="ground truth <seq>/<frame>.png")
    p.add_argument("--pred-dir", required=True, help="predictions <seq>/<frame>.png")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--things", type=int_list, default=(11, 13), help="KITTI-STEP: 11,13")
    p.add_argument("--ignore-label", type=int, default=255)
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        if args.num_classes < 1 or any(not 0 <= t < args.num_classes for t in args.things):
            raise ValueError(f"--things {list(args.things)} must be in [0, --num-classes)")
        sequences = readers.read_step(args.gt_dir, args.pred_dir)
        opts = stq.StqOptions(args.num_classes, tuple(args.things), args.ignore_label)
        result = stq.evaluate_step(
            sequences, opts, workers=args.workers, progress=not args.no_progress
        )
        summary = result.summary()
        print(report.stq_report(summary))
        if args.out:
            report.write_json(args.out, summary)

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
