#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/demo.sh: creates .venv once (reused afterwards) and
# installs vipdl with its dev extra whenever pyproject.toml is newer than the last install.
set -euo pipefail
VIPDL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$VIPDL_ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "vipdl needs Python >= 3.10; $PY is $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
STAMP=.venv/.vipdl-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "== installing vipdl and its dependencies into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch "$STAMP"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# TensorFlow only decodes data here; its oneDNN notice on every import is noise.
export TF_ENABLE_ONEDNN_OPTS="${TF_ENABLE_ONEDNN_OPTS:-0}"
