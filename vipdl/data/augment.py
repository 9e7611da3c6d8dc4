"""Pair-consistent training augmentation (docs/training.md#augmentation) and align-corners resizing in numpy.

One draw of (scale, pad offset, crop offset, flip) is shared by frame t, frame t+1, both panoptic
maps and the depth map, so the pixels of the two frames stay comparable for the next-frame offsets.

Resizes follow TF1's `resize_bilinear` / `resize_nearest_neighbor` with `align_corners=True`
(what deeplab2 uses): source coordinate `i * (in - 1) / (out - 1)` computed in float32; bilinear
interpolates between `floor` and `ceil`; nearest rounds half away from zero.

The transform never materialises the rescaled full image: every output pixel of the crop maps to
one pixel of the (virtual) rescaled and padded canvas, so only the cropped window is interpolated.
At scale 2 on a 1024 x 2048 frame this is ~16x less work than resize-then-crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vipdl import keys


def scale_set(
    min_scale: float = 0.5,
    max_scale: float = 2.0,
    step: float = 0.1,
    *,
    reference_float32: bool = False,
) -> tuple[float, ...]:
    """The discrete set of random scales, `linspace(min, max, int((max - min) / step + 1))`.

    deeplab2 reads `min/max/step` from float32 proto fields, so its step is 0.10000000149 and
    `int(1.5 / step + 1)` is 15, not 16: its set is {0.5, 0.607, ..., 2.0} without 1.0 (docs/training.md#random-scale).
    By default we use the documented intent, 16 values 0.5, 0.6, ..., 2.0 (1.0 included): the
    step count is computed with a small tolerance and the values are rounded to 10 decimals.
    `reference_float32=True` reproduces deeplab2's float32 arithmetic (and tf.linspace) exactly.

    Returns:
      Ascending tuple of Python floats.
    """
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"scales need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
    if min_scale == max_scale:
        return (float(min_scale),)
    if not step > 0:
        raise ValueError(f"step must be > 0 when min_scale < max_scale, got {step}")
    if reference_float32:
        lo, hi, st = (float(np.float32(v)) for v in (min_scale, max_scale, step))
        num = int((hi - lo) / st + 1)
        if num == 1:
            return (lo,)
        # tf.linspace: start + i * ((stop - start) / (num - 1)) in float32, exact endpoints.
        delta = (np.float32(hi) - np.float32(lo)) / np.float32(num - 1)
        inner = np.float32(lo) + np.arange(1, num - 1, dtype=np.float32) * delta
        return (lo, *(float(v) for v in inner.astype(np.float32)), hi)
    num = int(math.floor((max_scale - min_scale) / step + 1 + 1e-6))
    return tuple(float(v) for v in np.round(np.linspace(min_scale, max_scale, num), 10))


def scaled_size(size_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """`(int(h * s), int(w * s))` with float32 arithmetic, as deeplab2 computes it."""
    s = np.float32(scale)
    return tuple(int(np.float32(n) * s) for n in size_hw)


def _source_coords(in_size: int, out_size: int, out_index: np.ndarray) -> np.ndarray:
    """float32 align-corners source coordinates of output indices (TF's legacy scaler)."""
    if out_size > 1:
        ratio = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        ratio = np.float32(in_size) / np.float32(out_size)
    return out_index.astype(np.float32) * ratio


def _out_indices(index: np.ndarray | None, size: int, name: str) -> np.ndarray:
    if index is None:
        return np.arange(size)
    index = np.asarray(index)
    if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= size)):
        raise ValueError(f"{name} must be 1-D output indices in [0, {size})")
    return index


def _check_resize_args(array: np.ndarray, size_hw) -> tuple[int, int, int, int]:
    if array.ndim not in (2, 3):
        raise ValueError(
            f"expected [height, width] or [height, width, channels], got {array.shape}"
        )
    in_h, in_w = array.shape[:2]
    out_h, out_w = (int(v) for v in size_hw)
    if min(in_h, in_w, out_h, out_w) < 1:
        raise ValueError(f"cannot resize {array.shape[:2]} to {(out_h, out_w)}")
    return in_h, in_w, out_h, out_w


def resize_bilinear_align_corners(
    image: np.ndarray,
    size_hw: tuple[int, int],
    *,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
) -> np.ndarray:
    """Bilinear resize with align corners, evaluated on a subset of output pixels.

    Args:
      image: `[height, width]` or `[height, width, channels]`, any real dtype.
      size_hw: the full output size `(out_height, out_width)`; it sets the sampling grid.
      rows: int `[r]` output rows to evaluate (any order, repeats allowed); default all.
      cols: int `[c]` output columns to evaluate; default all.

    Returns:
      float32 `[r, c]` or `[r, c, channels]`: the pixels `(rows[i], cols[j])` of the resized image.
    """
    image = np.asarray(image)
    in_h, in_w, out_h, out_w = _check_resize_args(image, size_hw)
    rows = _out_indices(rows, out_h, "rows")
    cols = _out_indices(cols, out_w, "cols")

    y = _source_coords(in_h, out_h, rows)
    x = _source_coords(in_w, out_w, cols)
    y_floor, x_floor = np.floor(y), np.floor(x)
    y0 = y_floor.astype(np.int64)
    y1 = np.minimum(np.ceil(y).astype(np.int64), in_h - 1)
    x0 = x_floor.astype(np.int64)
    x1 = np.minimum(np.ceil(x).astype(np.int64), in_w - 1)
    y_lerp, x_lerp = y - y_floor, x - x_floor
    if image.ndim == 3:
        y_lerp = y_lerp[:, None, None]
        x_lerp = x_lerp[:, None]
    else:
        y_lerp = y_lerp[:, None]

    # Gather only the source rows/columns that are read, interpolate along x once per distinct
    # source row, then along y: the order of TF's kernel (top = tl + (tr - tl) * xl, same for
    # bottom, out = top + (bottom - top) * yl). In place, `r = (r - l) * lerp + l` equals TF's
    # `l + (r - l) * lerp` bit for bit (+ commutes).
    source_rows, row_index = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    source_cols, col_index = np.unique(np.concatenate([x0, x1]), return_inverse=True)
    band = np.take(np.take(image, source_rows, axis=0), source_cols, axis=1).astype(np.float32)
    horizontal = np.take(band, col_index[cols.size :], axis=1)
    left = np.take(band, col_index[: cols.size], axis=1)
    horizontal -= left
    horizontal *= x_lerp
    horizontal += left
    bottom = np.take(horizontal, row_index[rows.size :], axis=0)
    top = np.take(horizontal, row_index[: rows.size], axis=0)
    bottom -= top
    bottom *= y_lerp
    bottom += top
    return bottom


def _nearest_indices(in_size: int, out_size: int, out_index: np.ndarray) -> np.ndarray:
    coords = _source_coords(in_size, out_size, out_index)
    # roundf (half away from zero) on non-negative values, then clamp like TF.
    floor = np.floor(coords)
    rounded = floor + (coords - floor >= np.float32(0.5))
    return np.minimum(rounded.astype(np.int64), in_size - 1)


def resize_nearest_align_corners(
    label: np.ndarray,
    size_hw: tuple[int, int],
    *,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
) -> np.ndarray:
    """Nearest-neighbour resize with align corners (labels, depth); keeps the dtype.

    Args:
      label: `[height, width]` or `[height, width, channels]`.
      size_hw: the full output size `(out_height, out_width)`.
      rows, cols: output indices to evaluate, as in `resize_bilinear_align_corners`.

    Returns:
      `[r, c]` (or `[r, c, channels]`) array of `label.dtype`.
    """
    label = np.asarray(label)
    in_h, in_w, out_h, out_w = _check_resize_args(label, size_hw)
    rows = _out_indices(rows, out_h, "rows")
    cols = _out_indices(cols, out_w, "cols")
    source_rows = _nearest_indices(in_h, out_h, rows)
    source_cols = _nearest_indices(in_w, out_w, cols)
    return np.take(np.take(label, source_rows, axis=0), source_cols, axis=1)


def random_pair_transform(
    example: dict,
    rng: np.random.Generator,
    *,
    crop_size_hw: tuple[int, int],
    scales: Sequence[float],
    ignore_label: int,
    label_divisor: int,
    pad_image_value: float = 127.5,
) -> dict:
    """Random scale, pad, crop and flip, shared by every image and map of the example.

    Draws, in this order: the scale index (uniform over `scales`), the pad offsets
    `U{0 .. max(crop - scaled, 1) - 1}` (height, then width), the crop offsets
    `U{0 .. canvas - crop}` (height, then width) and the flip (`rng.random() < 0.5`).

    Args:
      example: a decoded dataset example (docs/architecture.md): `IMAGE` and optional
        `NEXT_IMAGE` uint8 `[height, width, 3]`; `PANOPTIC` and optional `NEXT_PANOPTIC` int
        `[height, width]`; optional `DEPTH` float32 `[height, width]` metres. All must have the
        same height and width. Other keys are passed through unchanged.
      rng: the generator of this example (e.g. from grain's `random_map`).
      crop_size_hw: output `(height, width)`.
      scales: the discrete scale set, e.g. `scale_set()`.
      ignore_label, label_divisor: labels are padded with `ignore_label * label_divisor`.
      pad_image_value: image padding value (the mean pixel; 0 after the model's normalisation).

    Returns:
      A copy of `example` whose images are float32 `[crop_h, crop_w, 3]` (bilinear), panoptic
      maps int32 `[crop_h, crop_w]` (nearest) and depth float32 `[crop_h, crop_w]` (nearest,
      divided by the scale and truncated on deeplab2's x256 integer grid; padding 0).

    Kept in one function because the order of the random draws above is part of the contract.
    """
    image = example[keys.IMAGE]
    in_h, in_w = image.shape[:2]
    for key in (keys.NEXT_IMAGE, keys.PANOPTIC, keys.NEXT_PANOPTIC, keys.DEPTH):
        if key in example and example[key].shape[:2] != (in_h, in_w):
            raise ValueError(
                f"{key}: size {example[key].shape[:2]} differs from image size {(in_h, in_w)}"
            )
    crop_h, crop_w = (int(v) for v in crop_size_hw)
    if not scales:
        raise ValueError("scales must not be empty")

    scale = float(scales[rng.integers(len(scales))])
    out_h, out_w = scaled_size((in_h, in_w), scale)
    if min(out_h, out_w) < 1:
        raise ValueError(f"scale {scale} shrinks image size {(in_h, in_w)} to nothing")
    pad_y = int(rng.integers(max(crop_h - out_h, 1)))
    pad_x = int(rng.integers(max(crop_w - out_w, 1)))
    canvas_h, canvas_w = max(out_h, crop_h), max(out_w, crop_w)
    crop_y = int(rng.integers(canvas_h - crop_h + 1))
    crop_x = int(rng.integers(canvas_w - crop_w + 1))
    flip = bool(rng.random() < 0.5)

    # Row r of the crop is canvas row r + crop_y, i.e. scaled-image row r + crop_y - pad_y.
    # Flipping reverses the columns, so output column c reads crop column crop_w - 1 - c.
    out_rows = np.arange(crop_h)
    out_cols = np.arange(crop_w)[::-1] if flip else np.arange(crop_w)
    src_rows = out_rows + crop_y - pad_y
    src_cols = out_cols + crop_x - pad_x
    row_ok = (src_rows >= 0) & (src_rows < out_h)
    col_ok = (src_cols >= 0) & (src_cols < out_w)
    # Valid pixels form one rectangle; with the flip the valid columns are still contiguous.
    r0, r1 = _span(row_ok)
    c0, c1 = _span(col_ok)
    rows, cols = src_rows[r0:r1], src_cols[c0:c1]
    identity = scale == 1.0  # deeplab2 skips resizing (and the depth division) at scale 1

    def place(values: np.ndarray, fill, dtype) -> np.ndarray:
        out = np.full((crop_h, crop_w, *values.shape[2:]), fill, dtype=dtype)
        out[r0:r1, c0:c1] = values
        return out

    result = dict(example)
    for key in (keys.IMAGE, keys.NEXT_IMAGE):
        if key in example:
            src = np.asarray(example[key])
            if identity:
                values = np.take(np.take(src, rows, axis=0), cols, axis=1).astype(np.float32)
            else:
                values = resize_bilinear_align_corners(src, (out_h, out_w), rows=rows, cols=cols)
            result[key] = place(values, pad_image_value, np.float32)
    for key in (keys.PANOPTIC, keys.NEXT_PANOPTIC):
        if key in example:
            values = resize_nearest_align_corners(
                example[key], (out_h, out_w), rows=rows, cols=cols
            )
            result[key] = place(values, ignore_label * label_divisor, np.int32)
    if keys.DEPTH in example:
        values = resize_nearest_align_corners(
            np.asarray(example[keys.DEPTH], np.float32), (out_h, out_w), rows=rows, cols=cols
        )
        if not identity:
            # deeplab2 stores depth * 256 as int32 and truncates after dividing by the scale.
            values = np.trunc(values * np.float32(256) / np.float32(scale)) / np.float32(256)
        result[keys.DEPTH] = place(values, 0.0, np.float32)
    return result


def _span(mask: np.ndarray) -> tuple[int, int]:
    """`[start, stop)` of the True run of a 1-D mask with one contiguous run (or none)."""
    true = np.flatnonzero(mask)
    if true.size == 0:
        return 0, 0
    return int(true[0]), int(true[-1]) + 1


def pad_bottom_right(
    example: dict,
    size_hw: tuple[int, int],
    *,
    ignore_label: int,
    label_divisor: int,
    pad_image_value: float = 127.5,
) -> dict:
    """Evaluation preprocessing: pad bottom/right to `size_hw`, no resizing.

    Images become float32 `[h, w, 3]` (padding `pad_image_value`), panoptic maps int32 (padding
    `ignore_label * label_divisor`), depth float32 (padding 0). Other keys pass through.

    Raises:
      ValueError: if the example is larger than `size_hw` (deeplab2 would shrink it; we ask for a
        larger eval crop instead so metrics always see the original labels).
    """
    in_h, in_w = example[keys.IMAGE].shape[:2]
    out_h, out_w = (int(v) for v in size_hw)
    if in_h > out_h or in_w > out_w:
        raise ValueError(
            f"{keys.IMAGE}: size {(in_h, in_w)} exceeds the eval crop {(out_h, out_w)}; "
            "use an eval crop at least as large as the images"
        )
    fills = {
        keys.IMAGE: (pad_image_value, np.float32),
        keys.NEXT_IMAGE: (pad_image_value, np.float32),
        keys.PANOPTIC: (ignore_label * label_divisor, np.int32),
        keys.NEXT_PANOPTIC: (ignore_label * label_divisor, np.int32),
        keys.DEPTH: (0.0, np.float32),
    }
    result = dict(example)
    for key, (fill, dtype) in fills.items():
        if key in example:
            value = np.asarray(example[key])
            if value.shape[:2] != (in_h, in_w):
                raise ValueError(
                    f"{key}: size {value.shape[:2]} differs from image size {(in_h, in_w)}"
                )
            out = np.full((out_h, out_w, *value.shape[2:]), fill, dtype=dtype)
            out[:in_h, :in_w] = value
            result[key] = out
    return result
