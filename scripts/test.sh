#!/usr/bin/env bash
# Runs the test suite: sets up .venv (scripts/setup_env.sh), then ruff and pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `bash scripts/test.sh tests/evaluation`.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
echo "== ruff"
.venv/bin/ruff check vipdl tests scripts configs
echo "== pytest"
# 8 fake CPU devices so sharding code is exercised without accelerators.
export XLA_FLAGS="${XLA_FLAGS:---xla_force_host_platform_device_count=8}"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
exec .venv/bin/python -m pytest -q "$@"
