"""DVPQ and AbsRel on the Cityscapes-DVPS layout, as ViP-DeepLab `cityscapes-dvps/eval_dvpq.py`.

    vipdl-eval-dvpq --gt-dir video_sequence/val --pred-dir PANOPTIC/ --depth-dir DEPTH/ \
        [--depth-thresholds 0,0.5,0.25,0.1] [--out result.json]

Predictions are named like the input frames (`<seq>_<frame>_..._leftImg8bit.png`): panoptic
PNGs with class in channel 0 and instance in channel 1, depth as uint16 PNG (metres * 256).
A predicted class of --num-classes (19: the official script's "ignored" class), the ignore label
or 255 means "no prediction". Exit code 1 on bad input.
"""

from __future__ import annotations

import argparse

from vipdl.evaluation import dvpq, readers, report
from vipdl.evaluation.cli_utils import add_common_args, float_list, int_list, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vipdl-eval-dvpq", description=__doc__.split("\n\n")[0])
    p.add_argument("--gt-dir", required=True, help="video_sequence/<split> of Cityscapes-DVPS")
    p.add_argument("--pred-dir", required=True, help="panoptic prediction PNGs")
    p.add_argument("--depth-dir", help="depth prediction PNGs (needed for thresholds > 0)")
    p.add_argument(
        "--depth-thresholds",
        type=float_list,
        default=None,
        help="relative depth error thresholds; 0 = plain VPQ (default 0,0.5,0.25,0.1 with "
        "--depth-dir, else 0)",
    )
    p.add_argument("--window-sizes", type=int_list, default=(1, 2, 3, 4))
    p.add_argument("--annotation-stride", type=int, default=5)
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--things", type=int_list, default=tuple(range(11, 19)))
    p.add_argument("--ignore-label", type=int, default=32)
    p.add_argument("--label-divisor", type=int, default=1000)
    p.add_argument("--plot", help="save a DVPQ-versus-k plot, one curve per threshold")
    p.add_argument("--per-class", action="store_true", help="print per-class tables")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    thresholds = args.depth_thresholds
    if thresholds is None:
        thresholds = (0.0, 0.5, 0.25, 0.1) if args.depth_dir else (0.0,)

    def body():
        sequences = readers.read_dvps(args.gt_dir, args.pred_dir, args.depth_dir)
        opts = dvpq.DvpqOptions(
            num_classes=args.num_classes,
            thing_ids=args.things,
            ignore_label=args.ignore_label,
            label_divisor=args.label_divisor,
            depth_thresholds=thresholds,
            window_sizes=args.window_sizes,
            annotation_stride=args.annotation_stride,
        )
        result = dvpq.evaluate_dvps(
            sequences, opts, workers=args.workers, progress=not args.no_progress
        )
        summary = result.summary()
        summary["num_sequences"] = result.num_sequences
        print(report.dvpq_report(summary, per_class=args.per_class))
        if args.out:
            report.write_json(args.out, summary)
        if args.plot:
            curves = {f"lambda={t}": per_k for t, per_k in summary["runs"].items()}
            report.plot_vpq_vs_window(curves, args.plot, keys=("DVPQ",), title="DVPQ versus k")

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
