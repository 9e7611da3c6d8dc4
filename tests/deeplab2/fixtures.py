"""The deeplab2 reference fixtures: key lists, seeded weights, inputs and reference outputs.

Each fixture folder (`fixtures/<name>/`) describes one deeplab2 model: `keys.tsv` lists every
checkpoint entry as deeplab2 saves it; every variable's value follows from its key and a seed by
the rule in `seeded_value` (the rule the fixture generator used); `outputs.npz` holds what
deeplab2 computes from `input.npz` with those weights (stored on every third pixel, see
copy_fixtures.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parent / "fixtures"
SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
NAMES = tuple(sorted(p.name for p in ROOT.iterdir() if p.is_dir()))


@functools.cache
def meta(name: str) -> dict:
    return json.loads((ROOT / name / "meta.json").read_text())


@functools.cache
def key_shapes(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every checkpoint key of fixture `name` -> (shape, dtype), as `tf.train.list_variables`."""
    out = {}
    for line in (ROOT / name / "keys.tsv").read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        out[key] = (tuple(int(d) for d in shape.split(",")) if shape else (), dtype)
    return out


def is_seeded(key: str) -> bool:
    return key.endswith(SUFFIX) and not key.startswith(("global_step/", "save_counter/"))


def seeded_value(seed: int, key: str, shape: tuple[int, ...], kernel_gain: float) -> np.ndarray:
    """The fixture generator's deterministic value of checkpoint entry `key` (float32)."""
    name = key[: -len(SUFFIX)].rsplit("/", 1)[-1]
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    z = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(shape)
    if name in ("kernel", "pointwise_kernel"):
        value = z * np.sqrt(kernel_gain / np.prod(shape[:-1]))
    elif name == "depthwise_kernel":
        value = z * np.sqrt(kernel_gain / (shape[0] * shape[1]))
    elif name == "gamma":
        value = 1.0 + 0.1 * z
    elif name in ("beta", "bias", "moving_mean"):
        value = 0.1 * z
    elif name == "moving_variance":
        value = 1.0 + 0.1 * np.abs(z)
    else:
        raise ValueError(f"no seed rule for {key}")
    return value.astype(np.float32)


def seeded_weights(name: str) -> dict[str, np.ndarray]:
    """{checkpoint key: float32 value} for every seeded entry of fixture `name`."""
    m = meta(name)
    return {
        key: seeded_value(m["seed"], key, shape, m["kernel_gain"])
        for key, (shape, _) in key_shapes(name).items()
        if is_seeded(key)
    }


def write_tf_checkpoint(weights: dict[str, np.ndarray], prefix: str) -> str:
    """Writes `weights` as a TF checkpoint `<prefix>.index` + `.data-*` under exactly these keys."""
    import tensorflow as tf

    keys = sorted(weights)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=keys,
        shape_and_slices=[""] * len(keys),
        tensors=[tf.constant(weights[k]) for k in keys],
    )
    return prefix


def inputs(name: str) -> dict[str, np.ndarray]:
    """`"<H>x<W>"` -> uint8 image `[1, H, W, 3 or 6]`."""
    with np.load(ROOT / name / "input.npz") as f:
        return {k.split("/")[0]: f[k] for k in f.files}


def outputs(name: str) -> dict[str, dict[str, tuple[np.ndarray, float]]]:
    """`"<H>x<W>"` -> {output name: (reference on every `stride`-th pixel, full-size std)}."""
    out: dict[str, dict[str, tuple[np.ndarray, float]]] = {}
    with np.load(ROOT / name / "outputs.npz") as f:
        for k in f.files:
            if k.endswith("/std_full"):
                continue
            size, what = k.split("/", 1)
            out.setdefault(size, {})[what] = (f[k], float(f[k + "/std_full"]))
    return out


def subsample(x: np.ndarray) -> np.ndarray:
    """The pixels the stored references keep: every `stored_output_stride`-th row and column."""
    return x[:, ::3, ::3]
