"""Test setup: 8 fake CPU devices and fast (unoptimised) XLA compiles.

XLA_FLAGS must be set before JAX initialises its backend, hence at import time.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The CLIs' persistent compilation cache stays off in tests (nothing written to the home dir).
os.environ.setdefault("VIPDL_COMPILATION_CACHE", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

# Compile time dominates CPU tests; numerics are unaffected.
jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A workdir holding the `runlocal` synthetic config and an (untrained) checkpoint."""
    from configs import synthetic as synthetic_config
    from tests.runs import write_untrained_run

    config = synthetic_config.get_config("runlocal")
    return write_untrained_run(tmp_path_factory.mktemp("run"), config), config
