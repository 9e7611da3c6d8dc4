r"""Panoptic-DeepLab, ResNet-50-beta OS32, single frames of Cityscapes (the ViP initialisation).

deeplab2 `configs/cityscapes/panoptic_deeplab/resnet50_beta_os32.textproto` (docs/training.md#hyper-parameters): Adam
2.5e-4, poly 0.9, 60k steps, batch 32, crop 1025x2049 (ASPP pooling window 33x65), ASPP rates
3/6/9, eval 1025x2049, NMS 13, ImageNet-pretrained backbone. Trains on the Cityscapes panoptic
images (2975 train / 500 val, `vipdl-prepare-data --dataset cityscapes_panoptic`,
docs/datasets.md) and starts from scratch unless `init.checkpoint` names a converted ImageNet
backbone checkpoint. Without the image set, `--config.data.dataset=cityscapes_vps` trains on the
annotated frames of Cityscapes-VPS (same 19 classes).

  .venv/bin/python scripts/train.py --config=configs/panoptic_deeplab_cityscapes_r50.py \
      --workdir=runs/pdl_cityscapes --config.data.data_dir=/data/tfds \
      --config.init.checkpoint=runs/resnet50_beta_imagenet1k

Or convert deeplab2's trained checkpoint (docs/model_zoo.md) and predict or evaluate with it:

  .venv/bin/python scripts/convert_checkpoint.py \
      --deeplab2 resnet50_beta_os32_panoptic_deeplab_cityscapes_trainfine \
      --config configs/panoptic_deeplab_cityscapes_r50.py --workdir runs/pdl_r50_d2 \
      --config.data.data_dir=/data/tfds
  .venv/bin/python scripts/evaluate.py --workdir runs/pdl_r50_d2

Expected result (deeplab2, Cityscapes val images, ImageNet initialisation and the full
Cityscapes train set): PQ 60.8 by the official script (61.16 by deeplab2's own evaluator), mIoU
77.0; without them expect considerably lower numbers. `scripts/evaluate.py` scores the
Cityscapes-VPS val videos (VPQ with the IoU tracker), which is not the same number. Either
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
