"""Converts a downloaded dataset (or the synthetic one) into TFDS ArrayRecord pairs.

    vipdl-prepare-data --dataset synthetic --manual_dir RAW --data_dir OUT [--overwrite]

Datasets: cityscapes_vps, cityscapes_dvps, kitti_step, motchallenge_step, vipseg,
semkitti_dvps, cityscapes_panoptic, coco_panoptic, synthetic, and custom: your own labelled
videos, a folder with dataset.json (folder layouts in docs/datasets.md). The raw files are
validated first and every problem is printed with its file name; nothing that looks complete is
left behind on failure. Findings that do not stop the conversion (e.g. a video whose frame size
changes) are printed as notes. Refuses to replace a complete dataset without --overwrite. Exit
code 1 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    from vipdl.data import builders

    p = argparse.ArgumentParser(prog="vipdl-prepare-data", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, choices=sorted(builders.BUILDERS))
    p.add_argument("--manual_dir", required=True, help="root of the raw (downloaded) files")
    p.add_argument("--data_dir", required=True, help="TFDS data directory to write")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
    p.add_argument(
        "--no_count_check",
        action="store_true",
        help="accept split sizes that differ from the published ones (partial downloads)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    # TensorFlow (used by TFDS to write) is imported lazily so that its C++ start-up log lines
    # can be silenced first.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from vipdl.data import builders, layouts

    args = build_parser().parse_args(argv)
    try:
        path = builders.prepare(
            args.dataset,
            manual_dir=args.manual_dir,
            data_dir=args.data_dir,
            overwrite=args.overwrite,
            check_counts=not args.no_count_check,
            warn=lambda message: print(f"note: {message}", file=sys.stderr),
        )
    except layouts.DatasetError as e:
        print(f"vipdl-prepare-data: invalid input:\n{e}", file=sys.stderr)
        return 1
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"vipdl-prepare-data: error: {e}", file=sys.stderr)
        return 1
    print(f"prepared {args.dataset} in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
