"""Benchmark: exported models (vipdl.export) against the live model, on CPU.

Prints a Markdown section with
* frames per second of `VideoPredictor` on a generated video: the live model (baseline, each
  frame encoded once) against `VideoPredictor.from_export` on the StableHLO export (each pair
  encodes both of its frames) at batch 1 and 4, same host stitching, compile excluded;
* pairs per second of the bare exported pair step: StableHLO through jax, and the TF SavedModel
  through `serving_default` in TensorFlow (no stitching);
* export time and artifact size against the size of the float32 weights.

The model is the synthetic demo's (`configs/synthetic.py`, ResNet-tiny, 128x256 frames padded
to 129x257) with random weights: speed does not depend on the weights except through the number
of predicted segments. `--quick`: the `runlocal` model at 64x96.

  .venv/bin/python scripts/benchmarks/export.py            # a few minutes on 2 cores
  .venv/bin/python scripts/benchmarks/export.py --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from configs import synthetic
from vipdl import export, from_config
from vipdl.data.synthetic import SyntheticConfig, generate_video
from vipdl.export_runtime import ExportedPairStep
from vipdl.inference import VideoPredictor


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def video_rate(predictor: VideoPredictor, frames: np.ndarray, repeats: int
               ) -> tuple[float, float]:
    """(frames / s of wall time, CPU ms / frame of this process), best of `repeats`.

    CPU time (all threads) is the work done; it is robust to other load on the machine, which
    only stretches wall time.
    """
    list(predictor.predict(frames[:5]))  # Compile (one full batch at batch size <= 4).
    best_fps, best_cpu = 0.0, float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        n = sum(1 for _ in predictor.predict(frames))
        best_fps = max(best_fps, n / (time.perf_counter() - wall))
        best_cpu = min(best_cpu, 1000 * (time.process_time() - cpu) / n)
    return best_fps, best_cpu


def pair_rate(call, frames_t: np.ndarray, frames_t1: np.ndarray, calls: int
              ) -> tuple[float, float]:
    """(pairs / s of wall time, CPU ms / pair)."""
    call(frames_t, frames_t1)  # Compile.
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        call(frames_t, frames_t1)
    n = calls * len(frames_t)
    return n / (time.perf_counter() - wall), 1000 * (time.process_time() - cpu) / n


def size_mib(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="runlocal model, 64x96 frames")
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    config = synthetic.get_config("runlocal" if args.quick else None)
    hw = (64, 96) if args.quick else (128, 256)
    num_frames, repeats = (8, 2) if args.quick else (24, 3)
    model = from_config.create_model(config, rngs=nnx.Rngs(0))
    descriptor = from_config.descriptor(config)
    crop = from_config.eval_crop_size_hw(config)
    options = from_config.postprocess_options(config)
    stride = from_config.model_config(config).output_stride
    frames = generate_video(SyntheticConfig(height=hw[0], width=hw[1], num_frames=num_frames),
                            0).frames
    weights_mib = sum(np.asarray(w).size * 4 for w in
                      jax.tree.leaves(nnx.state(model, (nnx.Param, nnx.BatchStat)))) / 2**20

    live = {b: video_rate(VideoPredictor(model, descriptor=descriptor, eval_crop_size_hw=crop,
                                         postprocess=options, output_stride=stride,
                                         batch_size=b), frames, repeats) for b in (1, 4)}
    log(f"live: {live}")

    root = Path(tempfile.mkdtemp(prefix="vipdl_export_bench_"))
    common = dict(descriptor=descriptor, frame_hw=hw, eval_crop_size_hw=crop,
                  output_stride=stride, postprocess=options)
    start = time.perf_counter()
    export.export(model, root / "stablehlo", **common)
    shlo_seconds = time.perf_counter() - start
    start = time.perf_counter()
    export.export(model, root / "saved_model", format="saved_model", batch=1, **common)
    tf_seconds = time.perf_counter() - start
    log(f"exports: StableHLO {shlo_seconds:.1f} s, SavedModel {tf_seconds:.1f} s")

    exported = {b: video_rate(VideoPredictor.from_export(root / "stablehlo", batch_size=b),
                              frames, repeats) for b in (1, 4)}
    log(f"exported predictor: {exported}")
    step = ExportedPairStep.load(root / "stablehlo")
    calls = 8 if args.quick else 16
    shlo_pairs = pair_rate(lambda a, b: jax.block_until_ready(step(a, b)),
                           frames[:1], frames[1:2], calls)

    import tensorflow as tf

    serve = tf.saved_model.load(str(root / "saved_model")).signatures["serving_default"]
    tf_pairs = pair_rate(lambda a, b: serve(frame_t=tf.constant(a), frame_t1=tf.constant(b)),
                         frames[:1], frames[1:2], calls)
    log(f"pair step: StableHLO {shlo_pairs}, TF {tf_pairs}")

    shlo_mib = size_mib(root / "stablehlo" / "model.stablehlo")
    tf_mib = size_mib(root / "saved_model")
    name = "runlocal (ResNet-tiny w4)" if args.quick else "synthetic demo (ResNet-tiny w16, OS16)"
    command = "python scripts/benchmarks/export.py" + (" --quick" if args.quick else "")
    print("## Export (`vipdl.export`)\n")
    print(f"Command: `{command}`; {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, jax {jax.__version__}, tensorflow {tf.__version__} "
          f"({jax.default_backend()}); model: {name}, random weights, frames "
          f"{hw[0]}x{hw[1]} (model input {crop[0]}x{crop[1]}); load average during the run "
          f"{os.getloadavg()[0]:.1f}; total {time.perf_counter() - wall:.0f} s.\n")
    print(f"**Video prediction**, {num_frames} frames, best of {repeats}, compile excluded, "
          "same host stitching. CPU ms / frame counts all threads of the process and is robust "
          "to other load on the machine; wall-clock frames / s is not:\n")
    print("| runner | frames / s | CPU ms / frame | CPU ratio to live batch 1 |")
    print("|---|---:|---:|---:|")
    base = live[1][1]
    for b, (fps, cpu) in live.items():
        print(f"| live `VideoPredictor` (batch {b}, 1 encode / frame) | {fps:.2f} | {cpu:.0f} | "
              f"{cpu / base:.2f} |")
    for b, (fps, cpu) in exported.items():
        print(f"| `VideoPredictor.from_export`, StableHLO (batch {b}, 2 encodes / frame) | "
              f"{fps:.2f} | {cpu:.0f} | {cpu / base:.2f} |")
    print("\n**Bare pair step** (one pair per call, no stitching):\n")
    print("| runtime | pairs / s | CPU ms / pair | CPU ratio to StableHLO in jax |")
    print("|---|---:|---:|---:|")
    print(f"| StableHLO, `jax.export` in jax | {shlo_pairs[0]:.2f} | {shlo_pairs[1]:.0f} | 1.00 |")
    print(f"| SavedModel `serving_default` in TensorFlow | {tf_pairs[0]:.2f} | "
          f"{tf_pairs[1]:.0f} | {tf_pairs[1] / shlo_pairs[1]:.2f} |")
    print("\n**Artifacts** (weights as float32: "
          f"{weights_mib:.1f} MiB):\n")
    print("| format | export time (s) | size (MiB) | size / weights |")
    print("|---|---:|---:|---:|")
    print(f"| StableHLO (`model.stablehlo`, weights inside) | {shlo_seconds:.1f} | "
          f"{shlo_mib:.1f} | {shlo_mib / weights_mib:.2f} |")
    print(f"| SavedModel (directory, weights as variables) | {tf_seconds:.1f} | {tf_mib:.1f} | "
          f"{tf_mib / weights_mib:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
