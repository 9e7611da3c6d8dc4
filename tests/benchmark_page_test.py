"""Tests of `scripts/benchmark.py`'s page assembly: a rerun subset replaces only its sections."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _load():
    path = REPO / "scripts" / "benchmark.py"
    spec = importlib.util.spec_from_file_location("vipdl_benchmark_page", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rerun_subset_replaces_only_its_marked_sections():
    bench = _load()
    page = "# Benchmarks\n\nheader\n\n" + bench._marked("eval", "## eval\nold eval") + "\n"
    page += bench._marked("learning", "## Learning\nold numbers")
    new = bench._replace_sections(page, {"learning": bench._marked("learning", "## Learning\nnew")})
    assert "old eval" in new and "new" in new and "old numbers" not in new
    assert new.count("<!-- benchmark: learning -->") == 1
    added = bench._replace_sections(new, {"data": bench._marked("data", "## data\nrows")})
    assert added.index("## data") > added.index("## Learning")  # Absent sections are appended.


def test_every_benchmark_of_the_page_order_exists():
    bench = _load()
    assert set(bench.ORDER) <= set(bench._available())
