"""Benchmark: streaming video inference (vipdl.inference.VideoPredictor) on CPU.

Prints a Markdown section with
* frames per second split into model / post-processing / stitching, for R50 ViP-DeepLab at
  1024x2048 (padded to 1025x2049; the quick variant: a tiny model at 128x256);
* end-to-end frames per second of the streaming predictor (each frame encoded once, one device
  call per frame, host stitching overlapped with the next device call) against a baseline
  measured in the same run: the reference sequence runner (deeplab2 `ViP_DeepLab_Demo`), which
  runs the full pair model on (t, t+1) and on (t+1, t) for every pair -- four encoder passes per
  frame -- and waits for each result;
* resident memory over a long synthetic video (1000 frames; quick: 300) with a tiny model,
  against keeping every prediction (what a list-returning API does).

Weights are random: speed and memory do not depend on them, except that post-processing and
stitching time grows with the number of predicted segments.

  .venv/bin/python scripts/benchmarks/inference.py            # R50 at 1024x2048 (minutes)
  .venv/bin/python scripts/benchmarks/inference.py --quick    # tiny model, < 2 minutes
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil
from flax import nnx

from vipdl import video_io
from vipdl.data.descriptors import CITYSCAPES_DVPS, SYNTHETIC
from vipdl.inference import VideoPredictor
from vipdl.models import ModelConfig, ViPDeepLab, aspp_pool_size
from vipdl.postprocess import PostprocessOptions, two_frame
from vipdl.postprocess.panoptic import panoptic_from_predictions
from vipdl.postprocess.stitching import VideoStitcher

TINY = dict(
    backbone="resnet_tiny", backbone_width=8, backbone_blocks=(1, 1, 1, 1), output_stride=32,
    aspp_rates=(1, 2, 3), aspp_channels=16, semantic_decoder_channels=16,
    semantic_head_channels=16, semantic_low_level_channels=(8, 8), instance_decoder_channels=16,
    instance_head_channels=8, instance_low_level_channels=(8, 8),
)


def moving_boxes(num_frames: int, height: int, width: int, seed: int = 0):
    """Frames generated on the fly (never the whole video): textured background, moving boxes."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    boxes = [(rng.integers(0, height // 2), rng.integers(0, width), rng.integers(-3, 4),
              rng.integers(height // 8, height // 3), rng.integers(width // 16, width // 6),
              rng.integers(0, 256, 3)) for _ in range(8)]
    for t in range(num_frames):
        frame = np.roll(background, t, axis=1)
        for y, x, v, h, w, colour in boxes:
            x0 = (x + v * t) % width
            frame[y : y + h, x0 : x0 + w] = colour
        yield frame


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_model(kind: str) -> tuple[ViPDeepLab, object, tuple[int, int]]:
    if kind == "r50":
        model = ViPDeepLab(ModelConfig(CITYSCAPES_DVPS.num_classes, use_depth=True,
                                       aspp_pool_size_hw=aspp_pool_size((513, 1025), 32)),
                           rngs=nnx.Rngs(0))
        return model, CITYSCAPES_DVPS, (1025, 2049)
    return ViPDeepLab(ModelConfig(SYNTHETIC.num_classes, **TINY), rngs=nnx.Rngs(0)), SYNTHETIC, None


def post_options(descriptor, small: bool) -> dict:
    return dict(thing_ids=descriptor.thing_ids, label_divisor=descriptor.label_divisor,
                ignore_label=descriptor.ignore_label,
                options=PostprocessOptions(center_threshold=0.1, nms_kernel=7 if small else 13,
                                           keep_k_centers=64 if small else 400,
                                           stuff_area_limit=64 if small else 2048))


def timed_per_frame(fn, n: int) -> float:
    fn()  # Compile / warm up.
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def stage_times(model, descriptor, frames: list[np.ndarray], crop, small: bool, repeats: int):
    """Seconds per frame of the model, the device post-processing and the host stitching."""
    opts = post_options(descriptor, small)
    geometry = video_io.compute_geometry(frames[0].shape[:2], crop)
    hw = geometry.padded_hw
    x = jnp.stack([jnp.asarray(video_io.frame_to_model_input_np(f, geometry)) for f in frames[:2]])
    graphdef, state = nnx.split(model)

    @jax.jit
    def model_step(state, prev_features, frame):
        # Streaming cost of one new frame: encode it, decode it, decode the pair's next offsets.
        m = nnx.merge(graphdef, state)
        features = m.encode(frame)
        return m.decode_frame(features, hw), m.decode_next(prev_features, features, hw), features

    @jax.jit
    def post(decoded_t, decoded_t1, next_offsets):
        def one(a, b, n):
            p, c = two_frame.two_frame_panoptic(a, b, n, **opts)
            standalone = panoptic_from_predictions(
                b["semantic_logits"], b["center_heatmap"], b["offset_map"], **opts)
            return p, c, standalone
        return jax.vmap(one)(decoded_t, decoded_t1, next_offsets)

    model.eval()
    features0 = jax.jit(lambda s, f: nnx.merge(graphdef, s).encode(f))(state, x[:1])
    out = model_step(state, features0, x[1:2])
    t_model = timed_per_frame(lambda: jax.block_until_ready(model_step(state, features0, x[1:2])),
                              repeats)
    decoded, next_offsets, _ = out
    t_post = timed_per_frame(lambda: jax.block_until_ready(post(decoded, decoded, next_offsets)),
                             repeats)
    p, c, s = (np.asarray(a)[0] for a in post(decoded, decoded, next_offsets))
    stitcher = VideoStitcher(thing_ids=descriptor.thing_ids, label_divisor=descriptor.label_divisor,
                             ignore_label=descriptor.ignore_label)
    t_stitch = timed_per_frame(lambda: stitcher.update(p, c, s), repeats)
    segments = len(np.unique(s))
    return t_model, t_post, t_stitch, segments


def reference_runner_fps(model, descriptor, frames, crop, small: bool) -> float:
    """The notebook's loop: full pair model on (t, t+1) and (t+1, t), a host sync per pair."""
    opts = post_options(descriptor, small)
    geometry = video_io.compute_geometry(frames[0].shape[:2], crop)
    graphdef, state = nnx.split(model)
    @jax.jit
    def pair(state, a, b):
        m = nnx.merge(graphdef, state)
        r = m(jnp.concatenate([a, b], -1))
        r1 = m(jnp.concatenate([b, a], -1))

        def one(rt, rt1):
            p, c = two_frame.two_frame_panoptic(rt, rt1, rt["next_offset_map"], **opts)
            s = panoptic_from_predictions(rt1["semantic_logits"], rt1["center_heatmap"],
                                          rt1["offset_map"], **opts)
            return p, c, s
        return jax.vmap(one)(r, r1)

    stitcher = VideoStitcher(thing_ids=descriptor.thing_ids, label_divisor=descriptor.label_divisor,
                             ignore_label=descriptor.ignore_label)
    inputs = [jnp.asarray(video_io.frame_to_model_input_np(f, geometry))[None] for f in frames]
    jax.block_until_ready(pair(state, inputs[0], inputs[1]))  # Compile.
    start = time.perf_counter()
    rh, rw = geometry.resized_hw
    for t in range(len(inputs) - 1):
        p, c, s = (np.asarray(a)[0, :rh, :rw] for a in pair(state, inputs[t], inputs[t + 1]))
        stitcher.update(p, c, s)
    return (len(inputs) - 1) / (time.perf_counter() - start)


def predictor_fps(predictor, frames) -> float:
    list(predictor.predict(frames[:2]))  # Compile.
    start = time.perf_counter()
    n = sum(1 for _ in predictor.predict(frames))
    return n / (time.perf_counter() - start)


def memory_curve(predictor, num_frames: int, hw, keep: bool) -> list[tuple[int, float]]:
    """RSS (MB) after every 10% of a lazily generated video; `keep` stores every prediction."""
    process = psutil.Process()
    list(predictor.predict(moving_boxes(3, *hw)))  # Compile outside the measurement.
    kept, curve = [], []
    marks = {max(1, num_frames * k // 10) for k in range(1, 11)}
    for pred in predictor.predict(moving_boxes(num_frames, *hw, seed=1)):
        if keep:
            kept.append(pred)
        if pred.index + 1 in marks:
            curve.append((pred.index + 1, process.memory_info().rss / 2**20))
    return curve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, small frames")
    args = parser.parse_args(argv)
    quick = args.quick
    kind = "tiny" if quick else "r50"
    hw = (128, 256) if quick else (1024, 2048)
    num_frames = 8 if quick else 4
    repeats = 5 if quick else 2
    mem_frames = 150 if quick else 1000
    mem_hw = (128, 256)

    wall = time.perf_counter()
    model, descriptor, crop = make_model(kind)
    frames = list(moving_boxes(num_frames, *hw))
    t_model, t_post, t_stitch, segments = stage_times(model, descriptor, frames, crop, quick,
                                                      repeats)
    log(f"stages: model {t_model:.3f} s, post {t_post:.3f} s, stitching {t_stitch:.4f} s")
    predictor = VideoPredictor(model, descriptor=descriptor, eval_crop_size_hw=crop,
                               postprocess=post_options(descriptor, quick)["options"])
    fps = predictor_fps(predictor, frames)
    log(f"predictor: {fps:.3f} frames/s")
    base_fps = reference_runner_fps(model, descriptor, frames, crop, quick)
    log(f"reference runner: {base_fps:.3f} frames/s")

    tiny, tiny_descriptor, _ = make_model("tiny") if not quick else (model, descriptor, None)
    mem_predictor = VideoPredictor(tiny, descriptor=tiny_descriptor,
                                   postprocess=post_options(tiny_descriptor, True)["options"])
    streaming = memory_curve(mem_predictor, mem_frames, mem_hw, keep=False)
    keeping = memory_curve(mem_predictor, mem_frames, mem_hw, keep=True)

    command = "python scripts/benchmarks/inference.py" + (" --quick" if quick else "")
    total = 1.0 / (t_model + t_post + t_stitch)
    print("## Video inference (`vipdl.inference`)\n")
    print(f"Command: `{command}`; {platform.platform()}, {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, jax {jax.__version__} "
          f"({jax.default_backend()}); random weights; total {time.perf_counter() - wall:.0f} s.\n")
    name = "ViP-DeepLab R50-beta (depth)" if kind == "r50" else "ViP-DeepLab tiny ResNet"
    size = f"{hw[0]}x{hw[1]}" + (f" padded to {crop[0]}x{crop[1]}" if crop else "")
    print(f"**Per-frame stages**, {name}, {size}, batch 1 ({segments} segments per frame):\n")
    print("| stage | s / frame | frames / s | share |")
    print("|---|---:|---:|---:|")
    for label, t in (("model (encode + decode + next-offset decode)", t_model),
                     ("post-processing (2-frame canvas + standalone, device)", t_post),
                     ("stitching (pair + sequence, host numpy)", t_stitch)):
        print(f"| {label} | {t:.4f} | {1 / t:.2f} | {t * total:.0%} |")
    print(f"| sum of stages | {1 / total:.4f} | {total:.2f} | 100% |\n")
    print("**End to end** (frames / s over the clip, compile excluded):\n")
    print("| runner | frames / s | ratio |")
    print("|---|---:|---:|")
    print(f"| reference pair runner (4 encodes / frame, sync per pair) | {base_fps:.3f} | 1.00 |")
    print(f"| `VideoPredictor` (1 encode / frame, pipelined) | {fps:.3f} | "
          f"{fps / base_fps:.2f} |\n")
    print(f"**Resident memory** (MB) over a {mem_frames}-frame generated video at "
          f"{mem_hw[0]}x{mem_hw[1]}, tiny model:\n")
    print("| frames | streaming (`predict`) | keeping every prediction |")
    print("|---:|---:|---:|")
    for (n, a), (_, b) in zip(streaming, keeping):
        print(f"| {n} | {a:.0f} | {b:.0f} |")
    growth = streaming[-1][1] - streaming[0][1]
    kept_growth = keeping[-1][1] - keeping[0][1]
    print(f"\nGrowth from {streaming[0][0]} to {streaming[-1][0]} frames: streaming "
          f"{growth:+.1f} MB, keeping predictions {kept_growth:+.1f} MB.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
