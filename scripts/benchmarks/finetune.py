"""Benchmark: fine-tuning on a custom dataset with another class set, against training from scratch.

The path of docs/datasets.md#custom, through the documented command lines in fresh processes:

  vipdl-make-synthetic --layout custom ...      (6 classes: ground, building, vegetation, sky,
                                                 person, vehicle; every 3rd frame labelled)
  vipdl-prepare-data --dataset custom ...
  scripts/train.py --config=configs/synthetic.py                 the source model: 8 classes
  scripts/train.py --config=configs/finetune_custom.py:model=synthetic \
      --config.init.checkpoint=SOURCE                            fine-tuned
  scripts/train.py --config=configs/finetune_custom.py:model=synthetic \
      --config.init.checkpoint= --config.optim.learning_rate=2e-3   same steps from scratch
  scripts/evaluate.py --workdir W --split val                    held-out custom videos

Scratch runs at the synthetic recipe's learning rate (the fine-tune's fifth would handicap it).

  python scripts/benchmarks/finetune.py                    # ~20 min on 2 cores
  python scripts/benchmarks/finetune.py --source demo_out/workdir   # reuse the demo's model
  python scripts/benchmarks/finetune.py --quick            # a few steps: plumbing only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _commands import run_logged  # noqa: E402  (scripts/benchmarks is on sys.path)

from configs import finetune_custom, synthetic  # noqa: E402

SOURCE_STEPS, STEPS, QUICK_STEPS = 500, 300, 10
TRAIN_VIDEOS, VAL_VIDEOS = 40, 8




def _steps(n: int) -> list[str]:
    return [f"--config.train.{f}={n}" for f in ("num_steps", "checkpoint_every_steps")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps each")
    parser.add_argument("--source", default="", help="source workdir (default: train one)")
    parser.add_argument("--workdir", default="", help="keep the runs here (default: temporary)")
    args = parser.parse_args()
    py = sys.executable
    source_steps = QUICK_STEPS if args.quick else SOURCE_STEPS
    steps = QUICK_STEPS if args.quick else STEPS
    world = synthetic.get_config().data.synthetic
    root = args.workdir or tempfile.mkdtemp(prefix="vipdl_finetune_")
    os.makedirs(root, exist_ok=True)
    raw, data_dir = os.path.join(root, "my_videos"), os.path.join(root, "my_videos_tfds")
    no_eval = ["--config.eval.mode=none", "--config.train.image_every_steps=0"]
    try:
        if not os.path.isdir(raw):
            run_logged([py, "scripts/make_synthetic.py", "--layout", "custom", "--out", raw,
                  "--train-videos", str(TRAIN_VIDEOS), "--val-videos", str(VAL_VIDEOS),
                  "--height", str(world.height), "--width", str(world.width),
                  "--frames", str(world.num_frames), "--annotation-stride",
                  str(world.annotation_stride), "--object-scale", str(world.object_scale),
                  "--seed", "101", "--no-progress"], os.path.join(root, "make.log"))
            run_logged([py, "scripts/prepare_data.py", "--dataset", "custom", "--manual_dir", raw,
                  "--data_dir", data_dir], os.path.join(root, "prepare.log"))
        source, source_secs = args.source, None
        if not source:
            source = os.path.join(root, "source")
            source_secs = run_logged([py, "scripts/train.py", "--config=configs/synthetic.py",
                                f"--workdir={source}", *_steps(source_steps), *no_eval],
                               os.path.join(root, "source_train.log"))
        rows = []
        for name, extra in (
            ("fine-tuned from the 8-class synthetic model", [f"--config.init.checkpoint={source}"]),
            ("from scratch", ["--config.init.checkpoint=", f"--config.optim.learning_rate="
                              f"{synthetic.get_config().optim.learning_rate}"]),
        ):
            workdir = os.path.join(root, name.split()[0].replace("-", "_"))
            secs = run_logged([py, "scripts/train.py",
                         "--config=configs/finetune_custom.py:model=synthetic",
                         f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
                         *_steps(steps), *no_eval, *extra],
                        os.path.join(root, f"{os.path.basename(workdir)}_train.log"))
            out = os.path.join(root, f"{os.path.basename(workdir)}_eval.json")
            run_logged([py, "scripts/evaluate.py", "--workdir", workdir, "--split", "val", "--out", out,
                  "--no-progress"], os.path.join(root, f"{os.path.basename(workdir)}_eval.log"))
            with open(out) as f:
                rows.append((name, secs, json.load(f)))
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)

    ft = finetune_custom.get_config("model=synthetic")
    lines = [
        "## Fine-tuning on a custom dataset",
        "",
        "Command: `python scripts/benchmarks/finetune.py" + (" --quick" if args.quick else "")
        + (f" --source {args.source}" if args.source else "") + "`  ",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.machine()})  ",
        f"Data: `vipdl-make-synthetic --layout custom`, {TRAIN_VIDEOS} train / {VAL_VIDEOS} "
        f"held-out videos at {world.height}x{world.width}, {world.num_frames} raw frames with "
        f"every {world.annotation_stride}rd labelled, in six classes (ground, building, "
        "vegetation, sky, person, vehicle) where the source model knows eight (road and "
        "sidewalk, car and bicycle are merged).  ",
        ("Source: " + (f"`{args.source}`" if args.source else
                       f"`configs/synthetic.py`, {source_steps} steps "
                       f"({source_secs:.0f} s) on the in-memory synthetic world")) + ".  ",
        f"Both runs: `configs/finetune_custom.py:model=synthetic`, {steps} steps of batch "
        f"{ft.data.batch_size}; fine-tuned at Adam {ft.optim.learning_rate:g} from the source "
        "(the warm start re-initialises the 8 -> 6 class semantic layer only), scratch at the "
        f"synthetic recipe's {synthetic.get_config().optim.learning_rate:g}. Scored with "
        "`scripts/evaluate.py --split val`; VPQ over windows of n = 1..4 annotated frames "
        f"(k = 0, {world.annotation_stride}, ... raw frames).",
        "",
        "| run | train wall s | VPQ n=1 | n=2 | n=3 | n=4 | VPQ mean | VPQ things | "
        "VPQ stuff | STQ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, secs, r in rows:
        per_k = [r["per_k"][k]["VPQ"] for k in sorted(r["per_k"], key=int)]
        lines.append(
            f"| {name} | {secs:.0f} | " + " | ".join(f"{v:.1f}" for v in per_k)
            + f" | **{r['VPQ']:.1f}** | {r['VPQ_th']:.1f} | {r['VPQ_st']:.1f} | "
            f"{100 * r['STQ']['STQ']:.1f} |"
        )
    gain = rows[0][2]["VPQ"] - rows[1][2]["VPQ"]
    lines += [
        "",
        f"Fine-tuning minus scratch: {gain:+.1f} VPQ after the same {steps} steps. Wall times "
        "include process start and XLA compilation.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
