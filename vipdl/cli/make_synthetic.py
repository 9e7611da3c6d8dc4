"""Generates the synthetic video world in the on-disk layouts of the real datasets.

    vipdl-make-synthetic --out DIR [--train-videos 40 --val-videos 10 --height 128 \
        --width 256 --frames 8 --annotation-stride 1 --seed 0 \
        --layouts cityscapes_vps,kitti_step,cityscapes_dvps]

Then convert it like a downloaded dataset:
`vipdl-prepare-data --dataset synthetic --manual_dir DIR --data_dir OUT`.
With `--layout custom` it writes a small dataset in the custom format instead (another class
set, sparse labels): `vipdl-prepare-data --dataset custom --manual_dir DIR --data_dir OUT`.
Exit code 1 on bad arguments or an existing non-empty --out (use --overwrite).
"""

from __future__ import annotations

import argparse
import sys

from vipdl.data import synthetic, synthetic_export


def build_parser() -> argparse.ArgumentParser:
    d = synthetic.DEFAULT_CONFIG
    p = argparse.ArgumentParser(prog="vipdl-make-synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--train-videos", type=int, default=40)
    p.add_argument("--val-videos", type=int, default=10)
    p.add_argument("--test-videos", type=int, default=0)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--frames", type=int, default=d.num_frames, help="raw frames per video")
    p.add_argument("--annotation-stride", type=int, default=d.annotation_stride)
    p.add_argument("--max-objects", type=int, default=d.max_objects)
    p.add_argument(
        "--object-scale",
        type=float,
        default=d.object_scale,
        help="object size factor in [0.1, 1] (the demo uses configs/synthetic.py's value)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--layouts",
        "--layout",
        default=",".join(synthetic_export.DEFAULT_LAYOUTS),
        help=f"comma-separated subset of {','.join(synthetic_export.LAYOUT_NAMES)}; 'custom' "
        "(your-own-videos format with another class set, docs/datasets.md#custom) is written "
        "without cityscapes_vps",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = synthetic.SyntheticConfig(
            height=args.height,
            width=args.width,
            num_frames=args.frames,
            annotation_stride=args.annotation_stride,
            max_objects=args.max_objects,
            min_objects=min(synthetic.DEFAULT_CONFIG.min_objects, args.max_objects),
            object_scale=args.object_scale,
        )
        splits = {"train": args.train_videos, "val": args.val_videos, "test": args.test_videos}
        if any(n < 0 for n in splits.values()):
            raise ValueError(f"video counts must be >= 0, got {splits}")
        layouts = tuple(s.strip() for s in args.layouts.split(",") if s.strip())
        root = synthetic_export.write_dataset(
            args.out,
            split_videos={s: n for s, n in splits.items() if n > 0},
            config=config,
            seed=args.seed,
            layouts=layouts,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (ValueError, FileExistsError, OSError) as e:
        print(f"vipdl-make-synthetic: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {sum(splits.values())} videos to {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
