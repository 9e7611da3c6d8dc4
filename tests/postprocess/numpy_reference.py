"""Plain numpy reference of the Panoptic-DeepLab post-processing rules (docs/postprocessing.md#panoptic-deeplab-post-processing), for tests.

Written for readability, following deeplab2's procedure step by step (explicit loops over
centers, instance ids and classes, dynamic shapes). `vipdl.postprocess.panoptic` is the fast
JAX version; tests assert both return identical maps. The same deliberate choices apply: a
proper top-k (ties to the earlier pixel in row-major order) and squared distances.

The host pairwise stitcher (`pair_matches`, `stitch_pair`) is production code and lives in
`vipdl.postprocess.two_frame`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vipdl.postprocess.panoptic import DEFAULT_OPTIONS, PostprocessOptions


def nms_heatmap(
    center_heatmap: np.ndarray, *, center_threshold: float, nms_kernel: int
) -> np.ndarray:
    """Threshold + max-pool NMS with zero padding; float32 [height, width]."""
    heat = np.asarray(center_heatmap, np.float32)
    heat = np.where(heat > np.float32(center_threshold), heat, np.float32(0))
    height, width = heat.shape
    pad_begin = (nms_kernel - 1) // 2
    pad_end = nms_kernel - 1 - pad_begin
    padded = np.pad(heat, ((pad_begin, pad_end), (pad_begin, pad_end)))
    pooled = np.full_like(heat, -np.inf)
    for dy in range(nms_kernel):
        for dx in range(nms_kernel):
            pooled = np.maximum(pooled, padded[dy : dy + height, dx : dx + width])
    return np.where(pooled == heat, heat, np.float32(0))


def find_centers(
    center_heatmap: np.ndarray,
    *,
    center_threshold: float = 0.1,
    nms_kernel: int = 13,
    keep_k_centers: int = 400,
) -> tuple[np.ndarray, np.ndarray]:
    """Centers after threshold, NMS and top-k.

    Returns:
      (int64 [n, 2] centers (y, x) in row-major order, float32 [n] scores), n <= keep_k.
    """
    nms = nms_heatmap(center_heatmap, center_threshold=center_threshold, nms_kernel=nms_kernel)
    flat = nms.reshape(-1)
    index = np.flatnonzero(flat > 0)  # row-major
    if 0 < keep_k_centers < index.size:
        # Highest scores first; a stable sort keeps row-major order among equal scores.
        order = np.argsort(-flat[index], kind="stable")
        index = np.sort(index[order[:keep_k_centers]])
    width = nms.shape[1]
    centers = np.stack([index // width, index % width], axis=-1).reshape(-1, 2)
    return centers, flat[index]


def group_pixels(centers: np.ndarray, offset_map: np.ndarray) -> np.ndarray:
    """1 + index of the nearest center per pixel (first on ties); zeros if no centers."""
    offsets = np.asarray(offset_map, np.float32)
    height, width, _ = offsets.shape
    if len(centers) == 0:
        return np.zeros((height, width), np.int32)
    ys, xs = np.meshgrid(
        np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij"
    )
    py = ys + offsets[..., 0]
    px = xs + offsets[..., 1]
    best = np.full((height, width), np.inf, np.float32)
    nearest = np.zeros((height, width), np.int32)
    for i, (cy, cx) in enumerate(np.asarray(centers, np.float32)):
        dy = py - cy
        dx = px - cx
        dist = dy * dy + dx * dx
        closer = dist < best
        best[closer] = dist[closer]
        nearest[closer] = i + 1
    return nearest


def merge_semantic_and_instance(
    semantic: np.ndarray,
    instance: np.ndarray,
    *,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    stuff_area_limit: int,
) -> np.ndarray:
    """Deeplab2's pure-TF merge (majority vote, per-class renumbering, stuff area >= limit)."""
    semantic = np.asarray(semantic)
    instance = np.asarray(instance)
    panoptic = np.full(semantic.shape, ignore_label * label_divisor, np.int32)
    thing_pixel = np.isin(semantic, list(thing_ids))
    ids, first_index = np.unique(instance.reshape(-1), return_index=True)
    count_per_class: dict[int, int] = {}
    for instance_id in ids[np.argsort(first_index)]:  # order of first appearance
        if instance_id == 0:
            continue
        mask = (instance == instance_id) & thing_pixel
        if not mask.any():
            continue
        majority = int(np.argmax(np.bincount(semantic[mask])))  # ties -> smaller class
        count_per_class[majority] = count_per_class.get(majority, 0) + 1
        panoptic[mask] = majority * label_divisor + count_per_class[majority]
    for class_id in np.unique(semantic):
        if class_id in thing_ids:
            continue
        mask = (semantic == class_id) & (instance == 0)
        if mask.sum() >= stuff_area_limit:
            panoptic[mask] = class_id * label_divisor
    return panoptic


def panoptic_from_predictions(
    semantic_logits: np.ndarray,
    center_heatmap: np.ndarray,
    offset_map: np.ndarray,
    *,
    thing_ids: Sequence[int],
    label_divisor: int,
    ignore_label: int,
    options: PostprocessOptions = DEFAULT_OPTIONS,
) -> np.ndarray:
    """Numpy twin of `vipdl.postprocess.panoptic.panoptic_from_predictions`.

    Args and return value as there (numpy arrays; int32 [height, width]).
    """
    center_threshold, nms_kernel = options.center_threshold, options.nms_kernel
    keep_k_centers, stuff_area_limit = options.keep_k_centers, options.stuff_area_limit
    semantic_logits = np.asarray(semantic_logits)
    if semantic_logits.ndim != 3:
        raise ValueError(
            f"semantic_logits must be [height, width, classes], got shape {semantic_logits.shape}"
        )
    height, width, _ = semantic_logits.shape
    if np.shape(center_heatmap) != (height, width):
        raise ValueError(f"center_heatmap must be [height, width] = {(height, width)}")
    if np.shape(offset_map) != (height, width, 2):
        raise ValueError(f"offset_map must be [height, width, 2] = {(height, width, 2)}")
    slots = height * width if keep_k_centers <= 0 else min(keep_k_centers, height * width)
    if slots >= label_divisor:
        raise ValueError(
            f"keep_k_centers={keep_k_centers} gives {slots} center slots; per-class instance ids "
            f"could then reach label_divisor={label_divisor}. Use fewer centers."
        )
    semantic = np.argmax(semantic_logits, axis=-1).astype(np.int32)
    centers, _ = find_centers(
        center_heatmap,
        center_threshold=center_threshold,
        nms_kernel=nms_kernel,
        keep_k_centers=keep_k_centers,
    )
    instance = group_pixels(centers, offset_map)
    instance[~np.isin(semantic, list(thing_ids))] = 0
    return merge_semantic_and_instance(
        semantic,
        instance,
        thing_ids=thing_ids,
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        stuff_area_limit=stuff_area_limit,
    )


_OPTION_NAMES = ("center_threshold", "nms_kernel", "keep_k_centers", "stuff_area_limit")


def with_options(**kwargs) -> dict:
    """Flat test keyword arguments -> the label arguments plus one `options=PostprocessOptions`."""
    options = {k: kwargs.pop(k) for k in _OPTION_NAMES if k in kwargs}
    return {**kwargs, "options": PostprocessOptions(**options)}
