r"""Panoptic-DeepLab, MobileNetV3-Small OS16, Cityscapes.

deeplab2 `configs/cityscapes/panoptic_deeplab/mobilenet_v3_small_os16.textproto`:
MobileNetV3-Small with squeeze-and-excitation at output stride 16, ASPP rates 6/12/18 with image
pooling over the 1025x2049 training crop (window 65x129), decoder 256 with low-level projections
64/32 (res3, res2), instance decoder 128 with 32/16, heads 256 / 32 / 32, **BatchNorm epsilon
1e-5** (every other deeplab2 recipe uses 1e-3), eval 1025x2049, NMS 7; Adam 1e-3, poly 0.9,
60k steps, batch 64, AutoAugment (not implemented in vipdl; it only affects training). Data: the
Cityscapes panoptic images (`vipdl-prepare-data --dataset cityscapes_panoptic`;
`--config.data.dataset=cityscapes_vps` uses the Cityscapes-VPS frames instead, same 19 classes).

Convert deeplab2's checkpoint (docs/model_zoo.md), then predict or evaluate:

  .venv/bin/python scripts/convert_checkpoint.py \
      --deeplab2 mobilenet_v3_small_os16_panoptic_deeplab_cityscapes_dwo \
      --config configs/panoptic_deeplab_cityscapes_mnv3s.py --workdir runs/pdl_mnv3s_d2 \
      --config.data.data_dir=/data/tfds
  .venv/bin/python scripts/evaluate.py --workdir runs/pdl_mnv3s_d2

Train (ImageNet init converted from `mobilenet_v3_small_imagenet1k`):

  .venv/bin/python scripts/train.py --config=configs/panoptic_deeplab_cityscapes_mnv3s.py \
      --workdir=runs/pdl_mnv3s --config.data.data_dir=/data/tfds \
      --config.init.checkpoint=runs/mobilenet_v3_small_imagenet1k

Expected result (deeplab2, Cityscapes val images): PQ 48.4 by the official script (48.67 by
deeplab2's own evaluator), mIoU 69.5. `scripts/evaluate.py` scores the Cityscapes-VPS val videos
instead (VPQ with the IoU tracker), which is not the same number.
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
    c = common.base_config()
    c.data.dataset = "cityscapes_panoptic"
    c.data.crop_size_hw = (1025, 2049)
    c.data.eval_crop_size_hw = (1025, 2049)
    c.data.batch_size = 64
    c.model.meta_arch = "panoptic_deeplab"
    c.model.backbone = "mobilenet_v3_small"
    c.model.output_stride = 16
    c.model.aspp_rates = (6, 12, 18)
    c.model.batchnorm_epsilon = 1e-5
    c.model.use_depth = False
    c.optim.learning_rate = 1e-3
    c.postprocess.nms_kernel = 7
    c.train.num_steps = 60_000
    c.train.eval_every_steps = 10_000
    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
