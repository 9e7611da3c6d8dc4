r"""ViP-DeepLab, ResNet-50-beta OS32, Cityscapes-DVPS (panoptic + depth).

deeplab2 `configs/cityscapes_dvps/vip_deeplab/resnet50_beta_os32.textproto` (docs/training.md#hyper-parameters): Adam
(eps 1e-7) 2.5e-4 with poly 0.9 decay over 120k steps, batch 16 pairs, crop 513x1025, eval
1025x2049, random scale 0.5..2.0, loss weights 1 / 200 / 0.01 / 0.01 / 0.1 (depth), ASPP
rates 3/6/9 with image pooling over the training crop. Initialise from a Panoptic-DeepLab run:
encoder, semantic and instance branches are restored, the next-frame branch and depth head start
fresh (the printed warm-start report lists both).

  .venv/bin/python scripts/train.py --config=configs/vip_deeplab_cityscapes_dvps_r50.py \
      --workdir=runs/vip_dvps --config.data.data_dir=/data/tfds \
      --config.init.checkpoint=runs/pdl_cityscapes
  # 16 pairs on fewer accelerators: --config.optim.grad_accum_steps=4 (4 x 4 pairs per step).

Or convert deeplab2's trained checkpoint (docs/model_zoo.md) and predict or evaluate with it:

  .venv/bin/python scripts/convert_checkpoint.py \
      --deeplab2 resnet50_beta_os32_vip_deeplab_cityscapes_dvps_train \
      --config configs/vip_deeplab_cityscapes_dvps_r50.py --workdir runs/vip_r50_d2 \
      --config.data.data_dir=/data/tfds
  .venv/bin/python scripts/evaluate.py --workdir runs/vip_r50_d2

Expected result (deeplab2, Cityscapes-pretrained init): VPQ 52.82 on Cityscapes-DVPS val
(VPQ-k 60.61 / 53.14 / 49.89 / 47.66 for k = 0, 5, 10, 15), depth AbsRel 0.112.
Variants: `:runlocal` (4 steps, tiny model, synthetic data).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, runlocal=False)
    c = common.base_config()  # The layout's defaults are this recipe.
    c.data.dataset = "cityscapes_dvps"
    c.model.use_depth = True
    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
