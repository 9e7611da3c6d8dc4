"""ViP-DeepLab / Panoptic-DeepLab networks in Flax NNX (backbones, ASPP, decoders, heads)."""

from vipdl.models.decoder import ASPP, PanopticDeepLabDecoder, aspp_pool_size
from vipdl.models.heads import PredictionHead
from vipdl.models.layers import (
    BatchNorm,
    ConvBN,
    SeparableConvBN,
    resize_align_corners,
    resize_and_rescale_offsets,
)
from vipdl.models.resnet import BACKBONES, ResNet, ResNetSpec, backbone_spec, tiny_spec
from vipdl.models.vip_deeplab import PanopticDeepLab, ViPDeepLab

__all__ = [
    "ASPP",
    "BACKBONES",
    "BatchNorm",
    "ConvBN",
    "PanopticDeepLab",
    "PanopticDeepLabDecoder",
    "PredictionHead",
    "ResNet",
    "ResNetSpec",
    "SeparableConvBN",
    "ViPDeepLab",
    "aspp_pool_size",
    "backbone_spec",
    "resize_align_corners",
    "resize_and_rescale_offsets",
    "tiny_spec",
]
