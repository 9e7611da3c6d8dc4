"""ViP-DeepLab training targets from a (frame t, frame t+1) pair of panoptic maps.

Follows docs/training.md#targets (deeplab2 `data/sample_generator.py`):

* semantic target `panoptic // D`; crowd (thing class, instance 0) keeps its class;
* semantic weights 1, times `small_instance_weight` on instances of area < `small_instance_area`;
* center heatmap: a Gaussian (sigma 8, truncated to 51 x 51, combined by max) at the
  half-to-even rounded mean coordinate of every instance of frame t;
* center offsets `(cy - y, cx - x)` on instance pixels of frame t;
* next-frame offsets: pixels of frame t+1 carrying the id of an instance of frame t point to that
  instance's frame-t center; weight 1 where the offset is non-zero;
* weights: center on pixels that are neither crowd nor void, offsets on non-crowd thing pixels.

An "instance" is any panoptic id whose semantic class is not `ignore_label` and whose instance id
is not 0 (the deeplab2 filter). Crowd pixels are relabelled void before this filter, in both frames.

`make_targets_reference` is a loop over instances written for obviousness; `make_targets` is the
vectorised version used by the input pipeline. Tests assert that both are equal.
"""

from __future__ import annotations

import functools

import numpy as np

from vipdl import keys


@functools.lru_cache(maxsize=8)
def gaussian_template(sigma: float) -> tuple[np.ndarray, int]:
    """The truncated Gaussian drawn at each center, and where its center lies.

    Args:
      sigma: standard deviation in pixels.

    Returns:
      `(template, offset)`: float32 `[size, size]` with `size = int(6 sigma + 3)` (51 for sigma 8)
      holding `exp(-((i - c)^2 + (j - c)^2) / (2 sigma^2))` with `c = 3 sigma + 1`, and the integer
      `offset = round(3 sigma + 1)` such that template pixel `(i, j)` lands on image pixel
      `(cy - offset + i, cx - offset + j)`. The array is read-only (it is cached).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    size = int(6 * sigma + 3)
    c = 3 * sigma + 1
    # Evaluated in float64 and cast once, as deeplab2 does, so every implementation agrees bitwise.
    r = np.arange(size, dtype=np.float64)
    template = np.exp(-((r[:, None] - c) ** 2 + (r[None, :] - c) ** 2) / (2 * sigma**2))
    template = template.astype(np.float32)
    template.flags.writeable = False
    return template, int(round(3 * sigma + 1))


def _check_label(label, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    label = np.asarray(label)
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(
            f"{name}: expected an integer array [height, width], got {label.dtype} {label.shape}"
        )
    if shape is not None and label.shape != shape:
        raise ValueError(f"{name}: shape {label.shape} differs from panoptic shape {shape}")
    if label.size and label.min() < 0:
        raise ValueError(f"{name}: panoptic ids must be >= 0, got {label.min()}")
    if label.dtype not in (np.int32, np.int64):
        label = label.astype(np.int64)
    return label


def _check_options(label_divisor: int, ignore_label: int) -> None:
    if label_divisor <= 0:
        raise ValueError(f"label_divisor must be > 0, got {label_divisor}")
    if not 0 <= ignore_label < label_divisor:
        raise ValueError(
            f"ignore_label {ignore_label} must be in [0, label_divisor={label_divisor})"
        )


def make_targets_reference(
    panoptic: np.ndarray,
    next_panoptic: np.ndarray | None,
    *,
    thing_ids,
    label_divisor: int,
    ignore_label: int,
    sigma: float = 8.0,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3.0,
) -> dict[str, np.ndarray]:
    """Plain loop-over-instances implementation of the targets; see `make_targets`."""
    _check_options(label_divisor, ignore_label)
    panoptic = _check_label(panoptic, "panoptic")
    height, width = panoptic.shape
    void = ignore_label * label_divisor

    semantic = panoptic // label_divisor
    thing_mask = np.zeros(panoptic.shape, dtype=bool)
    for thing_id in thing_ids:
        thing_mask |= semantic == thing_id
    crowd = thing_mask & (panoptic % label_divisor == 0)
    instance_label = np.where(crowd, void, panoptic)

    template, offset = gaussian_template(sigma)
    size = template.shape[0]
    # Canvas padded on every side by the template size, so no draw needs clipping.
    canvas = np.zeros((height + 2 * size, width + 2 * size), dtype=np.float32)
    semantic_weights = np.ones(panoptic.shape, dtype=np.float32)
    center_offset = np.zeros((height, width, 2), dtype=np.int64)

    if next_panoptic is not None:
        next_panoptic = _check_label(next_panoptic, "next_panoptic", panoptic.shape)
        next_semantic = next_panoptic // label_divisor
        next_thing = np.zeros(next_panoptic.shape, dtype=bool)
        for thing_id in thing_ids:
            next_thing |= next_semantic == thing_id
        next_crowd = next_thing & (next_panoptic % label_divisor == 0)
        next_instance_label = np.where(next_crowd, void, next_panoptic)
        next_offset = np.zeros((height, width, 2), dtype=np.int64)

    for panoptic_id in np.unique(instance_label):
        if panoptic_id // label_divisor == ignore_label or panoptic_id % label_divisor == 0:
            continue  # void, stuff or crowd
        mask = instance_label == panoptic_id
        ys, xs = np.nonzero(mask)
        if ys.size < small_instance_area:
            semantic_weights[mask] = small_instance_weight
        cy = int(np.round(ys.mean()))  # np.round is half-to-even, like tf.round
        cx = int(np.round(xs.mean()))
        top, left = cy - offset + size, cx - offset + size
        window = canvas[top : top + size, left : left + size]
        np.maximum(window, template, out=window)
        center_offset[ys, xs, 0] = cy - ys
        center_offset[ys, xs, 1] = cx - xs
        if next_panoptic is not None:
            nys, nxs = np.nonzero(next_instance_label == panoptic_id)
            next_offset[nys, nxs, 0] = cy - nys
            next_offset[nys, nxs, 1] = cx - nxs

    targets = {
        keys.GT_SEMANTIC: semantic.astype(np.int32),
        keys.GT_SEMANTIC_WEIGHTS: semantic_weights,
        keys.GT_CENTER_HEATMAP: canvas[size : size + height, size : size + width].copy(),
        keys.GT_CENTER_WEIGHTS: (~crowd & (semantic != ignore_label)).astype(np.float32),
        keys.GT_OFFSET: center_offset.astype(np.float32),
        keys.GT_OFFSET_WEIGHTS: (thing_mask & ~crowd).astype(np.float32),
    }
    if next_panoptic is not None:
        targets[keys.GT_NEXT_OFFSET] = next_offset.astype(np.float32)
        nonzero = (np.abs(next_offset[..., 0]) + np.abs(next_offset[..., 1])) > 0
        targets[keys.GT_NEXT_OFFSET_WEIGHTS] = nonzero.astype(np.float32)
    return targets


def make_targets(
    panoptic: np.ndarray,
    next_panoptic: np.ndarray | None,
    *,
    thing_ids,
    label_divisor: int,
    ignore_label: int,
    sigma: float = 8.0,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3.0,
) -> dict[str, np.ndarray]:
    """ViP-DeepLab targets of one augmented pair (docs/training.md#targets), vectorised.

    Args:
      panoptic: int `[height, width]`, frame t, `semantic * label_divisor + instance`; void and
        padding are `ignore_label * label_divisor`.
      next_panoptic: int `[height, width]`, frame t+1 in the same crop, or None for single-frame
        (Panoptic-DeepLab) targets.
      thing_ids: class ids that carry instances; a thing pixel with instance 0 is crowd.
      label_divisor: the D of the encoding.
      ignore_label: semantic id of void pixels.
      sigma: standard deviation of the center Gaussian, pixels.
      small_instance_area: instances with strictly fewer pixels get `small_instance_weight`.
      small_instance_weight: semantic-loss weight of small-instance pixels.

    Returns:
      Dict keyed by `vipdl.keys`: `GT_SEMANTIC` int32 `[height, width]`, `GT_SEMANTIC_WEIGHTS`,
      `GT_CENTER_HEATMAP`, `GT_CENTER_WEIGHTS`, `GT_OFFSET_WEIGHTS` float32 `[height, width]`,
      `GT_OFFSET` float32 `[height, width, 2]` (dy, dx); with `next_panoptic` also
      `GT_NEXT_OFFSET` float32 `[height, width, 2]` and `GT_NEXT_OFFSET_WEIGHTS` float32
      `[height, width]`. Semantic weights stay 1 on void pixels (the loss masks `ignore_label`).

    Kept in one function: the targets share intermediate per-instance tables.
    """
    _check_options(label_divisor, ignore_label)
    panoptic = _check_label(panoptic, "panoptic")
    height, width = panoptic.shape
    flat_panoptic = panoptic.ravel()

    semantic = flat_panoptic // label_divisor
    has_instance = flat_panoptic != semantic * label_divisor
    is_thing = _class_lookup(thing_ids, int(semantic.max(initial=0)))[semantic]
    crowd = is_thing & ~has_instance
    not_void = semantic != ignore_label

    # Pixels of center-producing ids; crowd has instance 0 so it is excluded automatically.
    pixels = np.flatnonzero(has_instance & not_void)
    ids, inverse = _dense_ids(flat_panoptic[pixels])
    area = np.bincount(inverse, minlength=ids.size)
    ys, xs = np.divmod(pixels, width)
    # Sums of integers are exact in float64 (< 2^53), so the mean equals the reference's.
    cy = np.round(np.bincount(inverse, weights=ys, minlength=ids.size) / area).astype(np.int64)
    cx = np.round(np.bincount(inverse, weights=xs, minlength=ids.size) / area).astype(np.int64)

    semantic_weights = np.ones(height * width, dtype=np.float32)
    semantic_weights[pixels[(area < small_instance_area)[inverse]]] = small_instance_weight

    center_offset = np.zeros((height * width, 2), dtype=np.float32)
    center_offset[pixels, 0] = cy[inverse] - ys
    center_offset[pixels, 1] = cx[inverse] - xs

    heatmap = np.zeros((height, width), dtype=np.float32)
    template, offset = gaussian_template(sigma)
    size = template.shape[0]
    for y, x in zip(cy - offset, cx - offset):
        # Clip the template's box to the image; only these pixels are touched.
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + size, height), min(x + size, width)
        if y0 >= y1 or x0 >= x1:
            continue
        window = heatmap[y0:y1, x0:x1]
        np.maximum(window, template[y0 - y : y1 - y, x0 - x : x1 - x], out=window)

    targets = {
        keys.GT_SEMANTIC: semantic.astype(np.int32).reshape(height, width),
        keys.GT_SEMANTIC_WEIGHTS: semantic_weights.reshape(height, width),
        keys.GT_CENTER_HEATMAP: heatmap,
        keys.GT_CENTER_WEIGHTS: (~crowd & not_void).astype(np.float32).reshape(height, width),
        keys.GT_OFFSET: center_offset.reshape(height, width, 2),
        keys.GT_OFFSET_WEIGHTS: (is_thing & ~crowd).astype(np.float32).reshape(height, width),
    }
    if next_panoptic is not None:
        next_flat = _check_label(next_panoptic, "next_panoptic", panoptic.shape).ravel()
        next_semantic = next_flat // label_divisor
        # Crowd of frame t+1 (instance 0) and void can never equal an instance id of frame t.
        candidates = np.flatnonzero(
            (next_flat != next_semantic * label_divisor) & (next_semantic != ignore_label)
        )
        position = np.searchsorted(ids, next_flat[candidates])
        matched = position < ids.size
        matched[matched] = ids[position[matched]] == next_flat[candidates[matched]]
        candidates, position = candidates[matched], position[matched]
        nys, nxs = np.divmod(candidates, width)
        dy, dx = cy[position] - nys, cx[position] - nxs
        next_offset = np.zeros((height * width, 2), dtype=np.float32)
        next_offset[candidates, 0] = dy
        next_offset[candidates, 1] = dx
        next_weights = np.zeros(height * width, dtype=np.float32)
        next_weights[candidates] = (dy != 0) | (dx != 0)
        targets[keys.GT_NEXT_OFFSET] = next_offset.reshape(height, width, 2)
        targets[keys.GT_NEXT_OFFSET_WEIGHTS] = next_weights.reshape(height, width)
    return targets


def _dense_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_inverse=True)` for non-negative ints, without sorting.

    Panoptic ids of one image span a small range (a few thing classes times the divisor), so a
    histogram over `[min, max]` is much faster than the sort inside `np.unique`.
    """
    if values.size == 0:
        return values.astype(np.int64), np.zeros(0, dtype=np.int64)
    low = int(values.min())
    span = int(values.max()) - low + 1
    if span > 4 * values.size + 65536:
        return np.unique(values, return_inverse=True)
    shifted = values - low
    present = np.flatnonzero(np.bincount(shifted, minlength=span))
    lookup = np.zeros(span, dtype=np.int64)
    lookup[present] = np.arange(present.size)
    return present + low, lookup[shifted]


def _class_lookup(class_ids, max_class: int) -> np.ndarray:
    """Boolean table `[max(max_class, max(class_ids)) + 1]`, True at `class_ids`."""
    class_ids = np.asarray(tuple(class_ids), dtype=np.int64)
    table = np.zeros(max(max_class, int(class_ids.max(initial=0))) + 1, dtype=bool)
    table[class_ids] = True
    return table
