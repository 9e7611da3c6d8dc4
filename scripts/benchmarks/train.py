"""Benchmark: training speed and the overhead of the training loop, on this machine's devices.

Prints a Markdown section with
* steps/s and examples/s of the jitted train step (forward, backward, Adam update) for the
  synthetic default config (`configs/synthetic.py`, the demo recipe) and for R50-beta
  ViP-DeepLab with depth at 513x1025 (the Cityscapes-DVPS recipe, batch 1 on CPU; `--quick`
  uses a 129x257 crop), with the synthetic step as the baseline of the ratios, and peak
  resident memory after each, and the FLOP utilisation: XLA's FLOP count of the compiled step
  divided by its time, against the FLOP/s of a large float32 matmul measured in the same run
  (the practical peak of this machine's devices);
* the loop overhead: seconds per step inside `train_and_evaluate` (data loading, global batch
  assembly, metric logging, checkpoints, preemption checks) against the bare step measured in
  the same run, with logging/checkpoints every step ("busy") and every 25 steps ("normal").

Compile time is excluded (each measurement runs after a warm-up). Weights are random and data is
synthetic; speed does not depend on either.

  .venv/bin/python scripts/benchmarks/train.py            # R50 at 513x1025 (minutes on CPU)
  .venv/bin/python scripts/benchmarks/train.py --quick    # < 2 minutes
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from flax import nnx  # noqa: E402

from configs import synthetic, vip_deeplab_cityscapes_dvps_r50  # noqa: E402
from vipdl import from_config, parallel, trainer  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _matmul_flops_per_sec(n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of an n x n float32 matmul: the practical peak the step is compared with."""
    x = jax.random.normal(jax.random.key(0), (n, n), jax.numpy.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(x))
    tic = time.perf_counter()
    for _ in range(reps):
        y = f(x)
    jax.block_until_ready(y)
    return 2 * n**3 * reps / (time.perf_counter() - tic)


def _bare_step(config, steps: int) -> tuple[float, float, float]:
    """Seconds per jitted step on one fixed global batch (after one warm-up step), peak RSS MB
    and XLA's FLOP count of the compiled step."""
    mesh = parallel.create_mesh(config.mesh.data, config.mesh.fsdp)
    with jax.set_mesh(mesh):
        tx, schedule = from_config.optimizer(config)
        model, optimizer = trainer.make_sharded_init(
            lambda: from_config.create_model(config, rngs=nnx.Rngs(config.seed)), tx, mesh
        )()
        train_step = trainer.make_train_step(
            trainer.make_loss_fn(config),
            schedule,
            grad_accum_steps=config.optim.grad_accum_steps,
            mesh=mesh,
            model_shardings=trainer.shardings_of(model),
            optimizer_shardings=trainer.shardings_of(optimizer),
        )
        batch = parallel.make_global_batch(
            next(from_config.train_iterator(config, mesh)), parallel.batch_sharding(mesh)
        )
        # Compiled ahead of time once: the same executable gives the FLOP count and is timed.
        step = train_step.lower(model, optimizer, batch).compile()
        cost = step.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost.get("flops", float("nan")))
        model, optimizer, metrics = step(model, optimizer, batch)
        jax.block_until_ready(metrics)
        tic = time.perf_counter()
        for _ in range(steps):
            model, optimizer, metrics = step(model, optimizer, batch)
        jax.block_until_ready(metrics)
        seconds = (time.perf_counter() - tic) / steps
    return seconds, _peak_rss_mb(), flops


def _loop_seconds_per_step(config, workdir: str) -> tuple[float, dict]:
    """Wall seconds per step of a complete `train_and_evaluate` run (compiled programs from the persistent cache)."""
    shutil.rmtree(workdir, ignore_errors=True)
    tic = time.perf_counter()
    metrics = trainer.train_and_evaluate(config, workdir)
    return (time.perf_counter() - tic) / config.train.num_steps, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 2 minutes")
    args = parser.parse_args()
    command = "python scripts/benchmarks/train.py" + (" --quick" if args.quick else "")

    # Synthetic default: the CPU demo recipe, synthetic in-memory data.
    synth = synthetic.get_config()
    synth.eval.mode = "none"
    synth.train.image_every_steps = 0
    synth.data.synthetic.num_train_videos = 8
    synth.train.num_steps = 12 if args.quick else 50
    steps = 3 if args.quick else 10
    peak = _matmul_flops_per_sec()
    synth_secs, synth_rss, synth_flops = _bare_step(synth, steps)

    # R50-beta ViP-DeepLab with depth (Cityscapes-DVPS recipe) on synthetic frames.
    r50 = vip_deeplab_cityscapes_dvps_r50.get_config()
    r50.data.dataset = "synthetic"
    r50.data.data_dir = ""
    r50.data.batch_size = jax.device_count()
    crop = (129, 257) if args.quick else (513, 1025)
    r50.data.crop_size_hw = crop
    r50.data.synthetic.height, r50.data.synthetic.width = crop[0] - 1, crop[1] - 1
    r50.data.synthetic.num_train_videos = 1
    r50.data.synthetic.num_frames = 2
    r50_secs, r50_rss, r50_flops = _bare_step(r50, 1 if args.quick else 2)

    # Loop overhead on the synthetic config: every step logs and checkpoints ("busy") vs the
    # default-ish cadence ("normal").
    root = tempfile.mkdtemp(prefix="vipdl_train_bench_")
    busy = synth.copy_and_resolve_references()
    busy.train.log_every_steps = 1
    busy.train.checkpoint_every_steps = 1
    normal = synth.copy_and_resolve_references()
    normal.train.log_every_steps = 25
    normal.train.checkpoint_every_steps = 25
    if not args.quick:  # Warms the data pipeline's caches (synthetic videos are generated lazily).
        _loop_seconds_per_step(normal, os.path.join(root, "warmup"))
    normal_secs, normal_metrics = _loop_seconds_per_step(normal, os.path.join(root, "normal"))
    busy_secs, busy_metrics = _loop_seconds_per_step(busy, os.path.join(root, "busy"))
    shutil.rmtree(root, ignore_errors=True)

    b = synth.data.batch_size
    rb = r50.data.batch_size
    print("## Training speed (`scripts/benchmarks/train.py`)\n")
    print(f"Command: `{command}`  ")
    print(
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {jax.device_count()} {jax.default_backend()} device(s), "
        f"jax {jax.__version__}\n"
    )
    print(
        "| model | crop | global batch | s/step | steps/s | examples/s | step time vs synthetic "
        "| GFLOP / step | GFLOP/s | FLOP utilisation | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| synthetic default (ResNet-tiny w16, OS16) | {tuple(synth.data.crop_size_hw)} | {b} | "
        f"{synth_secs:.3f} | {1 / synth_secs:.2f} | {b / synth_secs:.1f} | 1.00x (baseline) | "
        f"{synth_flops / 1e9:.1f} | {synth_flops / synth_secs / 1e9:.1f} | "
        f"{100 * synth_flops / synth_secs / peak:.0f}% | {synth_rss:.0f} |"
    )
    print(
        f"| R50-beta ViP-DeepLab + depth | {crop} | {rb} | {r50_secs:.3f} | {1 / r50_secs:.3f} | "
        f"{rb / r50_secs:.2f} | {r50_secs / synth_secs:.1f}x | {r50_flops / 1e9:.1f} | "
        f"{r50_flops / r50_secs / 1e9:.1f} | {100 * r50_flops / r50_secs / peak:.0f}% | "
        f"{r50_rss:.0f} |"
    )
    print(
        f"\nFLOP utilisation = (XLA cost-analysis FLOPs of the compiled step / s per step) / "
        f"{peak / 1e9:.1f} GFLOP/s, the rate of a 2048 x 2048 float32 matmul measured in the same "
        "run (this machine's practical peak; on TPU/GPU the vendor peak is the usual reference)."
    )
    print("\nLoop overhead (synthetic default, `train_and_evaluate`, compiled programs reused):\n")
    print("| cadence | s/step in loop | bare step | overhead share | data wait share |")
    print("|---|---|---|---|---|")
    for name, secs, metrics in (
        ("log + checkpoint every 25 steps", normal_secs, normal_metrics),
        ("log + checkpoint every step", busy_secs, busy_metrics),
    ):
        share = max(secs - synth_secs, 0.0) / secs
        print(
            f"| {name} | {secs:.3f} | {synth_secs:.3f} | {100 * share:.0f}% | "
            f"{100 * metrics.get('perf/data_wait_fraction', float('nan')):.0f}% |"
        )
    print(
        "\nOverhead share = (loop s/step - bare s/step) / loop s/step; it includes run start-up "
        "(writer, mesh, state init, pipeline) amortised over "
        f"{synth.train.num_steps} steps. Data wait share = time in `next(iterator)` + global batch "
        "assembly over wall time of the last logging window."
    )


if __name__ == "__main__":
    main()
