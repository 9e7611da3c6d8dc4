"""Console hygiene and start-up settings shared by the command-line tools.

`enable_compilation_cache` turns on JAX's persistent compilation cache (docs/inference.md#start-up),
so a second run on frames of the same size loads its compiled programs instead of compiling them.

Orbax and TFDS narrate every checkpoint commit and dataset open at INFO, and orbax warns about
situations vipdl creates on purpose (restoring through a read-only manager, saving between two
evaluations of a manager that keeps the best checkpoint). `quiet_library_logs` drops those
records unless the environment variable VIPDL_VERBOSE is set; everything else is kept.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

_NOISY_PATHS = ("/orbax/", "/tensorflow_datasets/", "/etils/")
# Orbax/TFDS warnings that describe vipdl's intended use, not a problem.
_EXPECTED_WARNINGS = (
    "read_only=True, setting save_interval_steps=0",  # Evaluation / prediction restore.
    "Given directory is read only",
    "Metadata file does not exist",  # Checkpoints restored by path without a manager.
    "Requested `tracked_metric`; did not provide metrics",  # Saves between evaluations.
    "OpenCV is not installed",  # TFDS decodes PNGs with PIL instead, which is what we want.
)


def is_library_noise(record: logging.LogRecord) -> bool:
    """Whether `record` is orbax/TFDS/etils INFO chatter or an expected orbax/TFDS warning."""
    if record.levelno < logging.WARNING:
        return any(n in record.pathname for n in _NOISY_PATHS)
    if record.levelno == logging.WARNING:
        # By message: before absl's handler is set up, records carry absl's own file as pathname.
        message = record.getMessage()
        return any(w in message for w in _EXPECTED_WARNINGS)
    return False


def _keep(record: logging.LogRecord) -> bool:
    return not is_library_noise(record)


def quiet_library_logs() -> None:
    """Installs the filter on the absl logger (idempotent); no-op when VIPDL_VERBOSE is set."""
    if os.environ.get("VIPDL_VERBOSE"):
        return
    logger = logging.getLogger("absl")
    if _keep not in logger.filters:
        logger.addFilter(_keep)


CACHE_ENV = "VIPDL_COMPILATION_CACHE"
# Compilations faster than this are not worth a disk round trip.
_MIN_COMPILE_SECONDS = 0.5


def compilation_cache_dir() -> Path | None:
    """Where compiled XLA programs are kept: `$VIPDL_COMPILATION_CACHE`, else
    `$XDG_CACHE_HOME/vipdl/jax` (default `~/.cache/vipdl/jax`); None when the variable is
    "0", "off" or empty (cache disabled)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        if value.strip().lower() in ("", "0", "off", "false", "no"):
            return None
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vipdl" / "jax"


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache (idempotent; call before compiling).

    The cache is keyed by the program, the JAX version and the device, so it is never stale;
    deleting the directory is always safe (the next run compiles again).

    Args:
      directory: where to keep it; default `compilation_cache_dir()`.

    Returns:
      The directory in use, or None if disabled.
    """
    import jax

    path = Path(directory) if directory is not None else compilation_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # A read-only home must not stop a run; it only costs compile time.
        logging.getLogger(__name__).warning("compilation cache disabled: %s", e)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
