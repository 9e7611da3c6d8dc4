"""Benchmark: the synthetic world and the dataset conversion path.

Measures, for the CPU-training default (128 x 256, 8 frames per video):

* `generate_video` (videos/s) against the baseline of drawing the same number of per-pixel
  Gaussian noise values (the cheapest possible "video"), measured in the same run;
* `write_dataset` in the three layouts, as a ratio to generation alone;
* `prepare("synthetic", ...)` (TFDS ArrayRecord conversion), seconds per pair;
* reading every training pair with `load_source` (ArrayRecord + PNG decode) and with the
  in-memory `SyntheticPairSource`, as ratios to the baseline of decoding both frames of each
  pair from the raw Cityscapes-DVPS files through `vipdl.data.layouts`; and the peak traced
  memory of the in-memory source.

Prints a Markdown section. `--quick` uses 8 videos instead of 60 and finishes in well under two
minutes on a 2-core machine.

Usage: .venv/bin/python scripts/benchmarks/synthetic_data.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from vipdl.data import builders, descriptors, layouts, synthetic, synthetic_export


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 videos instead of 60")
    args = parser.parse_args(argv)
    num_videos = 8 if args.quick else 60
    cfg = synthetic.SyntheticConfig()
    n_val = max(num_videos // 6, 1)
    splits = {"train": num_videos - n_val, "val": n_val}
    rows = []

    # Generation vs. the per-pixel noise floor.
    t_gen, _ = _timed(lambda: [synthetic.generate_video(cfg, (0, i)) for i in range(num_videos)])
    rng = np.random.default_rng(0)
    shape = (cfg.num_frames, cfg.height, cfg.width, 3)
    t_noise, _ = _timed(lambda: [rng.normal(size=shape) for _ in range(num_videos)])
    rows.append(("noise baseline (per-pixel normal draws)", t_noise, num_videos, "video", 1.0))
    rows.append(("`generate_video`", t_gen, num_videos, "video", t_gen / t_noise))

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        t_write, _ = _timed(
            lambda: synthetic_export.write_dataset(raw, split_videos=splits, config=cfg, seed=0)
        )
        rows.append(("`write_dataset` (3 layouts)", t_write, num_videos, "video", t_write / t_gen))
        # Layouts share image files through hard links: count each inode once.
        inodes = {(st.st_dev, st.st_ino): st.st_size for st in map(os.stat, raw.rglob("*.*"))}
        size_mb = sum(inodes.values()) / 2**20

        data_dir = Path(tmp) / "tfds"
        t_prep, _ = _timed(lambda: builders.prepare("synthetic", manual_dir=raw, data_dir=data_dir))
        num_pairs = num_videos * (cfg.num_frames - 1)
        rows.append(("`prepare` (ArrayRecord)", t_prep, num_pairs, "pair", t_prep / t_gen))

        # Reading every training pair; the baseline decodes both frames of each pair from the
        # raw Cityscapes-DVPS files (what a loader without conversion would do).
        layout = layouts.CityscapesDvpsLayout(raw, descriptors.SYNTHETIC)
        pairs = [(a, b) for v in layout.videos("train") for a, b in zip(v.frames, v.frames[1:])]
        t_raw, _ = _timed(lambda: [(layout.read_frame(a), layout.read_frame(b)) for a, b in pairs])
        source = builders.load_source("synthetic", "train", data_dir)
        t_src, _ = _timed(lambda: [source[i] for i in range(len(source))])
        # Same sizes, other seeds than the written split: the cost is what matters.
        memory = synthetic.SyntheticPairSource(splits["train"], config=cfg, seed=0)
        tracemalloc.start()
        t_mem_first, _ = _timed(lambda: [memory[i] for i in range(len(memory))])
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        t_mem, _ = _timed(lambda: [memory[i] for i in range(len(memory))])
        n = len(pairs)
        rows.append(("raw DVPS files via `layouts` (baseline)", t_raw, n, "pair", 1.0))
        rows.append(("`load_source` (ArrayRecord + PNG)", t_src, n, "pair", t_src / t_raw))
        rows.append(
            ("`SyntheticPairSource`, first pass", t_mem_first, n, "pair", t_mem_first / t_raw)
        )
        rows.append(("`SyntheticPairSource`, cached", t_mem, n, "pair", t_mem / t_raw))

    print("## Synthetic world and dataset conversion\n")
    print(f"Command: `{' '.join([os.path.basename(sys.executable), *sys.argv])}`  ")
    print(
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})  "
    )
    print(
        f"Data: {num_videos} videos x {cfg.num_frames} frames x {cfg.height}x{cfg.width}, "
        f"{size_mb:.1f} MB of raw files.\n"
    )
    print("| step | total s | items | ms / item | ratio to its baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, count, unit, ratio in rows:
        print(
            f"| {name} | {seconds:.2f} | {count} {unit}s | {1000 * seconds / count:.2f} | "
            f"{ratio:.1f}x |"
        )
    print(
        "\nBaselines: generation and writing/conversion are compared with per-pixel noise "
        "generation and with `generate_video` respectively; reading is compared with decoding "
        "both frames of each pair from the raw files. "
        f"Peak traced memory of the in-memory source on its first pass: {peak_mb:.0f} MB."
    )


if __name__ == "__main__":
    main()
