r"""ViP-DeepLab, ResNet-50-beta OS32, SemKITTI-DVPS (sparse LiDAR labels + depth).

deeplab2 `configs/semkitti_dvps/vip_deeplab/resnet50_beta_os32.textproto` (docs/training.md#hyper-parameters): Adam
2.5e-4, poly 0.9, 120k steps, batch 16 pairs, crop and eval size 385x1281, depth weight 0.1,
initialised from the Cityscapes Panoptic-DeepLab checkpoint.

  .venv/bin/python scripts/train.py --config=configs/vip_deeplab_semkitti_dvps_r50.py \
      --workdir=runs/vip_semkitti --config.data.data_dir=/data/tfds \
      --config.init.checkpoint=runs/pdl_cityscapes

Or convert deeplab2's trained checkpoint (docs/model_zoo.md) and predict or evaluate with it:

  .venv/bin/python scripts/convert_checkpoint.py \
      --deeplab2 resnet50_beta_os32_vip_deeplab_semkitti_dvps_train \
      --config configs/vip_deeplab_semkitti_dvps_r50.py --workdir runs/vip_semkitti_d2 \
      --config.data.data_dir=/data/tfds
  .venv/bin/python scripts/evaluate.py --workdir runs/vip_semkitti_d2

Expected result (deeplab2): VPQ 45.63 on SemKITTI-DVPS val (VPQ over 1 / 5 / 10 / 20-frame
windows: 48.6 / 45.8 / 44.5 / 43.6), depth AbsRel 0.139.
Variants: `:runlocal` (4 steps, tiny model, synthetic data).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, runlocal=False)
    c = common.base_config()
    c.data.dataset = "semkitti_dvps"
    c.data.crop_size_hw = (385, 1281)
    c.data.eval_crop_size_hw = (385, 1281)
    c.model.use_depth = True
    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
