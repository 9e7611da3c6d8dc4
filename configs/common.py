"""Shared pieces of the training configs: the full field layout with deeplab2 defaults.

Every `configs/<name>.py` starts from `base_config()` and overrides what its recipe changes, so
all configs have the same fields (a config typo on the command line fails against this layout).
Defaults are deeplab2's (docs/training.md#hyper-parameters): Adam eps 1e-7, poly 0.9 decay to 0, loss weights
semantic 1 (top-k 0.2) / center 200 / offsets 0.01 / next offsets 0.01 / depth 0.1,
post-processing threshold 0.1, NMS 13, 400 centers, stuff area 2048.
"""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, **defaults):
    """Parses `get_config(arg)` strings like "runlocal,variant=tiny" into typed values.

    Bare names are booleans set to True; `key=value` pairs are converted to the type of the
    default. Unknown keys raise a ValueError naming the known ones.
    """
    out = ml_collections.ConfigDict(dict(defaults))
    for item in filter(None, (arg or "").split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}")
        default = defaults[key]
        if not eq:
            if not isinstance(default, bool):
                raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
            out[key] = True
        elif isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"config argument {key}={value!r} is not a boolean")
            out[key] = value.lower() in ("true", "1")
        else:
            try:
                out[key] = type(default)(value)
            except ValueError:
                raise ValueError(
                    f"config argument {key}={value!r} is not a {type(default).__name__}"
                ) from None
    return out


def base_config() -> ml_collections.ConfigDict:
    """The complete field layout; values are the R50-beta ViP-DeepLab Cityscapes-DVPS recipe."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    use_depth = ml_collections.FieldReference(False)

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "cityscapes_dvps"  # A name of vipdl.data.descriptors.DESCRIPTORS, or "custom".
    c.data.data_dir = ""  # Prepared TFDS data dir; '' = in-memory synthetic videos.
    # dataset "custom": its descriptor (JSON), filled in from data_dir at train start so that the
    # workdir's config.json names the classes; leave empty.
    c.data.custom_descriptor = ""
    c.data.train_split = "train"
    c.data.eval_split = "val"
    c.data.crop_size_hw = (513, 1025)  # Training crop (32k + 1).
    c.data.eval_crop_size_hw = (1025, 2049)  # Evaluation input size (pad bottom/right).
    c.data.scales_min = 0.5  # Random scale set linspace(min, max, step) (docs/training.md#augmentation).
    c.data.scales_max = 2.0
    c.data.scales_step = 0.1
    c.data.batch_size = 16  # Global batch (pairs), split over processes and devices.
    c.data.num_workers = 0  # grain worker processes per host (0 = in-process threads).
    c.data.use_depth = use_depth  # Same value as model.use_depth.
    c.data.synthetic = ml_collections.ConfigDict()  # Used only when data_dir is ''.
    c.data.synthetic.height = 128
    c.data.synthetic.width = 256
    c.data.synthetic.num_frames = 6
    c.data.synthetic.object_scale = 1.0  # SyntheticConfig.object_scale (< 1: smaller objects).
    c.data.synthetic.annotation_stride = 1  # Raw frames between annotated frames.
    c.data.synthetic.num_train_videos = 64
    c.data.synthetic.num_eval_videos = 8
    c.data.synthetic.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.meta_arch = "vip_deeplab"  # 'vip_deeplab' | 'panoptic_deeplab'.
    c.model.backbone = "resnet50_beta"  # A name of vipdl.models.backbones.BACKBONES.
    c.model.backbone_width = 0  # resnet_tiny base width (0 = its default).
    c.model.backbone_blocks = ()  # Blocks per stage override (() = the backbone's own).
    c.model.output_stride = 32
    c.model.aspp_rates = (3, 6, 9)
    c.model.aspp_channels = 256
    c.model.aspp_pooling = "train_crop"  # 'train_crop' (deeplab2) | 'global'.
    c.model.semantic_decoder_channels = 256
    c.model.semantic_head_channels = 256
    c.model.semantic_low_level_channels = (64, 32)
    c.model.instance_decoder_channels = 128
    c.model.instance_head_channels = 32
    c.model.instance_low_level_channels = (32, 16)
    c.model.use_depth = use_depth
    c.model.depth_head_channels = 64
    c.model.dropout_rate = 0.1  # After the ASPP projection (docs/architecture.md#aspp), training only.
    c.model.batchnorm_epsilon = 1e-3  # Every BatchNorm (deeplab2's MobileNetV3 recipes: 1e-5).
    c.model.dtype = "float32"  # Compute dtype: 'float32' | 'bfloat16' (params stay float32).
    c.model.remat = False  # Rematerialise backbone blocks to save activation memory.

    c.loss = ml_collections.ConfigDict()
    c.loss.semantic_weight = 1.0
    c.loss.top_k_percent = 0.2
    c.loss.center_weight = 200.0
    c.loss.offset_weight = 0.01
    c.loss.next_offset_weight = 0.01
    c.loss.depth_weight = 0.1

    num_steps = ml_collections.FieldReference(120_000)
    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 2.5e-4
    c.optim.end_learning_rate = 0.0
    c.optim.power = 0.9
    c.optim.adam_eps = 1e-7  # Keras default (optax's is 1e-8).
    c.optim.grad_accum_steps = 1  # Micro-batches per step (keeps the global batch on small HW).

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = num_steps
    c.train.log_every_steps = 100
    c.train.image_every_steps = 2000  # 0 disables image summaries.
    c.train.eval_every_steps = 10_000
    c.train.checkpoint_every_steps = 1000
    c.train.keep_checkpoints = 3  # Latest N kept, plus the best by eval/vpq.

    c.postprocess = ml_collections.ConfigDict()
    c.postprocess.center_threshold = 0.1
    c.postprocess.nms_kernel = 13
    c.postprocess.keep_k_centers = 400
    c.postprocess.stuff_area_limit = 2048

    c.eval = ml_collections.ConfigDict()
    c.eval.mode = "video"  # 'video' (full-video VPQ via vipdl.inference) | 'none'.
    c.eval.max_videos = 0  # 0 = all videos of the eval split.
    c.eval.batch_size = 1  # Frames per device call of the video predictor.

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1 = all devices not used by fsdp.
    c.mesh.fsdp = 1
    c.mesh.min_fsdp_size = 2**14  # Smaller arrays stay replicated under fsdp.

    c.init = ml_collections.ConfigDict()
    c.init.checkpoint = ""  # Warm start (partial restore): a workdir or step dir.
    return c


def shrink_for_local_run(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`runlocal`: a few steps on a tiny model and tiny synthetic videos, for a quick look."""
    c.data.data_dir = ""
    c.data.dataset = "synthetic"
    c.data.synthetic.height = 64
    c.data.synthetic.width = 96
    c.data.synthetic.num_frames = 3
    c.data.synthetic.annotation_stride = 1
    c.data.synthetic.num_train_videos = 4
    c.data.synthetic.num_eval_videos = 1
    c.data.crop_size_hw = (33, 65)
    c.data.eval_crop_size_hw = (65, 97)
    c.data.scales_min, c.data.scales_max, c.data.scales_step = 0.75, 1.25, 0.25
    c.data.batch_size = 8
    c.model.use_depth = False
    c.model.backbone = "resnet_tiny"
    c.model.backbone_width = 4
    c.model.backbone_blocks = (1, 1, 1, 1)
    c.model.output_stride = 32
    c.model.aspp_rates = (1, 2, 3)
    c.model.aspp_pooling = "global"
    c.model.aspp_channels = 8
    c.model.semantic_decoder_channels = 8
    c.model.semantic_head_channels = 8
    c.model.semantic_low_level_channels = (8, 4)
    c.model.instance_decoder_channels = 8
    c.model.instance_head_channels = 4
    c.model.instance_low_level_channels = (4, 4)
    c.model.depth_head_channels = 4
    c.train.num_steps = 4
    c.train.log_every_steps = 2
    c.train.image_every_steps = 0
    c.train.eval_every_steps = 4
    c.train.checkpoint_every_steps = 2
    c.postprocess.stuff_area_limit = 16
    c.postprocess.nms_kernel = 3
    c.postprocess.keep_k_centers = 16
    c.eval.max_videos = 1
    c.init.checkpoint = ""
    return c
