"""Shared pieces of the evaluation command lines (vipdl/cli/eval_*.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="write the full results (per k, per class sums) as JSON")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="processes over videos (default: min(4, CPUs))",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(body: Callable[[], None]) -> int:
    """Runs `body`; bad input (ValueError) becomes a one-line error on stderr and exit code 1."""
    from vipdl.evaluation.vpq import keep_freed_memory

    keep_freed_memory()  # This process decodes frames too (--workers 1), as the pool workers do.
    start = time.perf_counter()
    try:
        body()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"(evaluated in {time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0
