"""Editing-grade outputs: soft per-segment mattes, Cryptomatte and per-track alpha sequences.

`vipdl.editing.mattes.frame_mattes` turns a `vipdl.inference.FramePrediction` (from a predictor
built with `return_raw=True`) into ranked (segment, coverage) pairs per pixel, at working or full
resolution; `vipdl.editing.writers.MatteWriter` writes them as 16-bit PNG alpha sequences and
Cryptomatte EXRs. See docs/editing.md.
"""

from vipdl.editing.mattes import FrameMattes, MatteOptions, Segments, frame_mattes
from vipdl.editing.softness import DEFAULT_SOFTNESS, parse_softness, softness_table

__all__ = [
    "DEFAULT_SOFTNESS",
    "FrameMattes",
    "MatteOptions",
    "Segments",
    "frame_mattes",
    "parse_softness",
    "softness_table",
]
