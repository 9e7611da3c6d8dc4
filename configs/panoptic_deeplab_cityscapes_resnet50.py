r"""Panoptic-DeepLab, ResNet-50 (original 7x7 stem) OS32, Cityscapes.

deeplab2 `configs/cityscapes/panoptic_deeplab/resnet50_os32_merge_with_pure_tf_func.textproto`:
ResNet-50 at output stride 32, ASPP rates 3/6/9 with image pooling over the 1025x2049 training
crop (window 33x65), decoder 256 with low-level projections 64/32 (res3, res2), instance decoder
128 with 32/16, heads 256 / 32 / 32, eval 1025x2049, NMS 13; Adam 2.5e-4, poly 0.9, 60k steps,
batch 8, ImageNet-pretrained backbone. (The `_r50` configs are ResNet-50-beta; this one is the
plain ResNet-50.) Data: the Cityscapes panoptic images (`vipdl-prepare-data --dataset
cityscapes_panoptic`; `--config.data.dataset=cityscapes_vps` uses the Cityscapes-VPS frames
instead, same 19 classes).

Convert deeplab2's checkpoint (docs/model_zoo.md), then predict or evaluate:

  .venv/bin/python scripts/convert_checkpoint.py \
      --deeplab2 resnet50_os32_panoptic_deeplab_cityscapes_trainfine \
      --config configs/panoptic_deeplab_cityscapes_resnet50.py --workdir runs/pdl_resnet50_d2 \
      --config.data.data_dir=/data/tfds
  .venv/bin/python scripts/evaluate.py --workdir runs/pdl_resnet50_d2

Train (ImageNet init converted from `resnet50_imagenet1k`):

  .venv/bin/python scripts/train.py --config=configs/panoptic_deeplab_cityscapes_resnet50.py \
      --workdir=runs/pdl_resnet50 --config.data.data_dir=/data/tfds \
      --config.init.checkpoint=runs/resnet50_imagenet1k

Expected result (deeplab2, Cityscapes val images): PQ 59.8 by the official script (60.24 by
deeplab2's own evaluator), mIoU 76.0. `scripts/evaluate.py` scores the Cityscapes-VPS val videos
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
    c.data.batch_size = 8
    c.model.meta_arch = "panoptic_deeplab"
    c.model.backbone = "resnet50"
    c.model.use_depth = False
    c.train.num_steps = 60_000
    c.train.eval_every_steps = 10_000
    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
