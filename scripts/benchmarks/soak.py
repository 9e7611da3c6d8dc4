"""Soak test: a long, busy video through `vipdl-predict-video`'s writer path, memory over time.

A generated street (tests/oracle.py `busy_street`) where small cars keep entering and leaving,
five new ones a frame, so one class gets thousands of tracks, far more than the label divisor
(1000). The oracle model reads the labels painted into the frames, so the run exercises the
predictor, the sequence stitcher and both prediction layouts (VPS + STEP, written frame by
frame) without depending on a trained model. Prints a Markdown section: resident memory
every 1000 frames, tracks, frames per second; the run must finish without an id error.

  .venv/bin/python scripts/benchmarks/soak.py            # 10,000 frames at 40x64 (minutes)
  .venv/bin/python scripts/benchmarks/soak.py --quick    # 2,000 frames
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import psutil
from PIL import Image

from vipdl.cli import predict_video
from vipdl.data.descriptors import SYNTHETIC
from vipdl.inference import VideoPredictor
from vipdl.postprocess import PostprocessOptions

ROOT = Path(__file__).resolve().parents[2]


def _oracle():
    spec = importlib.util.spec_from_file_location("oracle", ROOT / "tests" / "oracle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 frames")
    parser.add_argument("--frames", type=int, help="number of frames (default 10,000)")
    args = parser.parse_args(argv)
    num_frames = args.frames or (2000 if args.quick else 10_000)
    height, width = 40, 64
    oracle = _oracle()
    process = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="vipdl_soak_") as tmp:
        frames_dir = Path(tmp) / "frames"
        frames_dir.mkdir()
        start = time.perf_counter()
        gt_tracks = 0
        for t, (frame, _, track) in enumerate(oracle.busy_street(num_frames, height, width)):
            Image.fromarray(frame).save(frames_dir / f"{t:06d}.png", compress_level=1)
            gt_tracks = max(gt_tracks, int(track.max()))
        generated = time.perf_counter() - start
        options = PostprocessOptions(center_threshold=0.5, nms_kernel=3, keep_k_centers=32,
                                     stuff_area_limit=0)
        predictor = VideoPredictor(oracle.OracleModel(), descriptor=SYNTHETIC,
                                   postprocess=options)
        rss: list[tuple[int, float]] = []

        def on_frame(done: int) -> None:
            if done == 1 or done % 1000 == 0:
                rss.append((done, process.memory_info().rss / 2**20))

        start = time.perf_counter()
        summary = predict_video.run_prediction(
            predictor, frames_dir,
            predict_video.Outputs(Path(tmp) / "out", vps=True, step=True, video_id="street"),
            progress=False, on_frame=on_frame, log=lambda m: None)
        seconds = time.perf_counter() - start
    assert summary["complete"] and summary["frames"] == num_frames

    command = "python scripts/benchmarks/soak.py" + (" --quick" if args.quick else "")
    print("## Soak: a long, busy video\n")
    print(f"Command: `{command}`; {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, jax {jax.__version__} ({jax.default_backend()})\n")
    print(f"{num_frames:,} generated frames at {height}x{width} (written as PNGs in "
          f"{generated:.0f} s): cars enter and leave all the time, {gt_tracks:,} car tracks in "
          "the ground truth. The oracle model (`tests/oracle.py`) reads the painted labels, so "
          "the run measures the predictor, the sequence stitcher and the VPS + STEP writers, "
          f"not a network. Result: {summary['tracks']:,} car tracks (track ids up to "
          f"{summary['tracks']:,}, label divisor {SYNTHETIC.label_divisor}), no id error, "
          f"{summary['frames'] / seconds:.1f} frames/s including compilation.\n")
    print("| frames done | resident memory (MB) |")
    print("|---:|---:|")
    for done, mb in rss:
        print(f"| {done:,} | {mb:.0f} |")
    first = next(mb for done, mb in rss if done >= min(1000, num_frames))
    print(f"\nGrowth from 1,000 to {rss[-1][0]:,} frames: {rss[-1][1] - first:+.1f} MB "
          f"(baseline: the 1,000-frame value, {first:.0f} MB).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
