r"""Fine-tune a trained ViP-DeepLab on your own labelled videos (docs/datasets.md#custom).

Starts from a converted official checkpoint or any vipdl run (`--config.init.checkpoint`, a
workdir or step directory) whose model matches `model=` below. The warm start restores the
encoder, both decoders and the instance heads (centre, offsets, next-frame offsets); the last
semantic layer is re-initialised when the class set differs (another number of classes, or
other class names in the checkpoint run's config.json), and the report printed at the start
lists what was restored and what was initialised. The learning rate is a fifth of the recipe
the checkpoint was trained with, for fewer steps.

  vipdl-prepare-data --dataset custom --manual_dir my_videos --data_dir data/my_videos_tfds
  .venv/bin/python scripts/train.py --config=configs/finetune_custom.py --workdir=runs/my_ft \
      --config.data.data_dir=data/my_videos_tfds --config.init.checkpoint=runs/vip_dvps_r50

Set `--config.data.crop_size_hw` / `eval_crop_size_hw` to your frame size (32k + 1, e.g.
(513, 1025) for 512x1024 frames) and `--config.model.use_depth=True` when dataset.json has a
depth_scale and the checkpoint has a depth head.

Variants (`--config=configs/finetune_custom.py:<args>`):
  model=r50_beta   (default) ViP-DeepLab R50-beta, the architecture of the official Cityscapes
                   VPS/DVPS checkpoints; Adam 5e-5, 10k steps, batch 8, 513x1025 crops.
  model=synthetic  the small model of `configs/synthetic.py` (e.g. the demo's run), CPU-sized:
                   Adam 4e-4, 300 steps, batch 4, 129x257 crops.
  steps=N          number of training steps.

Expected result: on the synthetic custom dataset (`vipdl-make-synthetic --layout custom`, six
classes instead of eight), `model=synthetic` fine-tuned from the demo model for 300 steps beats
the same 300 steps from scratch on the held-out videos; the numbers and the command are in
docs/benchmarks.md#fine-tuning-on-a-custom-dataset.
"""

from __future__ import annotations

import ml_collections

from configs import common
from configs import synthetic as synthetic_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse_arg(arg, model="r50_beta", steps=0)
    if args.model not in ("r50_beta", "synthetic"):
        raise ValueError(f"config argument model must be r50_beta or synthetic, got {args.model!r}")
    c = common.base_config()
    c.data.dataset = "custom"
    c.data.data_dir = ""  # Required: the --data_dir of `vipdl-prepare-data --dataset custom`.
    c.model.use_depth = False
    if args.model == "synthetic":
        small = synthetic_config.get_config()
        for key, value in small.model.items():
            if key != "use_depth":  # Keeps the data/model depth flags one field.
                c.model[key] = value
        c.model.meta_arch = "vip_deeplab"
        c.data.crop_size_hw = small.data.crop_size_hw
        c.data.eval_crop_size_hw = small.data.eval_crop_size_hw
        c.data.scales_min, c.data.scales_max = small.data.scales_min, small.data.scales_max
        c.data.batch_size = 4
        c.postprocess.update(small.postprocess)
        c.optim.learning_rate = small.optim.learning_rate / 5
        c.train.num_steps = 300
        c.train.log_every_steps = 25
        c.train.image_every_steps = 0
        c.train.eval_every_steps = 300
        c.train.checkpoint_every_steps = 100
    else:
        c.data.crop_size_hw = (513, 1025)
        c.data.eval_crop_size_hw = (513, 1025)
        c.data.batch_size = 8
        c.optim.learning_rate = 2.5e-4 / 5
        c.train.num_steps = 10_000
        c.train.eval_every_steps = 2_000
    if args.steps:
        c.train.num_steps = args.steps
        c.train.eval_every_steps = min(c.train.eval_every_steps, args.steps)
    return c
