"""Video panoptic evaluation (numpy): PQ, VPQ, DVPQ, STQ, readers and writers.

The numbers agree with the official scripts (mcahny/vps `tools/eval_vpq.py`, ViP-DeepLab
`cityscapes-dvps/eval_dvpq.py`, deeplab2 `evaluation/numpy/segmentation_and_tracking_quality.py`);
see docs/evaluation.md for the deliberate differences.
"""
