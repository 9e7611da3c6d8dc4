"""Plain numpy reference of the Panoptic-DeepLab post-processing rules (spec §7.1).

Written for readability, following deeplab2's procedure step by step (explicit loops over
centers, instance ids and classes, dynamic shapes). `vipdl.postprocess.panoptic` is the fast
JAX version; tests assert both return identical maps. The same deliberate choices apply: a
proper top-k (ties to the earlier pixel in row-major order) and squared distances.

Also the host version of ViP-DeepLab's pairwise stitcher (spec §7.2 step 6, deeplab2's
`stitch_video_panoptic_prediction`): `pair_matches` and `stitch_pair`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
    center_threshold: float = 0.1,
    nms_kernel: int = 13,
    keep_k_centers: int = 400,
    stuff_area_limit: int = 2048,
) -> np.ndarray:
    """Numpy twin of `vipdl.postprocess.panoptic.panoptic_from_predictions`.

    Args and return value as there (numpy arrays; int32 [height, width]).
    """
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


def pair_matches(
    concat_next: np.ndarray, next_panoptic: np.ndarray, *, label_divisor: int
) -> dict[int, int]:
    """Mutual-best-IoU matches of spec §7.2 steps 6b-6d: {next label: concat label}.

    Candidates are pairs of segments with the same class, both instance ids non-zero and a
    non-empty intersection; there is no IoU threshold. Pairs are visited by ascending IoU
    (ties in ascending (concat, next) label order) and each side remembers its last partner,
    i.e. its best one; a pair is kept when the choice is mutual.
    """
    concat_next = np.asarray(concat_next, np.int64)
    next_panoptic = np.asarray(next_panoptic, np.int64)
    if concat_next.shape != next_panoptic.shape:
        raise ValueError(
            f"concat_next {concat_next.shape} and next_panoptic {next_panoptic.shape} differ in shape"
        )
    concat_ids, concat_areas = np.unique(concat_next, return_counts=True)
    next_ids, next_areas = np.unique(next_panoptic, return_counts=True)
    concat_area = dict(zip(concat_ids.tolist(), concat_areas.tolist()))
    next_area = dict(zip(next_ids.tolist(), next_areas.tolist()))
    # Labels are < 2^31, so the pair packs losslessly into int64.
    pair_ids, intersections = np.unique(concat_next * (1 << 31) + next_panoptic, return_counts=True)
    candidates = []
    for pair_id, inter in zip(pair_ids.tolist(), intersections.tolist()):
        a, b = divmod(pair_id, 1 << 31)
        if a // label_divisor != b // label_divisor:
            continue
        if a % label_divisor == 0 or b % label_divisor == 0:
            continue
        candidates.append((inter / (concat_area[a] + next_area[b] - inter), a, b))
    candidates.sort(key=lambda c: c[0])  # stable: equal IoUs stay in label order
    best_next: dict[int, int] = {}
    best_concat: dict[int, int] = {}
    for _, a, b in candidates:
        best_next[a] = b
        best_concat[b] = a
    return {b: a for a, b in best_next.items() if best_concat[b] == a}


def stitch_pair(
    concat_next: np.ndarray, next_panoptic: np.ndarray, *, label_divisor: int
) -> np.ndarray:
    """Propagates frame t ids onto frame t+1's standalone prediction (spec §7.2 step 6).

    Args:
      concat_next: int [h, w], frame t+1 from the two-frame canvas (ids shared with frame t).
      next_panoptic: int [h, w], frame t+1 post-processed on its own.
      label_divisor: D.

    Returns:
      int32 [h, w]: `next_panoptic` where matched segments take their concat label and
      unmatched instances get `instance + D // 2` (new instances); stuff, crowd and void are
      unchanged.

    Raises:
      ValueError: if an instance id + D // 2 would reach D, or the shapes differ.
    """
    next_panoptic = np.asarray(next_panoptic)
    offset = label_divisor // 2
    matches = pair_matches(concat_next, next_panoptic, label_divisor=label_divisor)
    semantic = next_panoptic // label_divisor
    instance = next_panoptic % label_divisor
    if instance.size and instance.max() + offset >= label_divisor:
        raise ValueError(
            f"next_panoptic has instance id {instance.max()}; with the new-instance offset "
            f"{offset} it would reach label_divisor={label_divisor}"
        )
    stitched = np.where(instance > 0, semantic * label_divisor + instance + offset, next_panoptic)
    for next_label, concat_label in matches.items():
        stitched[next_panoptic == next_label] = concat_label
    return stitched.astype(np.int32)
