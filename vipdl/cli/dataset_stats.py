"""Statistics and problems of a raw dataset, before (or instead of) converting it.

    vipdl-dataset-stats --manual_dir DIR [--dataset custom] [--split val] [--json out.json]

Prints per split the videos, annotated frames and pairs, frame sizes, the annotated-frame stride
(raw frames between consecutive annotated frames), each class's share of the labelled pixels,
the instances (tracks) per thing class and how many annotated frames the tracks span, then
every problem (what `vipdl-prepare-data` would refuse) and note (what it accepts but reports,
e.g. a video whose frame size changes or whose instance ids never repeat). `--dataset` takes
any `vipdl-prepare-data` dataset; the default is your own videos (docs/datasets.md#custom).
Exit code 1 when problems were found or the input is unreadable.
"""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vipdl-dataset-stats",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manual_dir", "--manual-dir", required=True,
                   help="root of the raw dataset (for custom data: the folder with dataset.json)")
    p.add_argument("--dataset", default="custom", help="dataset name as in vipdl-prepare-data")
    p.add_argument("--split", action="append", help="split to read (repeatable; default: all)")
    p.add_argument("--max-videos", type=int, default=0, help="read at most N videos per split")
    p.add_argument("--json", help="also write the statistics as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vipdl import formats
    from vipdl.data import custom, layouts, stats

    try:
        if args.dataset == "custom":
            layout = custom.make_layout(args.manual_dir)
        else:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TFDS imports TensorFlow.
            from vipdl.data import builders

            layout = builders.make_layout(args.dataset, args.manual_dir)
        result = stats.dataset_stats(layout, splits=args.split, max_videos=args.max_videos,
                                     progress=not args.no_progress)
    except layouts.DatasetError as e:
        print(f"vipdl-dataset-stats: invalid input:\n{e}", file=sys.stderr)
        return 1
    except (KeyError, FileNotFoundError, ValueError) as e:
        print(f"vipdl-dataset-stats: error: {e}", file=sys.stderr)
        return 1
    print(stats.format_stats(result))
    if args.json:
        formats.atomic_write_json(args.json, result)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
