r"""ViP-DeepLab, ResNet-50-beta OS32, KITTI-STEP (dense labels, person and car tracked).

deeplab2 has no ViP-DeepLab KITTI-STEP config; this uses its KITTI-STEP Motion-DeepLab recipe
(docs/training.md#hyper-parameters): Adam 1e-4, poly 0.9, 50k steps, batch 32, crop and eval size 385x1249,
stuff_area_limit 0, initialised from the Cityscapes Panoptic-DeepLab checkpoint.

  .venv/bin/python scripts/train.py --config=configs/vip_deeplab_kitti_step_r50.py \
      --workdir=runs/vip_kitti_step --config.data.data_dir=/data/tfds \
      --config.init.checkpoint=runs/pdl_cityscapes

Expected result: no published ViP-DeepLab number in deeplab2 for this recipe; for reference its
Motion-DeepLab reaches STQ 57.7 and Panoptic-DeepLab PQ 48.31 on KITTI-STEP val. In-loop
evaluation reports VPQ (STQ is computed offline with `vipdl-eval-stq`).
Variants: `:runlocal` (4 steps, tiny model, synthetic data).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, runlocal=False)
    c = common.base_config()
    c.data.dataset = "kitti_step"
    c.data.crop_size_hw = (385, 1249)
    c.data.eval_crop_size_hw = (385, 1249)
    c.data.batch_size = 32
    c.model.use_depth = False
    c.optim.learning_rate = 1e-4
    c.train.num_steps = 50_000
    c.postprocess.stuff_area_limit = 0
    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
