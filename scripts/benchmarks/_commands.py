"""Shared by the benchmark scripts that drive the documented command lines in fresh processes."""

from __future__ import annotations

import os
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_logged(cmd: list[str], log_path: str) -> float:
    """Runs `cmd` in the repository (CPU unless JAX_PLATFORMS says otherwise), its output to
    `log_path`; returns wall seconds. A failing command ends the benchmark with its log's tail."""
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
           "PYTHONPATH": os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)}
    tic = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return time.perf_counter() - tic
