r"""ViP-DeepLab with a small ResNet on the built-in synthetic street videos (CPU default).

Trains in about 10 minutes on a 2-core laptop CPU; no download needed. With `data.data_dir` empty
the videos are generated in memory (`vipdl.data.synthetic`); the demo instead trains from the
prepared TFDS copy written by `scripts/make_synthetic.py` + `scripts/prepare_data.py`:

  .venv/bin/python scripts/train.py --config=configs/synthetic.py --workdir=/tmp/vip_synth
  .venv/bin/python scripts/train.py --config=configs/synthetic.py --workdir=/tmp/vip_synth \
      --config.data.data_dir=/tmp/synthetic_tfds

Variants (`--config=configs/synthetic.py:<args>`):
  runlocal   a 4-step smoke run on tiny videos with a tiny model (seconds; used by the tests).

Expected result (measured on a shared 2-core CPU, 15 min wall including compilation):
full-video VPQ (eval/vpq, mean over 1..4-frame windows, 8 held-out videos) 28 at step 600 and
46.5 at step 1200, stuff VPQ 74 but thing VPQ ~1: the instance branch (centers, offsets) is
still undertrained at the end of this schedule. TensorBoard shows the loss terms, learning
rate, norms and predicted semantic/panoptic/center images.

Recipe vs the R50 one: a ResNet-beta of base width 16 at output stride 16 (ASPP rates 2/4/6
suit the small feature maps), narrower decoders, Adam at 1e-3 with the same poly 0.9 decay, batch
8 of 65x129 crops of 128x256 frames rescaled by 0.5..1.25 (small crops keep a CPU step
around half a second), 1200 steps. Loss weights and post-processing are deeplab2's except the
stuff area limit and the number of centers, scaled to the small frames.
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
    c.data.dataset = "synthetic"
    c.data.data_dir = ""
    c.data.crop_size_hw = (65, 129)
    c.data.eval_crop_size_hw = (129, 257)
    c.data.scales_min, c.data.scales_max, c.data.scales_step = 0.5, 1.25, 0.25
    c.data.batch_size = 8
    c.data.synthetic.height = 128
    c.data.synthetic.width = 256
    c.data.synthetic.num_frames = 6
    c.data.synthetic.num_train_videos = 96
    c.data.synthetic.num_eval_videos = 8

    c.model.meta_arch = "vip_deeplab"
    c.model.backbone = "resnet_tiny"
    c.model.backbone_width = 16
    c.model.output_stride = 16
    c.model.aspp_rates = (2, 4, 6)
    c.model.aspp_pooling = "global"
    c.model.aspp_channels = 64
    c.model.semantic_decoder_channels = 64
    c.model.semantic_head_channels = 64
    c.model.semantic_low_level_channels = (32, 16)
    c.model.instance_decoder_channels = 48
    c.model.instance_head_channels = 32
    c.model.instance_low_level_channels = (16, 8)
    c.model.use_depth = False

    c.optim.learning_rate = 1e-3
    c.train.num_steps = 1200
    c.train.log_every_steps = 50
    c.train.image_every_steps = 300
    c.train.eval_every_steps = 600
    c.train.checkpoint_every_steps = 200

    c.postprocess.stuff_area_limit = 64
    c.postprocess.keep_k_centers = 64

    if args.runlocal:
        common.shrink_for_local_run(c)
    return c
