"""deeplab2 checkpoint conversion: peak memory against one copy of the weights.

Writes a full-size seeded deeplab2 checkpoint of ViP-DeepLab R50-beta with depth (the
`vip_r50beta_dvps` fixture's keys and seed rule, tests/deeplab2/fixtures.py) to a temporary
directory, then in fresh processes:

* baseline: reads every tensor of it into memory with TensorFlow's reader (one copy of the
  weights, nothing else);
* `vipdl.convert.deeplab2.convert_checkpoint` into a workdir (the library call the CLI makes).

Each child reports its peak RSS and its RSS after importing the same libraries (TensorFlow, JAX,
Flax, Orbax, vipdl), so the increments compare the work itself. Prints a Markdown section.

    python scripts/benchmarks/convert.py [--quick]

`--quick` uses the smaller Panoptic-DeepLab R50-beta fixture.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "deeplab2", "fixtures.py")

_PRELUDE = f"""
import json, os, resource, sys, time
sys.path.insert(0, {ROOT!r})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import numpy as np
import tensorflow as tf
import jax, flax, orbax.checkpoint
from vipdl import checkpointing, trainer
from vipdl.convert import deeplab2
from vipdl.cli.predict_video import load_config_file
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
imports_mb = rss_mb()
start = time.perf_counter()
"""

_READ_ALL = _PRELUDE + """
reader = tf.train.load_checkpoint(sys.argv[1])
arrays = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
nbytes = sum(a.nbytes for a in arrays.values() if isinstance(a, np.ndarray))
print(json.dumps({"imports_mb": imports_mb, "peak_mb": rss_mb(), "bytes": nbytes,
                  "seconds": time.perf_counter() - start}))
"""

_CONVERT = _PRELUDE + """
config = load_config_file(sys.argv[2])
conversion = deeplab2.convert_checkpoint(sys.argv[1], config, sys.argv[3])
print(json.dumps({"imports_mb": imports_mb, "peak_mb": rss_mb(),
                  "bytes": 4 * conversion.num_values, "arrays": conversion.num_arrays,
                  "seconds": time.perf_counter() - start}))
"""

_WRITE = f"""
import importlib.util, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
spec = importlib.util.spec_from_file_location("d2fixtures", {FIXTURES!r})
d2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(d2)
import numpy as np
weights = d2.seeded_weights(sys.argv[1])
weights["global_step/.ATTRIBUTES/VARIABLE_VALUE"] = np.array(60000, np.int64)
d2.write_tf_checkpoint(weights, sys.argv[2])
"""


def _child(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Panoptic-DeepLab R50-beta instead")
    args = parser.parse_args(argv)
    fixture, config = (
        ("pdl_r50beta", "configs/panoptic_deeplab_cityscapes_r50.py") if args.quick
        else ("vip_r50beta_dvps", "configs/vip_deeplab_cityscapes_dvps_r50.py")
    )
    spec = importlib.util.spec_from_file_location("d2fixtures", FIXTURES)
    d2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(d2)
    num_values = d2.meta(fixture)["checkpoint"]["num_seeded_values"]

    with tempfile.TemporaryDirectory(prefix="vipdl-convert-bench-") as tmp:
        prefix = os.path.join(tmp, "ckpt", "ckpt-60000")
        os.makedirs(os.path.dirname(prefix))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", _WRITE, fixture, prefix], check=True, cwd=ROOT)
        write_s = time.perf_counter() - start
        ckpt_mb = sum(os.path.getsize(os.path.join(tmp, "ckpt", f))
                      for f in os.listdir(os.path.join(tmp, "ckpt"))) / 2**20
        read = _child(_READ_ALL, prefix)
        conv = _child(_CONVERT, prefix, os.path.join(ROOT, config), os.path.join(tmp, "workdir"))

    weights_mb = 4 * num_values / 2**20
    rows = [("read every tensor (baseline: one copy)", read),
            ("`convert_checkpoint` into a workdir", conv)]
    lines = [
        "## deeplab2 checkpoint conversion",
        "",
        f"Command: `python scripts/benchmarks/convert.py{' --quick' if args.quick else ''}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}  ",
        f"Checkpoint: seeded `{fixture}` fixture at full size ({config}), "
        f"{num_values:,} float32 values = **{weights_mb:.0f} MB** (one copy of the weights); "
        f"{ckpt_mb:.0f} MB on disk, written in {write_s:.0f} s.",
        "",
        "| run (fresh process) | RSS after imports (MB) | peak RSS (MB) | increment (MB) | "
        "increment / weights | wall (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        inc = r["peak_mb"] - r["imports_mb"]
        lines.append(f"| {name} | {r['imports_mb']:.0f} | {r['peak_mb']:.0f} | {inc:.0f} | "
                     f"{inc / weights_mb:.2f}x | {r['seconds']:.1f} |")
    lines += ["", textwrap.fill(
        "Increment = peak RSS minus the RSS after importing TensorFlow, JAX, Flax, Orbax and "
        "vipdl in the same process. The converter builds the model abstractly, reads one tensor "
        "at a time into the converted tree and hands that tree to Orbax, which writes it without "
        "a defensive copy or chunk compression (`checkpointing.save_model_weights`); the rest of "
        "the increment is Orbax's write buffers. The wall time includes the Orbax write.", 100)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
