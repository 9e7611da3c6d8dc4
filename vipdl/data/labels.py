"""Panoptic label encodings shared by the converters, the writers and the evaluation.

In memory a label map is int32 `semantic * label_divisor + instance`. On disk the
datasets use other encodings; the conversions live here so there is one home for each.
"""

from __future__ import annotations

import numpy as np


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO/Cityscapes-VPS segment id of an RGB PNG: R + 256 G + 256^2 B.

    Args:
      rgb: uint8 [height, width, 3].

    Returns:
      int32 [height, width] segment ids.
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB array [height, width, 3], got shape {rgb.shape}")
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_id`: int [height, width] in [0, 2^24) -> uint8 [height, width, 3]."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError(f"ids must be in [0, 2^24) to fit an RGB PNG, got [{ids.min()}, {ids.max()}]")
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


def step_rgb_to_panoptic(rgb: np.ndarray, label_divisor: int) -> np.ndarray:
    """KITTI-STEP / MOTChallenge-STEP PNG (R = semantic, G * 256 + B = instance) -> int32."""
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB array [height, width, 3], got shape {rgb.shape}")
    rgb = rgb.astype(np.int32)
    instance = rgb[..., 1] * 256 + rgb[..., 2]
    if instance.size and instance.max() >= label_divisor:
        raise ValueError(f"instance id {instance.max()} does not fit label_divisor {label_divisor}")
    return rgb[..., 0] * label_divisor + instance


def panoptic_to_step_rgb(panoptic: np.ndarray, label_divisor: int) -> np.ndarray:
    """int [height, width] panoptic -> KITTI-STEP RGB uint8 [height, width, 3]."""
    panoptic = np.asarray(panoptic).astype(np.int64)
    semantic = panoptic // label_divisor
    instance = panoptic % label_divisor
    if semantic.size and (semantic.max() > 255 or instance.max() >= 65536):
        raise ValueError("semantic must be <= 255 and instance < 65536 for the STEP encoding")
    return np.stack([semantic, instance // 256, instance % 256], axis=-1).astype(np.uint8)
