"""Panoptic post-processing (JAX + numpy reference), two-frame inference, stitching, tracking.

* `panoptic`: jitted static-shape Panoptic-DeepLab post-processing and its options
  (`PostprocessOptions`); the numpy twin the tests compare it with is in tests/postprocess/.
* `two_frame`: the ViP-DeepLab H x 2W canvas and the (host) pairwise stitcher.
* `stitching`: `VideoStitcher`, sequence-level tracking from pair outputs.
* `iou_tracker`: `IoUTracker`, the tracking-free baseline's tracker.
"""

from vipdl.postprocess.panoptic import PostprocessOptions

__all__ = ["PostprocessOptions"]
