r"""ViP-DeepLab, Wide-ResNet-41 OS16, Cityscapes-DVPS (panoptic + depth).

deeplab2 `configs/cityscapes_dvps/vip_deeplab/wide_resnet41_os16.textproto`: Wide-ResNet-41 at
output stride 16, ASPP rates 3/6/9 with image pooling over the 513x1025 training crop (window
33x65; eval at 1025x2049 sees a 65x129 feature map, so the pooling is a sliding window), decoder
256 with low-level projections 64/32 (res3, res2), instance and next-frame decoders 128 with
32/16, heads 256 / 32 / 32 / 32, depth head 64 (0..88 m); Adam 2.5e-4, poly 0.9, 120k steps,
batch 16 pairs, loss weights 1 / 200 / 0.01 / 0.01 / 0.1, initialised from the Cityscapes
Panoptic-DeepLab checkpoint. deeplab2 also uses drop-path (keep 0.8, linear) in training, which
vipdl does not implement.

Convert deeplab2's checkpoint (docs/model_zoo.md), then predict or evaluate:

  .venv/bin/python scripts/convert_checkpoint.py \
      --deeplab2 wide_resnet41_os16_vip_deeplab_cityscapes_dvps_train \
      --config configs/vip_deeplab_cityscapes_dvps_wr41.py --workdir runs/vip_wr41_d2 \
      --config.data.data_dir=/data/tfds
  .venv/bin/python scripts/evaluate.py --workdir runs/vip_wr41_d2
  .venv/bin/python scripts/predict_video.py --workdir runs/vip_wr41_d2 --input video.mp4 \
      --output out/ --depth

Train:

  .venv/bin/python scripts/train.py --config=configs/vip_deeplab_cityscapes_dvps_wr41.py \
      --workdir=runs/vip_dvps_wr41 --config.data.data_dir=/data/tfds \
      --config.init.checkpoint=runs/pdl_wr41_d2

Expected result (deeplab2): VPQ 55.19 on Cityscapes-DVPS val (VPQ-k 63.24 / 55.56 / 52.10 /
49.85 for k = 0, 5, 10, 15), depth AbsRel 0.114.
Variants: `:runlocal` (4 steps, tiny model, synthetic data).
"""

from __future__ import annotations

import os
import sys

import ml_collections

# Config files are loaded by path (ml_collections config_flags); make `configs.common` importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, runlocal=False)
    c = common.base_config()  # The layout's defaults are the R50-beta recipe of this dataset.
    c.data.dataset = "cityscapes_dvps"
    c.model.backbone = "wide_resnet41"
    c.model.output_stride = 16
    c.model.use_depth = True
    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
