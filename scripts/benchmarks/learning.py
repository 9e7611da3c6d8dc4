"""Benchmark: the learning bar of the synthetic demo, ViP-DeepLab against a tracking-free baseline.

Trains, with the same data, steps, batch and schedule,
* ViP-DeepLab (`configs/synthetic.py`, the model `bash scripts/demo.sh` trains), and
* the baseline: per-frame Panoptic-DeepLab (`configs/synthetic.py:baseline`) whose per-frame
  panoptic maps are linked into tracks by the IoU tracker (`vipdl.postprocess.iou_tracker`),
then scores both on the held-out synthetic videos with the bundled evaluation
(`scripts/evaluate.py`: VPQ for windows k = 1..4 and STQ). A third row scores the ViP-DeepLab
model with its next-frame offsets ignored (IoU tracker on its frame-t panoptic maps), which
isolates what the next-frame branch and stitching add on the same weights.

Every run goes through the documented command lines in fresh processes:

  python scripts/train.py --config=configs/synthetic.py --workdir=W
  python scripts/evaluate.py --workdir W --out W/eval.json [--tracker iou]

  python scripts/benchmarks/learning.py            # the full demo budget (~17 min on 2 cores)
  python scripts/benchmarks/learning.py --quick    # 40 steps each: checks the plumbing only
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

from configs import synthetic  # noqa: E402

# The bar of issue 7: mean VPQ over k = 1..4 on held-out videos.
VPQ_BAR = 50.0
QUICK_STEPS = 40




def _train(root: str, name: str, config_arg: str, overrides: list[str]) -> tuple[str, float]:
    workdir = os.path.join(root, name)
    cmd = [sys.executable, "scripts/train.py", f"--config={config_arg}", f"--workdir={workdir}"]
    return workdir, run_logged(cmd + overrides, os.path.join(root, f"{name}_train.log"))


def _evaluate(root: str, workdir: str, name: str, tracker: str | None) -> dict:
    out = os.path.join(root, f"{name}_eval.json")
    cmd = [sys.executable, "scripts/evaluate.py", "--workdir", workdir, "--out", out,
           "--no-progress"] + (["--tracker", tracker] if tracker else [])
    seconds = run_logged(cmd, os.path.join(root, f"{name}_eval.log"))
    with open(out) as f:
        result = json.load(f)
    result["eval_seconds"] = seconds
    return result


def _annotated(stride: int) -> str:
    if stride == 1:
        return "every frame annotated"
    return f"every {({2: '2nd', 3: '3rd'}).get(stride, f'{stride}th')} frame annotated"


def _pct(x: float) -> str:
    # evaluate.py reports VPQ in percent (as the official script prints it), STQ as a fraction.
    return f"{x:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 steps each (plumbing check)")
    parser.add_argument("--workdir", default="", help="keep the runs here (default: temporary)")
    args = parser.parse_args()

    config = synthetic.get_config()
    overrides = []
    if args.quick:
        overrides = [f"--config.train.{field}={QUICK_STEPS}"
                     for field in ("num_steps", "eval_every_steps", "checkpoint_every_steps")]
    # The trainer's own periodic evaluation is not needed: evaluate.py scores the final weights.
    overrides += ["--config.eval.mode=none", "--config.train.image_every_steps=0"]
    root = args.workdir or tempfile.mkdtemp(prefix="vipdl_learning_")
    os.makedirs(root, exist_ok=True)
    try:
        vip_dir, vip_secs = _train(root, "vip", "configs/synthetic.py", overrides)
        base_dir, base_secs = _train(root, "baseline", "configs/synthetic.py:baseline", overrides)
        rows = [
            ("ViP-DeepLab, next-frame offsets + stitching", vip_secs,
             _evaluate(root, vip_dir, "vip", None)),
            ("Panoptic-DeepLab per frame + IoU tracker (baseline)", base_secs,
             _evaluate(root, base_dir, "baseline", None)),
            ("ViP-DeepLab weights, IoU tracker instead of stitching", vip_secs,
             _evaluate(root, vip_dir, "vip_iou", "iou")),
        ]
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)

    steps = QUICK_STEPS if args.quick else config.train.num_steps
    s = config.data.synthetic
    crop = "x".join(map(str, config.data.crop_size_hw))
    lines = [
        "## Learning bar (synthetic demo)",
        "",
        "Command: `python scripts/benchmarks/learning.py" + (" --quick" if args.quick else "")
        + "`  ",
        f"Machine: {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.machine()})  ",
        f"Training: {steps} steps of batch {config.data.batch_size} ({crop} crops) on "
        f"{s.num_train_videos} synthetic videos at {s.height}x{s.width} ({s.num_frames} raw "
        f"frames, {_annotated(s.annotation_stride)}: "
        f"{len(range(s.annotation_stride - 1, s.num_frames, s.annotation_stride))} frames a "
        f"video), object scale {s.object_scale}, seed {config.seed}; evaluation on the "
        f"{s.num_eval_videos} held-out videos (`scripts/evaluate.py`, whole videos, bundled "
        "VPQ / STQ).",
        "",
        "| model + tracking | train wall s | VPQ k=1 | k=2 | k=3 | k=4 | VPQ mean | "
        "VPQ things | VPQ stuff | STQ | AQ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, secs, r in rows:
        per_k = [r["per_k"][str(k)]["VPQ"] for k in range(4)]
        stq = r["STQ"]
        lines.append(
            f"| {name} | {secs:.0f} | " + " | ".join(_pct(v) for v in per_k)
            + f" | **{_pct(r['VPQ'])}** | {_pct(r['VPQ_th'])} | {_pct(r['VPQ_st'])} | "
            f"{_pct(100 * stq['STQ'])} | {_pct(100 * stq['AQ'])} |"
        )
    vip, base, vip_iou = rows[0][2], rows[1][2], rows[2][2]

    def gap(a, b, k):
        return a["per_k"][str(k - 1)]["VPQ"] - b["per_k"][str(k - 1)]["VPQ"]

    passed = vip["VPQ"] >= VPQ_BAR and gap(vip, base, 3) > 0 and gap(vip, base, 4) > 0
    lines += [
        "",
        f"Bar: ViP-DeepLab VPQ mean >= {VPQ_BAR:.0f} and above the baseline at k = 3 and 4: "
        + ("**met**" if passed else "**not met**")
        + f" (VPQ {_pct(vip['VPQ'])} vs baseline {_pct(base['VPQ'])}; ViP minus baseline "
        f"{gap(vip, base, 3):+.1f} at k=3, {gap(vip, base, 4):+.1f} at k=4). On the same ViP "
        f"weights, stitching with next-frame offsets instead of the IoU tracker adds "
        f"{gap(vip, vip_iou, 4):+.1f} VPQ at k=4.",
        "Wall times include process start and XLA compilation; both models run the same number "
        "of steps on the same batches. k = 1 scores single frames (no tracking), so its gap is the "
        "per-frame quality; the gap growing with k is the tracking.",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
