"""Label-map bookkeeping for host-side stitching and tracking: tracked ids and dense tables.

**Tracked ids.** Post-processing gives `class * label_divisor + instance` per frame, with
instance ids below the label divisor D. Track ids over a whole video have no such limit
(docs/inference.md#track-ids), so the stitchers hand out *wide* ids, int64
`class << 32 | track`: any number of tracks per class, and the same (class, track) pair as the
`class * D + track` convention whenever track < D. `to_wide`, `split_wide` and `wide_to_panoptic`
convert; the last one raises `TrackIdOverflowError` where the narrow convention cannot hold a
track.

**Dense tables.** Per frame the host works on the distinct labels of a map, not on its pixels:
`dense` maps labels to indices 0..k-1 with one bincount and one gather (a lookup table, no sort),
and `pair_counts` histograms the (a, b) label pairs of two maps with one bincount of paired
indices. Everything else (areas, IoU tables, matches, relabelling) is done on those small
tables, so the per-frame cost is a few linear passes over the pixels plus work proportional to
the number of segments, with no per-segment pass over the frame.
"""

from __future__ import annotations

import numpy as np

TRACK_BITS = 32
TRACK_MASK = (1 << TRACK_BITS) - 1
_LUT_LIMIT = 1 << 22  # Largest label value mapped through a lookup table (16 MB of int32).


class TrackIdOverflowError(ValueError):
    """A track id does not fit the `class * label_divisor + track` convention."""


# --- wide ids -----------------------------------------------------------------------------


def to_wide(panoptic: np.ndarray, label_divisor: int) -> np.ndarray:
    """`class * D + instance` -> wide int64 `class << 32 | instance` (same shape)."""
    panoptic = np.asarray(panoptic, np.int64)
    semantic, instance = np.divmod(panoptic, label_divisor)
    return (semantic << TRACK_BITS) | instance


def wide(semantic: np.ndarray, track: np.ndarray) -> np.ndarray:
    """Wide ids of class and track arrays."""
    return (np.asarray(semantic, np.int64) << TRACK_BITS) | np.asarray(track, np.int64)


def split_wide(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wide ids -> (class int32, track int32) of the same shape."""
    ids = np.asarray(ids, np.int64)
    return (ids >> TRACK_BITS).astype(np.int32), (ids & TRACK_MASK).astype(np.int32)


def wide_to_panoptic(ids: np.ndarray, label_divisor: int, *, what: str = "frame") -> np.ndarray:
    """Wide ids -> int32 `class * D + track`.

    Raises:
      TrackIdOverflowError: a track id >= D, naming the largest one.
    """
    semantic, track = split_wide(ids)
    top = int(track.max(initial=0))
    if top >= label_divisor:
        raise TrackIdOverflowError(
            f"{what}: track id {top} does not fit label_divisor={label_divisor} "
            "(class * label_divisor + track); read the class and track arrays instead "
            "(docs/inference.md#track-ids)"
        )
    return (semantic.astype(np.int64) * label_divisor + track).astype(np.int32)


# --- dense tables --------------------------------------------------------------------------


def dense(labels: np.ndarray, *, what: str = "labels") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct labels of a map, each pixel's index into them, and their areas.

    Args:
      labels: non-negative int array, e.g. int32 [h, w] panoptic labels.
      what: name used in error messages.

    Returns:
      (values int64 [k] sorted, index int32 of `labels`' shape with values[index] == labels,
      areas int64 [k]).

    Raises:
      ValueError: on negative labels.
    """
    labels = np.asarray(labels)
    flat = labels.reshape(-1)
    if flat.size == 0:
        z = np.zeros(0, np.int64)
        return z, np.zeros(labels.shape, np.int32), z
    low, top = int(flat.min()), int(flat.max())
    if low < 0:
        raise ValueError(f"{what} labels must be >= 0, got {low}")
    if top < max(_LUT_LIMIT, 4 * flat.size):
        counts = np.bincount(flat, minlength=top + 1)
        values = np.flatnonzero(counts)
        lut = np.empty(top + 1, np.int32)
        lut[values] = np.arange(len(values), dtype=np.int32)
        index = lut[flat]
        areas = counts[values]
    else:  # Sparse huge labels (wide ids): a sort instead of a table.
        values, index, areas = np.unique(flat, return_inverse=True, return_counts=True)
        index = index.astype(np.int32)
    return values.astype(np.int64), index.reshape(labels.shape), areas.astype(np.int64)


def pair_counts(
    index_a: np.ndarray, size_a: int, index_b: np.ndarray, size_b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse histogram of the (a, b) index pairs of two dense maps of one shape.

    Returns:
      (a int64 [n], b int64 [n], count int64 [n]) sorted by (a, b), counts > 0.
    """
    paired = index_a.reshape(-1).astype(np.int64) * size_b + index_b.reshape(-1)
    if size_a * size_b <= max(1 << 20, 4 * paired.size):
        counts = np.bincount(paired, minlength=size_a * size_b)
        nz = np.flatnonzero(counts)
        a, b = np.divmod(nz, size_b)
        return a, b, counts[nz]
    nz, counts = np.unique(paired, return_counts=True)
    a, b = np.divmod(nz, size_b)
    return a, b, counts.astype(np.int64)


def first_pixels(index: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row-major position of the first pixel of each wanted segment.

    Args:
      index: int dense map [h, w].
      wanted: int64 [m] segment indices (each present in `index`).

    Returns:
      int64 [m] flat pixel positions.
    """
    if wanted.size == 0:
        return np.zeros(0, np.int64)
    flat = index.reshape(-1)
    mask = np.zeros(int(flat.max()) + 1, bool)
    mask[wanted] = True
    pos = np.flatnonzero(mask[flat])  # Pixels of the wanted segments, in row-major order.
    segs, first = np.unique(flat[pos], return_index=True)
    return pos[first][np.searchsorted(segs, wanted)]


def segment_pixels(index: np.ndarray, wanted: np.ndarray) -> list[np.ndarray]:
    """Flat pixel positions (int32, row-major) of each wanted segment of a dense map.

    One stable sort of the wanted segments' pixels instead of one pass per segment.
    """
    flat = index.reshape(-1)
    if wanted.size == 0:
        return []
    mask = np.zeros(int(flat.max()) + 1, bool)
    mask[wanted] = True
    pos = np.flatnonzero(mask[flat]).astype(np.int32)
    seg = flat[pos]
    # Stable sort by segment; small index ranges sort as int16, which numpy radix-sorts.
    keys = seg.astype(np.int16) if len(mask) <= np.iinfo(np.int16).max else seg
    order = np.argsort(keys, kind="stable")
    pos, seg = pos[order], seg[order]
    starts = np.searchsorted(seg, wanted, side="left")
    ends = np.searchsorted(seg, wanted, side="right")
    return [pos[s:e] for s, e in zip(starts.tolist(), ends.tolist())]


def intersections(
    masks: list[np.ndarray], index: np.ndarray, size: int
) -> np.ndarray:
    """Pixel counts shared by each mask (flat pixel positions) and each segment of a map.

    One bincount of (mask, segment) pairs over the masks' pixels.

    Returns:
      int64 [len(masks), size].
    """
    if not masks:
        return np.zeros((0, size), np.int64)
    flat = index.reshape(-1)
    lengths = np.array([len(m) for m in masks], np.int64)
    owner = np.repeat(np.arange(len(masks), dtype=np.int64), lengths)
    pixels = np.concatenate(masks) if len(masks) > 1 else masks[0]
    counts = np.bincount(owner * size + flat[pixels], minlength=len(masks) * size)
    return counts.reshape(len(masks), size)
