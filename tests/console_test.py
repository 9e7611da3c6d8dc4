"""Tests of the CLI log filter: library chatter goes, real warnings and our own lines stay."""

from __future__ import annotations

import logging

from vipdl.cli import console


def _record(path: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("absl", level, path, 1, message, None, None)


def test_library_noise_is_dropped_and_real_problems_kept():
    orbax = "/site-packages/orbax/checkpoint/checkpoint_manager.py"
    assert console.is_library_noise(_record(orbax, logging.INFO, "Finished saving step 4"))
    assert console.is_library_noise(
        _record(orbax, logging.WARNING, "Requested `tracked_metric`; did not provide metrics.")
    )
    assert console.is_library_noise(
        _record(orbax, logging.WARNING, "Given directory is read only=/run/checkpoints")
    )
    assert not console.is_library_noise(_record(orbax, logging.WARNING, "disk quota exceeded"))
    # Without absl's handler, orbax records carry absl's file as their path.
    absl_path = "/site-packages/absl/logging/__init__.py"
    assert console.is_library_noise(
        _record(absl_path, logging.WARNING, "Metadata file does not exist: /run/1/state")
    )
    image = "/site-packages/tensorflow_datasets/core/features/image_feature.py"
    assert console.is_library_noise(_record(image, logging.WARNING, "OpenCV is not installed."))
    assert not console.is_library_noise(_record(orbax, logging.ERROR, "Metadata file does not"))
    ours = "/repo/vipdl/trainer.py"
    assert not console.is_library_noise(_record(ours, logging.INFO, "[100] train/loss=1.0"))


def test_quiet_library_logs_installs_once_and_respects_verbose(monkeypatch):
    logger = logging.getLogger("absl")
    monkeypatch.setattr(logger, "filters", [])
    monkeypatch.setenv("VIPDL_VERBOSE", "1")
    console.quiet_library_logs()
    assert logger.filters == []
    monkeypatch.delenv("VIPDL_VERBOSE")
    console.quiet_library_logs()
    console.quiet_library_logs()
    assert len(logger.filters) == 1
    tfds = "/site-packages/tensorflow_datasets/core/dataset_builder.py"
    assert not logger.filters[0](_record(tfds, logging.INFO, "Constructing tf.data.Dataset"))


def test_compilation_cache_location_is_documented_overridable_and_can_be_off(tmp_path,
                                                                            monkeypatch):
    import jax

    monkeypatch.delenv(console.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert console.compilation_cache_dir() == tmp_path / "xdg" / "vipdl" / "jax"
    monkeypatch.setenv(console.CACHE_ENV, str(tmp_path / "mine"))
    assert console.compilation_cache_dir() == tmp_path / "mine"
    for off in ("0", "off", ""):
        monkeypatch.setenv(console.CACHE_ENV, off)
        assert console.compilation_cache_dir() is None
        assert console.enable_compilation_cache() is None
    previous = jax.config.jax_compilation_cache_dir
    try:
        assert console.enable_compilation_cache(tmp_path / "c") == tmp_path / "c"
        assert (tmp_path / "c").is_dir()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)
