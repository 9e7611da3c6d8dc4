"""Console hygiene shared by the command-line tools.

Orbax and TFDS narrate every checkpoint commit and dataset open at INFO, and orbax warns about
situations vipdl creates on purpose (restoring through a read-only manager, saving between two
evaluations of a manager that keeps the best checkpoint). `quiet_library_logs` drops those
records unless the environment variable VIPDL_VERBOSE is set; everything else is kept.
"""

from __future__ import annotations

import logging
import os

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
