"""Moved: the label encodings live in `vipdl.formats`.

Only the two names that `tests/inference_test.py` imports from here are kept, until that file
imports them from `vipdl.formats`; nothing in vipdl uses this module.
"""

from vipdl.formats import rgb_to_id, step_rgb_to_panoptic

__all__ = ["rgb_to_id", "step_rgb_to_panoptic"]
