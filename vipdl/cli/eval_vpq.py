"""VPQ on the Cityscapes-VPS layout, numerically identical to mcahny/vps `tools/eval_vpq.py`.

    vipdl-eval-vpq --gt-json panoptic_gt_val_city_vps.json --gt-dir val/panoptic_video \
        --pred-dir PRED/ [--out result.json] [--plot vpq.png]

PRED holds `pred.json` and `pan_pred/<image_id>.png`. Exit code 1 on bad input.
"""

from __future__ import annotations

import argparse

from vipdl.evaluation import readers, report, vpq
from vipdl.evaluation.cli_utils import add_common_args, int_list, run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vipdl-eval-vpq", description=__doc__.split("\n\n")[0])
    p.add_argument("--gt-json", required=True, help="panoptic_gt_<split>_city_vps.json")
    p.add_argument("--gt-dir", required=True, help="folder of GT PNGs (panoptic_video/)")
    p.add_argument("--pred-dir", required=True, help="folder with pred.json and pan_pred/")
    p.add_argument(
        "--window-sizes",
        type=int_list,
        default=(1, 2, 3, 4),
        help="window lengths in annotated frames (default 1,2,3,4 = k 0,5,10,15)",
    )
    p.add_argument("--annotation-stride", type=int, default=5, help="raw frames per annotation")
    p.add_argument("--plot", help="save a VPQ-versus-k plot (png/pdf/svg)")
    p.add_argument("--per-class", action="store_true", help="print per-class tables")
    add_common_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        dataset = readers.read_vps(args.gt_json, args.gt_dir, args.pred_dir)
        result = vpq.evaluate_vps(
            dataset,
            window_sizes=args.window_sizes,
            annotation_stride=args.annotation_stride,
            workers=args.workers,
            progress=not args.no_progress,
        )
        summary = result.summary("VPQ")
        summary["num_videos"] = result.num_videos
        names = [dataset.categories[c]["name"] for c in sorted(dataset.categories)]
        print(report.vpq_report(summary, class_names=names, per_class=args.per_class))
        if args.out:
            report.write_json(args.out, summary)
        if args.plot:
            report.plot_vpq_vs_window({"": summary["per_k"]}, args.plot)

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
