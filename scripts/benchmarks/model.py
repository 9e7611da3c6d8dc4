"""Model benchmark: forward and forward+backward time, FLOPs and memory of ViP-DeepLab on CPU.

Runs the small demo model (resnet_tiny, batch 8 pairs at 128x256) and the reference R50-beta
ViP-DeepLab (batch 1 pair at 513x1025, depth head on), and prints a Markdown section:

* time per step (best of N) for eval-mode forward and train-mode forward+backward (loss =
  `vipdl.losses.compute_losses` on synthetic targets), with ratios fwd+bwd / fwd;
* XLA cost-analysis FLOPs against an analytic count of the convolution/matmul layers taken from
  the traced program (2 * output elements * kernel taps * input channels per group); the
  encoder's share (it runs on both frames) and the next-frame ASPP's share (4096 input
  channels) are reported separately;
* achieved FLOP/s as a fraction of the machine's measured float32 matmul peak (same run);
* XLA's memory estimate (arguments + outputs + temporaries) and the process peak RSS.

    .venv/bin/python scripts/benchmarks/model.py [--quick]

`--quick` times one iteration and skips the R50 backward pass (under ~2 minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vipdl import keys, losses  # noqa: E402
from vipdl.models import ModelConfig, ViPDeepLab, layers  # noqa: E402

# The demo configuration: tiny backbone, narrow decoders, same multi-scale wiring as R50.
SMALL_CONFIG = dict(
    backbone="resnet_tiny",
    aspp_channels=64,
    semantic_decoder_channels=64,
    semantic_head_channels=64,
    semantic_low_level_channels=(32, 16),
    instance_decoder_channels=32,
    instance_head_channels=32,
    instance_low_level_channels=(16, 8),
)
NUM_CLASSES = 19


def best_time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(repeats: int) -> float:
    """float32 FLOP/s of a 2048^3 matmul, the machine's practical compute ceiling."""
    n = 2048
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    return 2 * n**3 / best_time(f, a, repeats=max(repeats, 3))


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def _walk(jaxpr) -> float:
    flops = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            lhs, rhs = (v.aval for v in eqn.invars)
            out = eqn.outvars[0].aval
            dn = eqn.params["dimension_numbers"]
            spatial = [rhs.shape[d] for d in dn.rhs_spec[2:]]
            cin_per_group = rhs.shape[dn.rhs_spec[1]]
            flops += 2.0 * np.prod(out.shape) * np.prod(spatial) * cin_per_group
        elif name == "dot_general":
            lhs, rhs = (v.aval for v in eqn.invars)
            (contract, _), _ = eqn.params["dimension_numbers"]
            k = np.prod([lhs.shape[d] for d in contract])
            flops += 2.0 * np.prod(eqn.outvars[0].aval.shape) * k
        for sub in _subjaxprs(eqn):
            flops += _walk(sub)
    return flops


def analytic_flops(fn, *args) -> float:
    """FLOPs of the conv and matmul layers of `fn(*args)`, from the shapes in its jaxpr."""
    previous = layers.DEPTHWISE_USE_SHIFTS
    layers.DEPTHWISE_USE_SHIFTS = False  # trace depthwise convs as convolution primitives
    try:
        return _walk(jax.make_jaxpr(fn)(*args).jaxpr)
    finally:
        layers.DEPTHWISE_USE_SHIFTS = previous


def compile_with_stats(jitted, *args):
    """Compiles once; returns the executable, XLA's FLOP count and its memory estimate."""
    compiled = jitted.lower(*args).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    mem = compiled.memory_analysis()
    total = 0
    if mem is not None:
        total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    return compiled, float(cost.get("flops", float("nan"))), int(total)


def synthetic_batch(b: int, h: int, w: int, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    batch = {
        keys.GT_IMAGE: rng.uniform(0, 255, (b, h, w, 6)).astype(np.float32),
        keys.GT_SEMANTIC: rng.integers(0, NUM_CLASSES, (b, h, w)).astype(np.int32),
        keys.GT_SEMANTIC_WEIGHTS: np.ones((b, h, w), np.float32),
        keys.GT_CENTER_HEATMAP: rng.random((b, h, w)).astype(np.float32),
        keys.GT_CENTER_WEIGHTS: np.ones((b, h, w), np.float32),
        keys.GT_OFFSET: rng.normal(size=(b, h, w, 2)).astype(np.float32),
        keys.GT_OFFSET_WEIGHTS: np.ones((b, h, w), np.float32),
        keys.GT_NEXT_OFFSET: rng.normal(size=(b, h, w, 2)).astype(np.float32),
        keys.GT_NEXT_OFFSET_WEIGHTS: np.ones((b, h, w), np.float32),
        keys.GT_DEPTH: rng.uniform(0, 80, (b, h, w)).astype(np.float32),
    }
    return {k: jnp.asarray(v) for k, v in batch.items()}


@nnx.jit
def forward(model, images):
    return model(images)


@nnx.jit
def train_step(model, batch):
    def loss_fn(m):
        _, terms = losses.compute_losses(m(batch[keys.GT_IMAGE]), batch, ignore_label=255)
        return losses.reduce_losses(terms)[0]

    return nnx.value_and_grad(loss_fn)(model)


def bench_model(name, model, b, h, w, *, repeats, backward, peak):
    t0 = time.perf_counter()
    batch = synthetic_batch(b, h, w)
    images = batch[keys.GT_IMAGE]
    rows = {}
    model.eval()
    compiled, fwd_flops, fwd_mem = compile_with_stats(forward, model, images)
    fwd_time = best_time(compiled, model, images, repeats=repeats)
    rows["forward (eval)"] = (fwd_time, fwd_flops, fwd_mem)
    model.train()
    if backward:
        compiled, fb_flops, fb_mem = compile_with_stats(train_step, model, batch)
        fb_time = best_time(compiled, model, batch, repeats=repeats)
        rows["forward+backward (train)"] = (fb_time, fb_flops, fb_mem)

    # Analytic counts (per forward pass): whole model, shared encoder on both frames, next ASPP.
    model.eval()
    total = analytic_flops(lambda x: model(x), images)
    frames = jnp.zeros((2 * b, h, w, 3), jnp.float32)
    encoder = analytic_flops(lambda f: model.encoder(f), frames)
    res5 = jax.eval_shape(lambda f: model.encoder(f), frames[:b])["res5"]
    next_aspp_in = jnp.zeros(res5.shape[:3] + (2 * res5.shape[3],), jnp.float32)
    next_aspp = analytic_flops(lambda f: model.next_decoder.aspp(f), next_aspp_in)

    print(f"[{name}] done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    lines = [f"### {name}: batch {b} pairs at {h}x{w}", ""]
    lines.append(
        "| pass | time (s) | ratio to forward | XLA GFLOP | achieved GFLOP/s | "
        "fraction of matmul peak | XLA memory (MiB) |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for label, (t, flops, mem) in rows.items():
        lines.append(
            f"| {label} | {t:.3f} | {t / fwd_time:.2f} | {flops / 1e9:.1f} | "
            f"{flops / t / 1e9:.1f} | {flops / t / peak:.2f} | {mem / 2**20:.0f} |"
        )
    lines += [
        "",
        f"Analytic conv/matmul count of one forward: {total / 1e9:.1f} GFLOP "
        f"(XLA / analytic = {fwd_flops / total:.3f}); shared encoder on both frames "
        f"{encoder / 1e9:.1f} GFLOP ({encoder / total:.0%}); next-frame ASPP "
        f"({2 * res5.shape[3]} input channels) {next_aspp / 1e9:.1f} GFLOP "
        f"({next_aspp / total:.0%}).",
        "",
    ]
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, no R50 backward")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)

    peak = matmul_peak(repeats)
    out = [
        "## Model benchmark (`scripts/benchmarks/model.py`)",
        "",
        f"Command: `.venv/bin/python scripts/benchmarks/model.py{' --quick' if args.quick else ''}`",
        "",
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; Python "
        f"{platform.python_version()}, jax {jax.__version__}, backend {jax.default_backend()}. "
        f"Baseline: float32 matmul peak {peak / 1e9:.1f} GFLOP/s (2048^3, same run). "
        f"Times are the best of {repeats}.",
        "",
    ]
    small = ViPDeepLab(ModelConfig(NUM_CLASSES, use_depth=True, **SMALL_CONFIG), rngs=nnx.Rngs(0))
    out += bench_model(
        "Small demo model (resnet_tiny)",
        small,
        8,
        128,
        256,
        repeats=repeats,
        backward=True,
        peak=peak,
    )
    del small
    r50 = ViPDeepLab(ModelConfig(NUM_CLASSES, use_depth=True), rngs=nnx.Rngs(0))
    out += bench_model(
        "ViP-DeepLab R50-beta (reference config, depth on)",
        r50,
        1,
        513,
        1025,
        repeats=1,
        backward=not args.quick,
        peak=peak,
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.append(f"Process peak RSS: {rss:.0f} MiB.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
