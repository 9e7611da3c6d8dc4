"""ViP-DeepLab / Panoptic-DeepLab networks in Flax NNX (backbones, ASPP, decoders, heads)."""

from vipdl.models.backbones import BACKBONES, create_backbone
from vipdl.models.decoder import ASPP, PanopticDeepLabDecoder, aspp_pool_size
from vipdl.models.heads import PredictionHead
from vipdl.models.layers import (
    BatchNorm,
    ConvBN,
    SeparableConvBN,
    resize_align_corners,
    resize_and_rescale_offsets,
)
from vipdl.models.mobilenet import MobileNetV3
from vipdl.models.resnet import ResNet, ResNetSpec, backbone_spec, tiny_spec
from vipdl.models.vip_deeplab import ModelConfig, PanopticDeepLab, ViPDeepLab
from vipdl.models.wide_resnet import WideResNet, WideResNetSpec

__all__ = [
    "ASPP",
    "BACKBONES",
    "BatchNorm",
    "ConvBN",
    "MobileNetV3",
    "ModelConfig",
    "PanopticDeepLab",
    "PanopticDeepLabDecoder",
    "PredictionHead",
    "ResNet",
    "ResNetSpec",
    "SeparableConvBN",
    "ViPDeepLab",
    "WideResNet",
    "WideResNetSpec",
    "aspp_pool_size",
    "backbone_spec",
    "create_backbone",
    "resize_align_corners",
    "resize_and_rescale_offsets",
    "tiny_spec",
]
