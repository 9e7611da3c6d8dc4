"""Benchmark: where users wait -- start-up, frame rate, and frame rate against segments.

Measured on command lines, each in a fresh process, as a user runs them:

* `predict_video.py` on a 120-frame 768x576 clip (an image folder of generated street frames):
  time to the first written frame with an empty compilation cache (cold) and with the cache the
  cold run filled (warm), and frames per second after the first frame;
* frames per second at about 10, 100 and 400 segments per frame: the model runs at the frames'
  own 768x576 (no down-scaling), on frames tiled with 1, 5x5 or 8x8 generated street scenes, and
  the center threshold / NMS window are lowered for the densest case, so the model predicts
  that many segments (the table gives the number it actually predicted);
* start-up of `evaluate.py` (one video) and of a training run that resumes from its checkpoint
  and does one more step.

`--baseline-src DIR` runs the same commands with another source tree (e.g. an older commit
unpacked with `git archive`) and adds its rows, so before / after are measured in one run.
The model is a training workdir of `configs/synthetic.py` (`--workdir`; the demo's).

  .venv/bin/python scripts/benchmarks/startup.py [--workdir demo_out/workdir] [--quick] \
      [--baseline-src /tmp/vipdl_base]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_clip(folder: Path, num_frames: int, objects: int | None, seed: int) -> None:
    """Generated street frames at 768x576 (the synthetic world the demo model learned)."""
    from vipdl.data.synthetic import SyntheticConfig, generate_video

    if (folder / "DONE").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    kwargs = {} if objects is None else dict(min_objects=objects, max_objects=objects)
    config = SyntheticConfig(height=576, width=768, num_frames=num_frames, object_scale=0.6,
                             occlusion_probability=0.0, **kwargs)
    video = generate_video(config, seed)
    for t, frame in enumerate(video.frames):
        Image.fromarray(frame).save(folder / f"{t:04d}.png", compress_level=1)
    (folder / "DONE").write_text("ok")


# Segment conditions: (name, scenes per side, center threshold, NMS window).
SEGMENTS = (("segments10", 1, 0.4, 13), ("segments100", 5, 0.1, 13),
            ("segments400", 8, 0.01, 3))


def write_tiled_clip(folder: Path, num_frames: int, per_side: int, seed: int) -> None:
    """768x576 frames made of per_side x per_side generated street scenes (more objects the model
    can resolve at this size than one scene holds)."""
    from vipdl.data.synthetic import SyntheticConfig, generate_video

    if (folder / "DONE").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    th, tw = 576 // per_side, 768 // per_side
    frames = np.zeros((num_frames, 576, 768, 3), np.uint8)
    for i in range(per_side):
        for j in range(per_side):
            video = generate_video(SyntheticConfig(height=th, width=tw, num_frames=num_frames,
                                                   object_scale=0.6, min_objects=6,
                                                   max_objects=8), seed * 1000 + i * per_side + j)
            frames[:, i * th:(i + 1) * th, j * tw:(j + 1) * tw] = video.frames
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:04d}.png", compress_level=1)
    (folder / "DONE").write_text("ok")


def run_cli(src: Path, script: str, args: list[str], *, cache: Path | None, out: Path | None,
            frames: int = 0) -> dict:
    """Runs `scripts/<script>` of `src`; returns wall time, and the times at which the first and
    the last of `frames` VPS PNGs appeared under `out`'s parent (polled every 20 ms)."""
    env = dict(os.environ, PYTHONPATH=str(src), JAX_PLATFORMS="cpu")
    env["VIPDL_COMPILATION_CACHE"] = str(cache) if cache is not None else "0"
    # What scripts/<script> does: the CLI's main (run by module, the same in every tree).
    module = {"predict_video.py": "predict_video", "evaluate.py": "evaluate",
              "train.py": "train"}[script]
    argv0 = [f"vipdl-{module}"] if module == "train" else []
    code = (f"import sys; from vipdl.cli.{module} import main; "
            f"r = main({argv0 + list(args)!r}); sys.exit(r if isinstance(r, int) else 0)")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=src,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = last = None
    while proc.poll() is None:
        if out is not None and frames:
            # Old versions stage their outputs in a hidden sibling directory: look there too.
            count = sum(1 for _ in out.parent.glob("**/pan_pred/*.png"))
            now = time.perf_counter() - start
            if count >= 1 and first is None:
                first = now
            if count >= frames and last is None:
                last = now
        time.sleep(0.02)
    wall = time.perf_counter() - start
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{stderr[-3000:]}")
    return {"wall": wall, "first": first, "last": last, "stdout": stdout}


def predict(src: Path, workdir: Path, clip: Path, out: Path, cache: Path | None, frames: int,
            extra: list[str] = ()) -> dict:
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir(parents=True)
    r = run_cli(src, "predict_video.py",
                ["--workdir", str(workdir), "--input", str(clip), "--output", str(out),
                 "--no-progress", *extra], cache=cache, out=out, frames=frames)
    r["fps"] = (frames - 1) / (r["last"] - r["first"]) if r["last"] and r["first"] else None
    return r


def segments_per_frame(out: Path) -> float:
    pred = out / "vps" / "pred.json"
    annotations = json.loads(pred.read_text())["annotations"]
    return float(np.mean([len(a["segments_info"]) for a in annotations]))


def _measure_tree(name, src, workdir, clip, data, scratch, frames, measured) -> None:
    """Every measurement of one source tree (`measured` runs each one unless already done)."""
    cache = scratch / f"cache_{name}"
    out = scratch / "p" / "out"
    measured(name, "cold", lambda: predict(src, workdir, clip, out, cache, frames))
    measured(name, "warm", lambda: predict(src, workdir, clip, out, cache, frames))

    def segments(key, threshold, nms):
        config = scratch / f"config_{name}_{key}.py"
        # The model at the frames' size (577 x 769 = 768 x 576 padded to 32k + 1), up to 480
        # centers (below label_divisor / 2, as the pair stitcher needs).
        config.write_text(
            "from vipdl import checkpointing\n\n\ndef get_config(arg=None):\n"
            f"    c = checkpointing.load_config({str(workdir)!r})\n"
            "    c.data.eval_crop_size_hw = (577, 769)\n"
            f"    c.postprocess.center_threshold = {threshold}\n"
            f"    c.postprocess.nms_kernel = {nms}\n"
            "    c.postprocess.keep_k_centers = 480\n    return c\n")
        out = scratch / "s" / "out"
        try:
            res = predict(src, workdir, data / key, out, cache, 30,
                          ["--config", str(config), "--checkpoint", str(workdir)])
        except RuntimeError as e:  # e.g. the track-id ceiling of older code
            lines = [line for line in str(e).splitlines() if line.strip()]
            return {"error": lines[-1]}
        res["segments"] = segments_per_frame(out)
        return res

    for key, _, threshold, nms in SEGMENTS:
        measured(name, key, functools.partial(segments, key, threshold, nms))
    measured(name, "evaluate", lambda: run_cli(
        src, "evaluate.py", ["--workdir", str(workdir), "--max-videos", "1", "--no-progress"],
        cache=cache, out=None))

    def train():
        run_dir = scratch / f"train_{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(workdir, run_dir)
        steps = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir()
                       if p.name.isdigit())
        try:
            return run_cli(src, "train.py", [f"--config={src / 'configs' / 'synthetic.py'}",
                                             f"--workdir={run_dir}",
                                             f"--config.train.num_steps={steps[-1] + 1}",
                                             "--config.eval.mode=none"], cache=cache, out=None)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    measured(name, "train", train)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=str(ROOT / "demo_out" / "workdir"),
                        help="a configs/synthetic.py training run (default: the demo's)")
    parser.add_argument("--quick", action="store_true", help="a 30-frame clip")
    parser.add_argument("--baseline-src", help="another source tree to measure the same way")
    parser.add_argument("--frames", type=int, default=120, help="frames of the start-up clip")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "vipdl_startup_bench"))
    parser.add_argument("--results", help="keep measurements in this JSON file; a rerun skips "
                        "those already there")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames = 30
    workdir = Path(args.workdir).resolve()
    if not (workdir / "config.json").is_file():
        parser.error(f"{workdir} is not a training workdir; run `bash scripts/demo.sh` or pass "
                     "--workdir")
    data = Path(args.data_dir)
    trees = [("after", ROOT)]
    if args.baseline_src:
        trees.insert(0, ("before", Path(args.baseline_src).resolve()))
    clip = data / "clip120"
    write_clip(clip, args.frames, None, 0)
    for name, per_side, _, _ in SEGMENTS:
        write_tiled_clip(data / name, 30, per_side, per_side)
    results_file = Path(args.results) if args.results else None
    results: dict = json.loads(results_file.read_text()) if results_file and \
        results_file.is_file() else {}

    def measured(name: str, key: str, fn):
        r = results.setdefault(name, {})
        if key not in r:
            log(f"{name}: {key}")
            r[key] = {k: v for k, v in fn().items() if k != "stdout"}
            if results_file is not None:
                results_file.write_text(json.dumps(results, indent=1))
        return r[key]

    scratch = Path(tempfile.mkdtemp(prefix="vipdl_startup_"))
    try:
        for name, src in trees:
            _measure_tree(name, src, workdir, clip, data, scratch, args.frames, measured)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print("## Start-up and frame rate (`predict_video.py`, `evaluate.py`, training resume)\n")
    print(f"Command: `python scripts/benchmarks/startup.py --workdir W"
          f"{' --baseline-src B' if args.baseline_src else ''}`; {platform.platform()}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f} at the end.\n")
    print(f"Model: `configs/synthetic.py` trained in {workdir}. Clip: {args.frames} generated "
          "street frames at 768x576 as an image folder; default outputs (VPS layout + overlay "
          "mp4). Cold = empty compilation cache, warm = the cache the cold run filled.\n")
    print("| code | first frame, cold (s) | first frame, warm (s) | frames/s after the first "
          "| `evaluate.py`, 1 video (s) | resume training + 1 step (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['cold']['first']:.1f} | {r['warm']['first']:.1f} | "
              f"{r['warm']['fps']:.2f} | {r['evaluate']['wall']:.1f} | {r['train']['wall']:.1f} |")
    print("\nFrames/s after the first frame against segments per frame: the model at the "
          "frames' own 768x576, 30 frames each, warm cache, default outputs; frames tiled with "
          "1, 5x5 or 8x8 scenes, center threshold / NMS 0.4 / 13, 0.1 / 13 and 0.01 / 3:\n")
    print("| code | segments / frame (predicted) | frames/s | time per frame, ratio to the "
          "fewest segments |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        base = r["segments10"].get("fps")
        for key, _, _, _ in SEGMENTS:
            x = r[key]
            if "error" in x:
                print(f"| {name} | ({key[8:]}) | failed: {x['error']} | |")
                continue
            print(f"| {name} | {x['segments']:.0f} | {x['fps']:.2f} | {base / x['fps']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
