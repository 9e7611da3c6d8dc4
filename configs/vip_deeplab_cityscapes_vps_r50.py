r"""ViP-DeepLab, ResNet-50-beta OS32, Cityscapes-VPS (panoptic only, no depth head).

The Cityscapes-DVPS recipe (`vip_deeplab_cityscapes_dvps_r50.py`) without the depth branch, on
the original Cityscapes-VPS labels (void = 255): Adam 2.5e-4, poly 0.9, 120k steps, batch 16
pairs, crop 513x1025, eval 1025x2049, warm start from a Panoptic-DeepLab run.

  .venv/bin/python scripts/train.py --config=configs/vip_deeplab_cityscapes_vps_r50.py \
      --workdir=runs/vip_vps --config.data.data_dir=/data/tfds \
      --config.init.checkpoint=runs/pdl_cityscapes

Expected result: deeplab2 publishes no Cityscapes-VPS number for this model; VPQ should be
close to the Cityscapes-DVPS run's VPQ (52.82 there, same images and classes).
Variants: `:runlocal` (4 steps, tiny model, synthetic data).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, runlocal=False)
    c = common.base_config()
    c.data.dataset = "cityscapes_vps"
    c.model.use_depth = False
    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
