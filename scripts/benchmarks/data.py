"""Benchmark: training-pair preprocessing (validate + augment + targets) per CPU core.

Prints a Markdown section: seconds and pairs/s per core of the per-example work of
`vipdl.data.pipeline.make_train_loader` for Cityscapes-sized frames (1024 x 2048, crop 513 x 1025)
and for the synthetic default (128 x 256, crop 129 x 257), against a baseline measured in the same
run (resize the whole frame, pad, crop, flip, then the loop-based `make_targets_reference`), plus
the host cores a TPU v4-8 would need at batch 16 and 0.5 s/step, and grain loader throughput.

Usage: .venv/bin/python scripts/benchmarks/data.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
import tracemalloc

import numpy as np

from vipdl import keys
from vipdl.data import augment, descriptors, pipeline, synthetic, targets

CITYSCAPES = descriptors.CITYSCAPES_DVPS
STEP_SECONDS, GLOBAL_BATCH = 0.5, 16


def cityscapes_like_pair(rng: np.random.Generator, height: int, width: int) -> dict:
    """A pair with Cityscapes-like content: stuff bands, ~40 instances, crowd, void, depth."""
    d = CITYSCAPES.label_divisor
    rows = np.arange(height)[:, None]
    pan = np.where(rows < height * 0.35, 10 * d, np.where(rows < height * 0.55, 2 * d, 0))
    pan = np.broadcast_to(pan, (height, width)).astype(np.int32).copy()
    pan[int(height * 0.9) :, : width // 3] = CITYSCAPES.void_label  # ego vehicle
    yy, xx = np.mgrid[0:height, 0:width]
    instances = []
    for k in range(40):
        cls = int(rng.choice(CITYSCAPES.thing_ids))
        h = int(rng.integers(height // 40, height // 4))
        w = int(h * rng.uniform(0.4, 2.5))
        y, x = int(rng.integers(height // 3, height - h // 2)), int(rng.integers(0, width))
        instances.append((cls * d + (k + 1 if k % 10 else 0), y, x, h, w))  # every 10th: crowd

    def draw(shift: int) -> np.ndarray:
        label = pan.copy()
        for value, y, x, h, w in instances:
            cy, cx = y, x + shift * (value % 7 - 3)
            sl = (slice(max(y - h // 2, 0), y + h // 2), slice(max(cx - w // 2, 0), cx + w // 2))
            ys, xs = yy[sl], xx[sl]
            mask = ((ys - cy) / (h / 2)) ** 2 + ((xs - cx) / (w / 2)) ** 2 <= 1
            label[sl][mask] = value
        return label

    def image(label: np.ndarray) -> np.ndarray:
        base = (label // d * 37 % 200 + label % d * 11 % 50).astype(np.float32)
        noise = rng.normal(0, 8, (height, width, 3)).astype(np.float32)
        return np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)

    panoptic, next_panoptic = draw(0), draw(6)
    depth = np.where(panoptic == CITYSCAPES.void_label, 0, 5 + rows * 0.05).astype(np.float32)
    return {
        keys.IMAGE: image(panoptic),
        keys.NEXT_IMAGE: image(next_panoptic),
        keys.PANOPTIC: panoptic,
        keys.NEXT_PANOPTIC: next_panoptic,
        keys.DEPTH: np.round(depth * 256) / 256,
        keys.SEQUENCE_ID: "bench",
        keys.FRAME_INDEX: 0,
        keys.NEXT_FRAME_INDEX: 1,
    }


def baseline_transform(example, rng, *, crop_size_hw, scales, ignore_label, label_divisor):
    """Same draws as `augment.random_pair_transform`, done the obvious way on the whole frame."""
    crop_h, crop_w = crop_size_hw
    scale = scales[rng.integers(len(scales))]
    out_h, out_w = augment.scaled_size(example[keys.IMAGE].shape[:2], scale)
    pad_y, pad_x = rng.integers(max(crop_h - out_h, 1)), rng.integers(max(crop_w - out_w, 1))
    canvas_h, canvas_w = max(out_h, crop_h), max(out_w, crop_w)
    crop_y, crop_x = rng.integers(canvas_h - crop_h + 1), rng.integers(canvas_w - crop_w + 1)
    flip = rng.random() < 0.5

    def finish(full, fill, dtype):
        canvas = np.full((canvas_h, canvas_w, *full.shape[2:]), fill, dtype)
        canvas[pad_y : pad_y + out_h, pad_x : pad_x + out_w] = full
        crop = canvas[crop_y : crop_y + crop_h, crop_x : crop_x + crop_w]
        return np.ascontiguousarray(crop[:, ::-1] if flip else crop)

    result = dict(example)
    for key in (keys.IMAGE, keys.NEXT_IMAGE):
        full = augment.resize_bilinear_align_corners(example[key], (out_h, out_w))
        result[key] = finish(full, 127.5, np.float32)
    for key in (keys.PANOPTIC, keys.NEXT_PANOPTIC):
        full = augment.resize_nearest_align_corners(example[key], (out_h, out_w))
        result[key] = finish(full, ignore_label * label_divisor, np.int32)
    return result


def fast_pair(example, rng, descriptor, crop, scales):
    validate = dict(
        num_classes=descriptor.num_classes,
        ignore_label=descriptor.ignore_label,
        label_divisor=descriptor.label_divisor,
    )
    t0 = time.process_time()
    pipeline.validate_example(example, **validate)
    t1 = time.process_time()
    out = augment.random_pair_transform(
        {k: v for k, v in example.items() if k != keys.DEPTH},
        rng,
        crop_size_hw=crop,
        scales=scales,
        ignore_label=descriptor.ignore_label,
        label_divisor=descriptor.label_divisor,
    )
    t2 = time.process_time()
    targets.make_targets(
        out[keys.PANOPTIC],
        out[keys.NEXT_PANOPTIC],
        thing_ids=descriptor.thing_ids,
        label_divisor=descriptor.label_divisor,
        ignore_label=descriptor.ignore_label,
    )
    np.concatenate([out[keys.IMAGE], out[keys.NEXT_IMAGE]], axis=-1)
    t3 = time.process_time()
    return t1 - t0, t2 - t1, t3 - t2


def baseline_pair(example, rng, descriptor, crop, scales):
    t0 = time.process_time()
    pipeline.validate_example(
        example,
        num_classes=descriptor.num_classes,
        ignore_label=descriptor.ignore_label,
        label_divisor=descriptor.label_divisor,
    )
    tv = time.process_time()
    out = baseline_transform(
        example,
        rng,
        crop_size_hw=crop,
        scales=scales,
        ignore_label=descriptor.ignore_label,
        label_divisor=descriptor.label_divisor,
    )
    t1 = time.process_time()
    targets.make_targets_reference(
        out[keys.PANOPTIC],
        out[keys.NEXT_PANOPTIC],
        thing_ids=descriptor.thing_ids,
        label_divisor=descriptor.label_divisor,
        ignore_label=descriptor.ignore_label,
    )
    t2 = time.process_time()
    return tv - t0, t1 - tv, t2 - t1


def peak_mib(fn, *args) -> float:
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def measure(name, examples, descriptor, crop, reps):
    """Median per-pair CPU seconds (validate, augment, targets) of fast and baseline paths."""
    scales = augment.scale_set()
    rows = {}
    for label, fn in (("fast", fast_pair), ("baseline", baseline_pair)):
        parts = []
        for i in range(reps):
            # The same seeds for both paths: identical scales, crops and flips.
            rng = np.random.default_rng(i)
            parts.append(fn(examples[i % len(examples)], rng, descriptor, crop, scales))
        parts = np.array(parts)
        total = parts.sum(axis=1)
        mem = peak_mib(fn, examples[0], np.random.default_rng(0), descriptor, crop, (2.0,))
        rows[label] = dict(
            total=statistics.median(total),
            mean=float(total.mean()),
            validate=float(np.median(parts[:, 0])),
            augment=float(np.median(parts[:, 1])),
            targets=float(np.median(parts[:, 2])),
            peak=mem,
        )
    return name, rows


def decode_seconds(example, reps) -> float:
    """PIL PNG decode of one pair's files (2 RGB, 2 16-bit labels, 1 16-bit depth)."""
    from PIL import Image

    blobs = []
    for key in (keys.IMAGE, keys.NEXT_IMAGE):
        blobs.append(Image.fromarray(example[key]))
    for key in (keys.PANOPTIC, keys.NEXT_PANOPTIC):
        blobs.append(Image.fromarray(example[key].astype(np.uint16)))
    blobs.append(Image.fromarray((example[keys.DEPTH] * 256).astype(np.uint16)))
    encoded = []
    for image in blobs:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        for data in encoded:
            np.asarray(Image.open(io.BytesIO(data)))
        times.append(time.process_time() - t0)
    return statistics.median(times)


def loader_pairs_per_second(source, descriptor, crop, batch_size, batches) -> float:
    iterator = pipeline.make_train_loader(
        source,
        descriptor=descriptor,
        crop_size_hw=crop,
        batch_size=batch_size,
        seed=0,
        read_threads=0,
        prefetch_batches=1,
    )
    next(iterator)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - t0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 2 minutes)")
    args = parser.parse_args(argv)
    reps = 4 if args.quick else 16
    rng = np.random.default_rng(0)
    city = [cityscapes_like_pair(rng, 1024, 2048) for _ in range(2 if args.quick else 4)]
    syn_source = synthetic.SyntheticPairSource(4, seed=0)
    syn = [syn_source[i] for i in range(len(syn_source))]

    results = [
        measure("Cityscapes 1024x2048 -> 513x1025", city, CITYSCAPES, (513, 1025), reps),
        measure("synthetic 128x256 -> 129x257", syn, descriptors.SYNTHETIC, (129, 257), reps * 8),
    ]
    decode = decode_seconds(city[0], 3 if args.quick else 8)
    loader = loader_pairs_per_second(
        syn, descriptors.SYNTHETIC, (129, 257), 8, 4 if args.quick else 16
    )

    command = "scripts/benchmarks/data.py" + (" --quick" if args.quick else "")
    print("## Input pipeline: pair preprocessing per CPU core\n")
    print(f"Command: `.venv/bin/python {command}`  ")
    print(
        f"Machine: {platform.machine()}, {platform.processor() or 'unknown CPU'}, "
        f"{os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {platform.system()} {platform.release()}  "
    )
    print(
        "Per pair, single thread, CPU time (`time.process_time`, robust to other load), median "
        f"of {reps} (Cityscapes) / {reps * 8} (synthetic) pairs drawn from the 16-value scale "
        "set. Baseline = resize the whole frame, pad, crop, flip + loop-based "
        "`make_targets_reference`, same random draws. Peak memory = tracemalloc peak for one "
        "pair at scale 2.0.\n"
    )
    print(
        "| input | path | validate ms | augment ms | targets ms | total ms | pairs/s/core "
        "| speed-up | peak MiB | memory ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in results:
        base = rows["baseline"]
        for label in ("fast", "baseline"):
            r = rows[label]
            print(
                f"| {name} | {label} | {r['validate'] * 1e3:.1f} | {r['augment'] * 1e3:.1f} | "
                f"{r['targets'] * 1e3:.1f} | {r['total'] * 1e3:.1f} | {1 / r['total']:.1f} | "
                f"{base['total'] / r['total']:.2f}x | {r['peak']:.0f} | "
                f"{r['peak'] / base['peak']:.2f} |"
            )
    city_fast = results[0][1]["fast"]
    need = GLOBAL_BATCH / STEP_SECONDS
    # The mean (not the median) covers the expensive large scales, which set the sustained rate.
    per_core = 1 / city_fast["mean"]
    decode_rate = 1 / (city_fast["mean"] + decode)
    print()
    print(
        f"PNG decode of one Cityscapes pair (2 RGB + 2 uint16 labels + depth, PIL): "
        f"{decode * 1e3:.0f} ms.  "
    )
    print(
        f"grain loader, synthetic, in-process (no workers), batch 8: {loader:.1f} pairs/s "
        "(wall clock, includes batching).\n"
    )
    print(
        f"**TPU v4-8 at global batch {GLOBAL_BATCH} and {STEP_SECONDS} s/step** needs "
        f"{need:.0f} pairs/s. Preprocessing (mean {city_fast['mean'] * 1e3:.0f} ms/pair) gives "
        f"{per_core:.1f} pairs/s per core: **{need / per_core:.1f} cores**; with PNG decode "
        f"{decode_rate:.1f} pairs/s per core: **{need / decode_rate:.1f} cores** "
        f"(use `num_workers` >= {int(np.ceil(need / decode_rate * 1.5))} for 50% headroom; "
        "a v4-8 host VM has 240 vCPUs)."
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
