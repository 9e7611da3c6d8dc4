"""Shared fixtures of the evaluation tests: the seeded file-based data sets."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "vipdl_eval_fixtures", Path(__file__).with_name("fixtures.py")
)
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)


@pytest.fixture(scope="module")
def fixtures_module():
    return fx
