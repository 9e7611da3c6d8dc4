r"""ViP-DeepLab, ResNet-50-beta OS32, VIPSeg (124 classes, 58 thing classes, in-the-wild videos).

deeplab2 has no VIPSeg config. Choices: the Cityscapes-DVPS optimiser recipe (Adam 2.5e-4,
poly 0.9, batch 16 pairs) for 120k steps, VIPSeg's common 720p-short-side setting approximated
by a 385x705 training crop of the frames as prepared, eval at 737x1281 (frames are padded, or
resized down when larger), no depth.

  .venv/bin/python scripts/train.py --config=configs/vip_deeplab_vipseg_r50.py \
      --workdir=runs/vip_vipseg --config.data.data_dir=/data/tfds

Expected result: no reference number exists for this recipe (deeplab2 never trained on VIPSeg);
compare against the VIPSeg paper's baselines when reporting.
Variants: `:runlocal` (4 steps, tiny model, synthetic data).
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, runlocal=False)
    c = common.base_config()
    c.data.dataset = "vipseg"
    c.data.crop_size_hw = (385, 705)
    c.data.eval_crop_size_hw = (737, 1281)
    c.model.use_depth = False
    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
