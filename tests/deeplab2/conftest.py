"""Loads the deeplab2 fixture helpers (fixtures.py) for the tests in this folder."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "vipdl_deeplab2_fixtures", Path(__file__).with_name("fixtures.py")
)
d2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(d2)


@pytest.fixture(scope="session")
def deeplab2_fixtures():
    """The `fixtures.py` module: seeded weights, inputs and reference outputs per fixture."""
    return d2
