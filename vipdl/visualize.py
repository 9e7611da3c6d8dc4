"""Colour panoptic maps and overlay them on frames, with track-consistent colours.

A thing segment's colour is its class colour jittered by a hash of its panoptic id, so the same
track keeps the same colour in every frame without any state (unlike deeplab2's demo, which keeps
a colour dictionary across calls). Stuff uses the class colour, void is black.
"""

from __future__ import annotations

import functools

import numpy as np

from vipdl.data.descriptors import DatasetDescriptor

VOID_COLOR = (0, 0, 0)


def _hash_u32(values: np.ndarray) -> np.ndarray:
    """A fixed integer mix (lowbias32 by C. Wellons) of uint32 values, vectorised."""
    x = values.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def track_colors(panoptic_ids: np.ndarray, *, descriptor: DatasetDescriptor,
                 jitter: int = 60) -> np.ndarray:
    """Colour of each panoptic id.

    Args:
      panoptic_ids: int `[n]` ids in the in-memory convention (`semantic * D + instance`).
      descriptor: gives the class colours, thing ids, label divisor and void label.
      jitter: maximum per-channel change (0..255) applied to thing instances.

    Returns:
      uint8 `[n, 3]`. Stuff and crowd (instance 0) get the class colour, thing instances the class
      colour plus a deterministic jitter derived from the id, void and unknown classes black.
    """
    ids = np.asarray(panoptic_ids, np.int64)
    semantic = ids // descriptor.label_divisor
    instance = ids % descriptor.label_divisor
    palette = np.asarray(descriptor.colormap, np.int32)
    known = (semantic >= 0) & (semantic < descriptor.num_classes)
    base = np.zeros((ids.size, 3), np.int32)
    base[known] = palette[semantic[known]]
    is_thing = np.isin(semantic, descriptor.thing_ids) & (instance > 0)
    if jitter > 0 and is_thing.any():
        hashed = _hash_u32(ids[is_thing].astype(np.uint32))
        # Three bytes of the hash -> three offsets in [-jitter, jitter].
        channels = np.stack([(hashed >> np.uint32(8 * c)) & np.uint32(255) for c in range(3)], -1)
        offsets = np.round(channels.astype(np.float64) / 255.0 * 2 * jitter - jitter)
        base[is_thing] = base[is_thing] + offsets.astype(np.int32)
    return np.clip(base, 0, 255).astype(np.uint8)


def colorize_panoptic(panoptic: np.ndarray, *, descriptor: DatasetDescriptor,
                      jitter: int = 60) -> np.ndarray:
    """Colours an int `[height, width]` panoptic map; returns uint8 `[height, width, 3]`.

    See `track_colors` for the colour rules; the same id gets the same colour in every frame.
    """
    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2:
        raise ValueError(f"panoptic must be [height, width], got shape {panoptic.shape}")
    ids, inverse = np.unique(panoptic, return_inverse=True)
    return track_colors(ids, descriptor=descriptor, jitter=jitter)[inverse.reshape(panoptic.shape)]


def segment_boundaries(panoptic: np.ndarray) -> np.ndarray:
    """bool `[height, width]`: pixels whose right or lower neighbour has another id."""
    panoptic = np.asarray(panoptic)
    edges = np.zeros(panoptic.shape, bool)
    edges[:, :-1] |= panoptic[:, :-1] != panoptic[:, 1:]
    edges[:-1, :] |= panoptic[:-1, :] != panoptic[1:, :]
    return edges


def segment_anchors(panoptic: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where to write each segment's label: its pixel nearest to its centroid.

    (The centroid itself may lie outside a non-convex segment.)

    Returns:
      (ids int64 `[n]`, areas int64 `[n]`, y int64 `[n]`, x int64 `[n]`).
    """
    panoptic = np.asarray(panoptic)
    ids, inverse, areas = np.unique(panoptic, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    height, width = panoptic.shape
    yy, xx = np.divmod(np.arange(panoptic.size), width)
    mean_y = np.bincount(inverse, yy, minlength=ids.size) / areas
    mean_x = np.bincount(inverse, xx, minlength=ids.size) / areas
    distance = (yy - mean_y[inverse]) ** 2 + (xx - mean_x[inverse]) ** 2
    order = np.lexsort((distance, inverse))  # By segment, nearest pixel first.
    first = order[np.searchsorted(inverse[order], np.arange(ids.size))]
    return ids.astype(np.int64), areas.astype(np.int64), yy[first], xx[first]


def segment_label(panoptic_id: int, descriptor: DatasetDescriptor) -> str | None:
    """Text for a segment: "car 3" for a track, "road" for stuff, None for void."""
    semantic, instance = divmod(int(panoptic_id), descriptor.label_divisor)
    if semantic == descriptor.ignore_label or not 0 <= semantic < descriptor.num_classes:
        return None
    name = descriptor.class_names[semantic]
    return f"{name} {instance}" if instance > 0 else name


@functools.lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font.
        return ImageFont.load_default()


def overlay(frame: np.ndarray, panoptic: np.ndarray, *, descriptor: DatasetDescriptor,
            alpha: float = 0.5, draw_labels: bool = True, draw_boundaries: bool = True,
            min_label_area: int | None = None, jitter: int = 60) -> np.ndarray:
    """Blends the coloured panoptic map over a frame, with boundaries and segment labels.

    Args:
      frame: uint8 `[height, width, 3]` RGB.
      panoptic: int `[height, width]` panoptic map (in-memory convention, global track ids).
      descriptor: classes, colours and label conventions.
      alpha: weight of the colours (0 = frame only, 1 = colours only). Void pixels keep the frame.
      draw_labels: write "class id" (things) or "class" (stuff) near each segment's centre.
      draw_boundaries: draw 1-pixel white lines between segments.
      min_label_area: segments smaller than this get no label (default: 0.2% of the frame, at
        least 64 pixels), to keep small frames readable.
      jitter: see `track_colors`.

    Returns:
      uint8 `[height, width, 3]`.
    """
    frame = np.asarray(frame)
    panoptic = np.asarray(panoptic)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 [height, width, 3], got {frame.dtype} {frame.shape}")
    if panoptic.shape != frame.shape[:2]:
        raise ValueError(f"panoptic shape {panoptic.shape} does not match frame {frame.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colors = colorize_panoptic(panoptic, descriptor=descriptor, jitter=jitter).astype(np.float32)
    weight = np.where(panoptic == descriptor.void_label, 0.0, alpha).astype(np.float32)[..., None]
    out = frame.astype(np.float32) * (1 - weight) + colors * weight
    if draw_boundaries:
        out[segment_boundaries(panoptic)] = 255.0
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if draw_labels:
        out = _draw_labels(out, panoptic, descriptor, min_label_area)
    return out


def _draw_labels(image: np.ndarray, panoptic: np.ndarray, descriptor: DatasetDescriptor,
                 min_area: int | None) -> np.ndarray:
    from PIL import Image, ImageDraw

    height, width = panoptic.shape
    if min_area is None:
        min_area = max(64, int(0.002 * height * width))
    font = _font(max(8, min(24, height // 40)))
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for panoptic_id, area, y, x in zip(*segment_anchors(panoptic)):
        text = segment_label(panoptic_id, descriptor)
        if text is None or area < min_area:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=1)
        # Centre the text on the anchor but keep it inside the frame.
        tx = int(np.clip(x - (right - left) / 2, 0, max(0, width - (right - left))))
        ty = int(np.clip(y - (bottom - top) / 2, 0, max(0, height - (bottom - top))))
        draw.text((tx - left, ty - top), text, fill=(255, 255, 255), font=font,
                  stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(pil)


def overlay_segments(frame: np.ndarray, segment_map: np.ndarray, semantic: np.ndarray,
                     track: np.ndarray, *, descriptor: DatasetDescriptor, alpha: float = 0.5,
                     max_labels: int = 64, jitter: int = 60) -> np.ndarray:
    """`overlay` of a tracked frame given as a segment table, at a cost bounded per frame.

    Colours and text follow `overlay` (a track's colour is the one `overlay` gives
    `class * D + track`; track ids may exceed D). Every per-pixel step is one table lookup or
    comparison, with no sort of the pixels; labels go to the `max_labels` largest segments
    above the minimum area, anchored at the pixel nearest their centroid on a grid of at most
    ~65k pixels.

    Args:
      frame: uint8 `[height, width, 3]` RGB.
      segment_map: int `[height, width]` row of each pixel in the table.
      semantic, track: int `[k]` class and track id (0 = stuff / crowd) of each row.
      descriptor, alpha, jitter: as in `overlay`.
      max_labels: most segment labels drawn.

    Returns:
      uint8 `[height, width, 3]`.
    """
    frame = np.asarray(frame)
    segment_map = np.asarray(segment_map)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 [height, width, 3], got {frame.dtype} {frame.shape}")
    if segment_map.shape != frame.shape[:2]:
        raise ValueError(f"segment_map shape {segment_map.shape} does not match frame "
                         f"{frame.shape[:2]}")
    semantic = np.asarray(semantic, np.int64)
    track = np.asarray(track, np.int64)
    ids = semantic * descriptor.label_divisor + track  # colour key, as `overlay` computes it
    colors = track_colors(ids, descriptor=descriptor, jitter=jitter).astype(np.float32)
    weight = np.where(semantic == descriptor.ignore_label, 0.0, alpha).astype(np.float32)
    w = weight[segment_map][..., None]
    out = frame.astype(np.float32) * (1 - w) + colors[segment_map] * w
    out[segment_boundaries(segment_map)] = 255.0
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if max_labels <= 0:
        return out
    height, width = segment_map.shape
    stride = max(1, int(np.ceil(np.sqrt(height * width / 65536))))
    grid = segment_map[::stride, ::stride]
    k = len(semantic)
    areas = np.bincount(segment_map.reshape(-1), minlength=k)
    min_area = max(64, int(0.002 * height * width))
    texts = [None if a < min_area else _text(c, t, descriptor)
             for c, t, a in zip(semantic.tolist(), track.tolist(), areas.tolist())]
    wanted = [j for j in np.argsort(-areas, kind="stable").tolist() if texts[j] is not None]
    # Drawn in the order `overlay` draws them (by class, then track), so they overlap alike.
    wanted = sorted(wanted[:max_labels], key=lambda j: (semantic[j], track[j]))
    if not wanted:
        return out
    flat = grid.reshape(-1)
    gy, gx = np.divmod(np.arange(flat.size), grid.shape[1])
    count = np.maximum(np.bincount(flat, minlength=k), 1)
    mean_y = np.bincount(flat, gy, minlength=k) / count
    mean_x = np.bincount(flat, gx, minlength=k) / count
    distance = (gy - mean_y[flat]) ** 2 + (gx - mean_x[flat]) ** 2
    best = np.full(k, np.inf)
    np.minimum.at(best, flat, distance)
    nearest = np.full(k, -1, np.int64)
    hit = np.flatnonzero(distance == best[flat])
    nearest[flat[hit[::-1]]] = hit[::-1]  # any nearest pixel; ties are equally central
    anchors = [(texts[j], gy[nearest[j]] * stride, gx[nearest[j]] * stride)
               for j in wanted if nearest[j] >= 0]
    return _draw_texts(out, anchors)


def _text(semantic: int, track: int, descriptor: DatasetDescriptor) -> str | None:
    """`segment_label` of a (class, track) pair, for any track id."""
    if semantic == descriptor.ignore_label or not 0 <= semantic < descriptor.num_classes:
        return None
    name = descriptor.class_names[semantic]
    return f"{name} {track}" if track > 0 else name


def _draw_texts(image: np.ndarray, anchors) -> np.ndarray:
    from PIL import Image, ImageDraw

    height, width = image.shape[:2]
    font = _font(max(8, min(24, height // 40)))
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for text, y, x in anchors:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=1)
        tx = int(np.clip(x - (right - left) / 2, 0, max(0, width - (right - left))))
        ty = int(np.clip(y - (bottom - top) / 2, 0, max(0, height - (bottom - top))))
        draw.text((tx - left, ty - top), text, fill=(255, 255, 255), font=font,
                  stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(pil)


def depth_to_rgb(depth: np.ndarray, *, max_depth: float) -> np.ndarray:
    """Colours a float `[height, width]` depth map (metres) with matplotlib's turbo, near = red."""
    from matplotlib import colormaps

    depth = np.asarray(depth, np.float32)
    scaled = 1.0 - np.clip(depth / max_depth, 0.0, 1.0)
    return (colormaps["turbo"](scaled)[..., :3] * 255).round().astype(np.uint8)


def contact_sheet(images, *, columns: int = 3, gap: int = 2,
                  gap_color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Tiles equally sized frames into one picture, row by row (for docs and quick looks).

    Args:
      images: a non-empty sequence of uint8 `[height, width, 3]` frames of one size.
      columns: frames per row (fewer when there are fewer frames).
      gap: pixels between neighbouring frames.
      gap_color: RGB of the gaps and of empty cells in the last row.

    Returns:
      uint8 `[rows * (height + gap) - gap, columns * (width + gap) - gap, 3]`.
    """
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("contact_sheet needs at least one frame")
    if columns < 1 or gap < 0:
        raise ValueError(f"need columns >= 1 and gap >= 0, got {columns}, {gap}")
    shape = images[0].shape
    for i, im in enumerate(images):
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[-1] != 3 or im.shape != shape:
            raise ValueError(
                f"frame {i} is {im.dtype} {im.shape}; expected uint8 {shape} like frame 0"
            )
    h, w = shape[:2]
    cols = min(columns, len(images))
    rows = -(-len(images) // cols)
    sheet = np.empty((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), np.uint8)
    sheet[:] = np.asarray(gap_color, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = im
    return sheet
