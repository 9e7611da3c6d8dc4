r"""Panoptic-DeepLab, ResNet-50-beta OS32, single frames of Cityscapes (the ViP initialisation).

deeplab2 `configs/cityscapes/panoptic_deeplab/resnet50_beta_os32.textproto` (spec §6): Adam
2.5e-4, poly 0.9, 60k steps, batch 32, crop 1025x2049, ImageNet-pretrained backbone. Trains on
the Cityscapes panoptic images (2975 train / 500 val, `vipdl-prepare-data --dataset
cityscapes_panoptic`, docs/datasets.md) and starts from scratch unless `init.checkpoint` names a
converted ImageNet backbone checkpoint. Without the image set, `--config.data.dataset=
cityscapes_vps` trains on the annotated frames of Cityscapes-VPS (same 19 classes).

  .venv/bin/python scripts/train.py --config=configs/panoptic_deeplab_cityscapes_r50.py \
      --workdir=runs/pdl_cityscapes --config.data.data_dir=/data/tfds

Expected result: deeplab2 reports PQ 61.16 on Cityscapes val with ImageNet initialisation and
the full Cityscapes train set; without them expect considerably lower numbers. The run's
checkpoint warm-starts `configs/vip_deeplab_cityscapes_dvps_r50.py` via `init.checkpoint`.
Variants: `:runlocal` (4 steps, tiny model, synthetic data).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, runlocal=False)
    c = common.base_config()
    c.data.dataset = "cityscapes_panoptic"
    c.data.crop_size_hw = (1025, 2049)
    c.data.eval_crop_size_hw = (1025, 2049)
    c.data.batch_size = 32
    c.model.meta_arch = "panoptic_deeplab"
    c.model.use_depth = False
    c.train.num_steps = 60_000
    c.train.eval_every_steps = 10_000
    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
