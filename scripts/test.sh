#!/usr/bin/env bash
# Sets up .venv (created once, reused) with vipdl and its dev extra, then runs ruff and pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `bash scripts/test.sh tests/evaluation`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# Reinstall only when pyproject.toml changed since the last install.
STAMP=.venv/.vipdl-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch "$STAMP"
fi
echo "== ruff"
.venv/bin/ruff check vipdl tests scripts configs
echo "== pytest"
# 8 fake CPU devices so sharding code is exercised without accelerators.
export XLA_FLAGS="${XLA_FLAGS:---xla_force_host_platform_device_count=8}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
exec .venv/bin/python -m pytest -q "$@"
