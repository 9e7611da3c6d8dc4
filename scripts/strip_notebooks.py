"""Strips outputs and execution counts from Jupyter notebooks (the committed form).

    .venv/bin/python scripts/strip_notebooks.py [NOTEBOOK ...]          # rewrite in place
    .venv/bin/python scripts/strip_notebooks.py --check [NOTEBOOK ...]  # exit 1 if not stripped

Without arguments every `colab/*.ipynb` of the repository is processed. Stripping removes code
cell outputs, execution counts, the per-cell `execution` timing metadata that nbclient /
JupyterLab record and saved widget state; sources, tags and the other notebook metadata (Colab
accelerator, kernel) are kept.
Files are rewritten in nbformat's own layout (sorted keys, one-space indent) through a temporary
file that is renamed into place, so an interrupted run never leaves a truncated notebook.
Exit codes: 0 clean (or stripped), 1 `--check` found notebooks to strip, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GLOB = "colab/*.ipynb"
# Cell metadata written by execution front-ends, not by authors.
_EXECUTION_METADATA = ("execution", "collapsed", "scrolled")
# Notebook metadata holding output state (ipywidgets' saved widget models).
_OUTPUT_METADATA = ("widgets",)


class NotebookError(ValueError):
    """A file is not a readable nbformat-4 notebook."""


def load_notebook(path: Path) -> dict[str, Any]:
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NotebookError(f"{path}: cannot read notebook JSON ({e})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise NotebookError(f"{path}: not a Jupyter notebook (expected a top-level 'cells' list)")
    if notebook.get("nbformat") != 4:
        raise NotebookError(f"{path}: expected nbformat 4, got {notebook.get('nbformat')!r}")
    return notebook


def problems(notebook: dict[str, Any]) -> list[str]:
    """What stripping would remove, one line per cell ("cell 3: 2 outputs, execution_count")."""
    found = [f"metadata.{k}" for k in _OUTPUT_METADATA if k in notebook.get("metadata", {})]
    for index, cell in enumerate(notebook["cells"]):
        what = []
        if cell.get("outputs"):
            what.append(f"{len(cell['outputs'])} outputs")
        if cell.get("execution_count") is not None:
            what.append("execution_count")
        what += [f"metadata.{k}" for k in _EXECUTION_METADATA if k in cell.get("metadata", {})]
        if what:
            found.append(f"cell {index}: {', '.join(what)}")
    return found


def strip(notebook: dict[str, Any]) -> dict[str, Any]:
    """A copy of `notebook` without outputs, execution counts and execution metadata."""
    out = dict(notebook)
    out["metadata"] = {k: v for k, v in notebook.get("metadata", {}).items()
                       if k not in _OUTPUT_METADATA}
    cells = []
    for cell in notebook["cells"]:
        cell = dict(cell)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        metadata = {k: v for k, v in cell.get("metadata", {}).items()
                    if k not in _EXECUTION_METADATA}
        cell["metadata"] = metadata
        cells.append(cell)
    out["cells"] = cells
    return out


def dumps(notebook: dict[str, Any]) -> str:
    """nbformat's on-disk layout, so stripping a clean notebook changes no byte."""
    return json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_notebooks() -> list[Path]:
    return sorted(REPO_ROOT.glob(DEFAULT_GLOB))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help=f"notebooks to process (default: {DEFAULT_GLOB})")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any notebook has outputs")
    args = parser.parse_args(argv)
    paths = args.notebooks or default_notebooks()
    if not paths:
        print(f"strip_notebooks: no notebooks found ({REPO_ROOT / DEFAULT_GLOB})", file=sys.stderr)
        return 2
    dirty = 0
    for path in paths:
        try:
            notebook = load_notebook(path)
        except NotebookError as e:
            print(f"strip_notebooks: {e}", file=sys.stderr)
            return 2
        found = problems(notebook)
        stripped = dumps(strip(notebook))
        if args.check:
            if found:
                dirty += 1
                print(f"{path}: not stripped ({'; '.join(found)})")
            continue
        if path.read_text(encoding="utf-8") != stripped:
            write_atomic(path, stripped)
            print(f"stripped {path}" + (f" ({'; '.join(found)})" if found else " (layout)"))
    if dirty:
        print(f"{dirty} notebook(s) carry outputs; run: python scripts/strip_notebooks.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
