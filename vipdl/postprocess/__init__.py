"""Panoptic post-processing (JAX + numpy reference), two-frame inference, stitching, tracking.

* `panoptic`: jitted static-shape Panoptic-DeepLab post-processing; `reference`: numpy twin.
* `two_frame`: the ViP-DeepLab H x 2W canvas and the pairwise stitcher.
* `stitching`: `VideoStitcher`, sequence-level tracking from pair outputs.
* `iou_tracker`: `IoUTracker`, the tracking-free baseline's tracker.
"""
