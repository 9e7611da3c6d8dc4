"""Soft per-segment alpha mattes from a frame's model outputs (docs/editing.md).

For every segment of a frame's tracked panoptic map (plus void) an alpha matte in [0, 1]; the
alphas of a pixel sum to 1 and the segment with the largest alpha is the hard map's segment.
Three steps, all in jnp:

1. **Model distribution** at working resolution (docs/editing.md#soft-scores). The semantic
   softmax gives each stuff segment its class probability and all thing segments together the
   probability of the thing classes; that thing mass is shared among thing segments by a soft
   instance assignment: a softmax over the frame's kept centers of `-|p + offset(p) - c| / tau`
   (the hard post-processing takes the nearest center, the argmax of the same scores), each
   center counting for the segment where most of the pixels it wins lie. A thing segment
   without a center of its own gets one at the mean offset-moved position of its pixels. What
   no segment of the hard map takes (classes dropped by the stuff area limit, centers that won
   only void pixels) is void. Where this distribution and the tracked map disagree (the map
   comes from two-frame propagation, the area limit, stitching), the hard segment is lifted
   just above the others, so the argmax is the hard map exactly.
2. **Upsampling** (optional, `full_res`): the guided filter fits per-segment colour-linear
   models on a grid a little finer than the working resolution, guided by the frame; each
   full-resolution pixel applies the interpolated model to its own colour, so borders follow
   the edges of the full-resolution image (`vipdl.editing.guided_filter`). Runs in tiles; only
   the rank arrays of the output are kept at full resolution.
3. **Softness** per class (`vipdl.editing.softness`): each pixel's distribution is re-tempered
   against its winner, `alpha_j ~ (q_j / q_win) ^ (1 / t)` with `t` the larger softness of the
   two segments; t = 0 is a hard mask, t = 1 the distribution itself.

The result keeps the K largest (segment, coverage) pairs per pixel, renormalised to sum to 1 and
rounded to multiples of 2^-16.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vipdl.data.descriptors import DatasetDescriptor
from vipdl.editing import guided_filter, softness
from vipdl.inference import FramePrediction, RawOutputs
from vipdl.postprocess import labels
from vipdl.postprocess.panoptic import Centers, group_pixels

# Added to the hard segment's score where it does not already win strictly (see step 1).
_MARGIN = 1e-5


@dataclasses.dataclass(frozen=True)
class MatteOptions:
    """How mattes are made.

    Attributes:
      k: (segment, coverage) pairs kept per pixel, ranked by coverage.
      softness: {class name: softness} overriding `softness.DEFAULT_SOFTNESS` (0 = hard, 1 =
        the model's probabilities, larger = softer); "void" sets void's.
      instance_temperature: `tau` of the soft instance assignment, in working-resolution
        pixels of offset-moved distance.
      blend_radius: a segment's alpha is 0 farther than this many working-resolution pixels
        (chessboard distance) from its pixels in the hard map, so faint probabilities far
        away never leak into a matte.
      full_res: mattes at the frame's resolution (edge-aware upsampling) instead of the
        model's working resolution.
      upsample: "guided" (edge-aware) or "bilinear" (the baseline) for `full_res`.
      guide_scale: the guided filter's coefficient grid, relative to the working resolution
        (capped at the frame size).
      radius: guided filter window radius, in coefficient-grid pixels.
      eps: guided filter regulariser (guide colours in [0, 1]).
      tile: full-resolution tile size in pixels (memory ~ tile^2 x segments per tile); tiles
        inside a single segment cost nothing, so small tiles skip most of a frame.
      min_alpha: alphas below this are set to 0 (the others renormalised): faint tails that
        no editor sees but that would fill the ranks and the files.
      presence_threshold: a segment whose score is below this for every colour at all four
        interpolation corners of a pixel is left out of that pixel (error <= this value).
    """

    k: int = 4
    softness: Mapping[str, float] | None = None
    instance_temperature: float = 2.0
    blend_radius: int = 10
    full_res: bool = False
    upsample: Literal["guided", "bilinear"] = "guided"
    guide_scale: float = 2.0
    radius: int = 12
    eps: float = 1e-3
    tile: int = 64
    min_alpha: float = 1.0 / 512
    presence_threshold: float = 1e-3

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"MatteOptions.k must be >= 1, got {self.k}")
        if self.instance_temperature <= 0:
            raise ValueError(
                f"MatteOptions.instance_temperature must be > 0, got {self.instance_temperature}"
            )
        if not 0 <= self.min_alpha < 0.5:
            raise ValueError(f"MatteOptions.min_alpha must be in [0, 0.5), got {self.min_alpha}")
        if self.blend_radius < 0:
            raise ValueError(f"MatteOptions.blend_radius must be >= 0, got {self.blend_radius}")
        if self.upsample not in ("guided", "bilinear"):
            raise ValueError(f"MatteOptions.upsample must be 'guided' or 'bilinear', got "
                             f"{self.upsample!r}")
        if self.guide_scale < 1 or self.radius < 0 or self.eps <= 0 or self.tile < 8:
            raise ValueError(
                "MatteOptions needs guide_scale >= 1, radius >= 0, eps > 0 and tile >= 8; got "
                f"{self.guide_scale}, {self.radius}, {self.eps}, {self.tile}"
            )


@dataclasses.dataclass(frozen=True)
class Segments:
    """The segments a frame's mattes are about, void last.

    Attributes:
      ids: int64 [S + 1] wide ids `class << 32 | track` (`vipdl.postprocess.labels`); the last
        is void (class `ignore_label`).
      class_ids: int32 [S + 1].
      names: S + 1 names: "person/7" for things, the class name for stuff, "void".
      is_thing: bool [S + 1].
      softness: float32 [S + 1], the softness of each segment's class.
    """

    ids: np.ndarray
    class_ids: np.ndarray
    names: tuple[str, ...]
    is_thing: np.ndarray
    softness: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    @property
    def void_index(self) -> int:
        return len(self.names) - 1


def segment_name(segment_id: int, descriptor: DatasetDescriptor) -> str:
    """"person/7" for a thing track, the class name for stuff, "void" for void.

    `segment_id` is a wide id `class << 32 | track` (any track id).
    """
    semantic, instance = divmod(int(segment_id), 1 << labels.TRACK_BITS)
    if semantic == descriptor.ignore_label:
        return softness.VOID_NAME
    name = (descriptor.class_names[semantic] if 0 <= semantic < descriptor.num_classes
            else f"class{semantic}")
    return f"{name}/{instance}" if semantic in descriptor.thing_ids else name


def folder_name(name: str) -> str:
    """File-system name of a segment: "person/7" -> "person-7", "traffic light" -> "traffic-light"."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-") or "segment"


def segments_of(segment_ids: np.ndarray, descriptor: DatasetDescriptor,
                softness_by_class: np.ndarray) -> Segments:
    """The segments of a tracked frame (sorted ids, void appended).

    Args:
      segment_ids: int64 [h, w] wide ids `class << 32 | track` (`RawOutputs.ids`).
      descriptor: the dataset (class names, things, void class).
      softness_by_class: float32 [num_classes + 1], `softness.softness_table(...)`.
    """
    d, void = 1 << labels.TRACK_BITS, descriptor.ignore_label
    ids = np.unique(np.asarray(segment_ids, np.int64))
    ids = ids[ids // d != void]
    ids = np.append(ids, void * d)
    classes = (ids // d).astype(np.int32)
    known = (classes >= 0) & (classes < descriptor.num_classes)
    soft = np.where(known, softness_by_class[np.clip(classes, 0, descriptor.num_classes - 1)],
                    softness_by_class[-1]).astype(np.float32)
    soft[-1] = softness_by_class[-1]
    things = np.isin(classes, descriptor.thing_ids)
    return Segments(
        ids=ids,
        class_ids=classes,
        names=tuple(segment_name(i, descriptor) for i in ids),
        is_thing=things,
        softness=soft,
    )


@dataclasses.dataclass(frozen=True)
class FrameMattes:
    """The mattes of one frame, as ranked (segment, coverage) pairs.

    Attributes:
      index: the frame index.
      segments: what the ranks index (void last).
      rank_ids: int16 [K, H, W], index into `segments` of rank k, -1 = none (coverage 0).
      rank_coverage: float32 [K, H, W], coverage of rank k in multiples of 2^-16; ranks
        descend and sum to 1 (within K / 2^17).
      full_res: whether `H, W` is the frame size (else the working resolution).
    """

    index: int
    segments: Segments
    rank_ids: np.ndarray
    rank_coverage: np.ndarray
    full_res: bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.rank_ids.shape[1:]

    def matte(self, segment: int | str) -> np.ndarray:
        """float32 [H, W] alpha of a segment (its index or name), summed over the ranks."""
        if isinstance(segment, str):
            if segment not in self.segments.names:
                raise KeyError(f"no segment {segment!r} in frame {self.index}; segments are "
                               f"{list(self.segments.names)}")
            segment = self.segments.names.index(segment)
        return np.where(self.rank_ids == segment, self.rank_coverage, 0.0).sum(
            0, dtype=np.float32)

    def hard(self) -> np.ndarray:
        """int64 [H, W] wide ids `class << 32 | track` of rank 0 (the largest alpha) at the
        mattes' resolution."""
        return self.segments.ids[np.maximum(self.rank_ids[0], 0)]


# ---------------------------------------------------------------------------------------------
# Step 1: the model distribution at working resolution.


def _bucket(n: int, smallest: int = 8) -> int:
    """Static sizes in powers of two, so a video compiles a handful of shapes."""
    size = smallest
    while size < n:
        size *= 2
    return size


@jax.jit
def _nearest_center(yx, valid, offsets):
    return group_pixels(Centers(yx=yx, valid=valid, scores=jnp.zeros(valid.shape)), offsets)


def _segment_centers(raw: RawOutputs, hard_index: np.ndarray, segments: Segments):
    """(yx float32 [n, 2], segment index int32 [n]) of the centers of the soft assignment.

    Each valid kept center counts for the segment holding most of the thing pixels it wins in
    the hard grouping (void if it wins none); thing segments left without a center get the
    mean offset-moved position of their pixels.
    """
    s1 = len(segments)
    thing_px = segments.is_thing[hard_index]
    yx_out, seg_out = [], []
    if raw.center_valid.any():
        nearest = np.asarray(_nearest_center(raw.centers, raw.center_valid, raw.offsets))
        k = raw.center_valid.shape[0]
        votes = np.bincount(
            nearest[thing_px].astype(np.int64) * s1 + hard_index[thing_px], minlength=(k + 1) * s1
        ).reshape(k + 1, s1)[1:]
        for slot in np.flatnonzero(raw.center_valid):
            seg = int(np.argmax(votes[slot])) if votes[slot].any() else segments.void_index
            yx_out.append(raw.centers[slot].astype(np.float32))
            seg_out.append(seg)
    covered = set(seg_out)
    missing = [s for s in np.flatnonzero(segments.is_thing) if s not in covered]
    if missing:
        h, w = hard_index.shape
        ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32),
                             indexing="ij")
        moved_y = (ys + raw.offsets[..., 0]).ravel()
        moved_x = (xs + raw.offsets[..., 1]).ravel()
        flat = hard_index.ravel()
        count = np.bincount(flat, minlength=s1)
        my = np.bincount(flat, moved_y, minlength=s1)
        mx = np.bincount(flat, moved_x, minlength=s1)
        for s in missing:
            yx_out.append(np.array([my[s], mx[s]], np.float32) / max(count[s], 1))
            seg_out.append(int(s))
    n = _bucket(len(seg_out))
    yx = np.zeros((n, 2), np.float32)
    seg = np.full(n, segments.void_index, np.int32)
    valid = np.zeros(n, bool)
    yx[: len(seg_out)] = np.asarray(yx_out, np.float32).reshape(-1, 2)
    seg[: len(seg_out)] = seg_out
    valid[: len(seg_out)] = True
    return yx, seg, valid


def _strict_winner(q: jax.Array, win: jax.Array) -> jax.Array:
    """Lifts `q[win]` just above the other entries where it is not strictly largest.

    Args:
      q: float32 [S, ...] non-negative scores summing to 1 over axis 0.
      win: int [...] the index that must win.

    Returns:
      `(q + lam * onehot(win)) / (1 + lam)`, lam = 0 where `win` already wins strictly; still
      sums to 1.
    """
    onehot = win[None] == jnp.arange(q.shape[0]).reshape((-1,) + (1,) * win.ndim)
    q_win = jnp.sum(jnp.where(onehot, q, 0.0), 0)
    others = jnp.max(jnp.where(onehot, -jnp.inf, q), 0)
    need = others - q_win
    lam = jnp.where(need >= 0, need + _MARGIN, 0.0)
    return (q + lam * onehot) / (1.0 + lam)


def _support(hard_index: jax.Array, num_segments: int, radius: int) -> jax.Array:
    """bool [S, h, w]: pixels within `radius` (chessboard) of each segment's hard pixels."""
    onehot = (hard_index[None] == jnp.arange(num_segments)[:, None, None]).astype(jnp.float32)
    if radius == 0:
        return onehot > 0
    window = (1, 2 * radius + 1, 2 * radius + 1)
    pad = ((0, 0), (radius, radius), (radius, radius))
    return lax.reduce_window(onehot, 0.0, lax.max, window, (1, 1, 1), pad) > 0


_support_jit = jax.jit(_support, static_argnames=("num_segments", "radius"))


@functools.partial(jax.jit, static_argnames=("radius",))
def _model_distribution(probs, offsets, cyx, cseg, cvalid, seg_class, seg_is_thing, seg_real,
                        thing_class, hard_index, tau, void_index, *, radius):
    h, w, num_classes = probs.shape
    s1 = seg_class.shape[0]
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")
    my, mx = ys + offsets[..., 0], xs + offsets[..., 1]

    def dist(j):
        return jnp.sqrt((my - cyx[j, 0]) ** 2 + (mx - cyx[j, 1]) ** 2)

    n = cyx.shape[0]
    dmin = lax.fori_loop(
        0, n, lambda j, m: jnp.where(cvalid[j], jnp.minimum(m, dist(j)), m),
        jnp.full((h, w), jnp.inf, jnp.float32))
    # Exponents relative to the nearest center: the largest weight is exactly 1.
    acc = lax.fori_loop(
        0, n,
        lambda j, acc: acc.at[cseg[j]].add(
            jnp.where(cvalid[j], jnp.exp(-(dist(j) - dmin) / tau), 0.0)),
        jnp.zeros((s1, h, w), jnp.float32))
    total = jnp.sum(acc, 0)
    assign = jnp.where(total > 0, acc / jnp.where(total > 0, total, 1.0), 0.0)
    thing_mass = jnp.sum(probs * thing_class, -1)
    stuff = jnp.moveaxis(probs[..., jnp.clip(seg_class, 0, num_classes - 1)], -1, 0)
    q = jnp.where(seg_is_thing[:, None, None], thing_mass * assign, stuff)
    q = jnp.where(seg_real[:, None, None], q, 0.0)  # Padding entries (static shapes) stay 0.
    is_void = jnp.arange(s1) == void_index
    q = jnp.where(is_void[:, None, None], 0.0, q)
    q = jnp.where(is_void[:, None, None], jnp.clip(1.0 - jnp.sum(q, 0), 0.0, 1.0), q)
    q = jnp.where(_support(hard_index, s1, radius), q, 0.0)
    total = jnp.sum(q, 0)
    hard = (hard_index[None] == jnp.arange(s1)[:, None, None]).astype(jnp.float32)
    q = jnp.where(total > 0, q / jnp.where(total > 0, total, 1.0), hard)
    return _strict_winner(q, hard_index)


def model_distribution(raw: RawOutputs, descriptor: DatasetDescriptor, segments: Segments,
                       hard_index: np.ndarray, instance_temperature: float,
                       blend_radius: int = 10) -> jax.Array:
    """The model's soft segment distribution at working resolution (step 1 above).

    Args:
      raw: the frame's raw outputs (`VideoPredictor(return_raw=True)`).
      descriptor: the dataset.
      segments: `segments_of(raw.ids, ...)`.
      hard_index: int32 [h, w], index into `segments` of each pixel of `raw.ids`.
      instance_temperature: `tau` in working pixels.
      blend_radius: see `MatteOptions.blend_radius`.

    Returns:
      float32 [P, h, w] with P >= S + 1 (entries past S + 1 are 0, padding that keeps the
      number of compiled shapes small): non-negative, sums to 1 over segments, strictly
      largest at `hard_index`.
    """
    num_classes = raw.semantic_probs.shape[-1]
    if num_classes != descriptor.num_classes:
        raise ValueError(f"raw outputs have {num_classes} classes, the descriptor "
                         f"{descriptor.name!r} {descriptor.num_classes}")
    if raw.semantic_probs.shape[:2] != raw.ids.shape:
        raise ValueError(f"raw outputs are {raw.semantic_probs.shape[:2]} but the segment map "
                         f"is {raw.ids.shape}")
    cyx, cseg, cvalid = _segment_centers(raw, hard_index, segments)
    thing_class = np.zeros(num_classes, np.float32)
    thing_class[list(descriptor.thing_ids)] = 1.0
    s1 = len(segments)
    padded = _bucket(s1)

    def pad(x, value):
        return np.concatenate([x, np.full(padded - s1, value, x.dtype)])

    return _model_distribution(
        raw.semantic_probs, raw.offsets, cyx, cseg, cvalid, pad(segments.class_ids, 0),
        pad(segments.is_thing, False), pad(np.ones(s1, bool), False), thing_class, hard_index,
        np.float32(instance_temperature), np.int32(segments.void_index),
        radius=int(blend_radius))


# ---------------------------------------------------------------------------------------------
# Step 3: softness, and ranking.


def _floored(alpha: jax.Array, min_alpha) -> jax.Array:
    """Sets alphas below `min_alpha` to 0 and renormalises (the largest always stays)."""
    keep = (alpha >= min_alpha) | (alpha >= jnp.max(alpha, 0, keepdims=True))
    alpha = jnp.where(keep, alpha, 0.0)
    return alpha / jnp.sum(alpha, 0, keepdims=True)


def tempered(q: jax.Array, seg_softness: jax.Array) -> jax.Array:
    """Re-tempers a distribution against its winner with per-segment softness (step 3).

    Args:
      q: float32 [S, ...] non-negative, summing to 1 over axis 0.
      seg_softness: float32 [S] softness of each segment.

    Returns:
      float32 [S, ...] alphas summing to 1, strictly largest at `argmax(q)`; a one-hot of the
      argmax where both softnesses are 0, `q` itself where they are 1.
    """
    win = jnp.argmax(q, 0)
    q = _strict_winner(q, win)
    expand = (-1,) + (1,) * (q.ndim - 1)
    onehot = win[None] == jnp.arange(q.shape[0]).reshape(expand)
    q_win = jnp.sum(jnp.where(onehot, q, 0.0), 0)
    t = jnp.maximum(seg_softness.reshape(expand), seg_softness[win][None])
    ratio = q / q_win
    safe_t = jnp.where(t > 0, t, 1.0)
    weight = jnp.where((t > 0) & (ratio > 0),
                       jnp.exp(jnp.log(jnp.maximum(ratio, 1e-30)) / safe_t), 0.0)
    weight = jnp.where(onehot, 1.0, weight)
    return _strict_winner(weight / jnp.sum(weight, 0), win)


COVERAGE_STEP = 2.0**-16  # Coverage resolution of the ranks (as fine as a 16-bit PNG).


def _top_k(alpha: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """(ids int32 [k, ...], -1 for zero coverage; coverage float32 [k, ...]).

    The kept coverages are renormalised to sum to 1 and rounded to multiples of
    `COVERAGE_STEP`: a 16-bit PNG holds the same, and the zero low mantissa bits let the EXR
    files compress (an 8K Cryptomatte shrinks several times). Sums stay within k / 2^17 of 1.
    """
    values, ids = lax.top_k(jnp.moveaxis(alpha, 0, -1), k)
    values = values / jnp.sum(values, -1, keepdims=True)
    values = jnp.round(values / COVERAGE_STEP) * COVERAGE_STEP
    ids = jnp.where(values > 0, ids, -1)
    return jnp.moveaxis(ids, -1, 0), jnp.moveaxis(values, -1, 0)


@functools.partial(jax.jit, static_argnames=("k",))
def _working_ranks(q, seg_softness, min_alpha, *, k):
    return _top_k(_floored(tempered(q, seg_softness), min_alpha), k)


_tempered_jit = jax.jit(tempered)


def _padded_softness(segments: Segments, n: int) -> np.ndarray:
    return np.concatenate([segments.softness, np.zeros(n - len(segments), np.float32)])


# ---------------------------------------------------------------------------------------------
# Step 2: full resolution.


def _axis_coordinates(n_out: int, n_grid: int, align_corners: bool) -> np.ndarray:
    """float64 [n_out]: grid coordinate of each output pixel, clamped to [0, n_grid - 1]."""
    out = np.arange(n_out, dtype=np.float64)
    if align_corners:
        coords = out * ((n_grid - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:  # Pixel centres: grid cell j covers output [j, j + 1) * n_out / n_grid.
        coords = (out + 0.5) * (n_grid / n_out) - 0.5
    return np.clip(coords, 0.0, n_grid - 1)


def _split(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    base = np.floor(coords).astype(np.int64)
    return base, (coords - base).astype(np.float32)


def _guide_image(frame: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    """float32 [gh, gw, 3] in [0, 1]: the frame area-averaged onto the coefficient grid."""
    from PIL import Image

    if grid_hw == frame.shape[:2]:
        small = frame
    else:
        small = np.asarray(Image.fromarray(frame).resize(grid_hw[::-1], Image.Resampling.BOX))
    return small.astype(np.float32) / 255.0


@functools.partial(jax.jit, static_argnames=("radius",))
def _coefficients(guide, p, *, radius, eps):
    mean_i, inv = guided_filter.guide_statistics(guide, radius, eps)
    a, b = lax.map(lambda x: guided_filter.guided_coefficients(guide, mean_i, inv, x, radius), p)
    return jnp.concatenate([a, b[..., None]], -1)


def _tile_ranks(image, coef, present, y0, fy, x0, fx, seg_softness, min_alpha, k):
    """Ranks of one full-resolution tile from the coefficient-grid crop around it.

    Args:
      image: uint8 [th, tw, 3] tile of the frame.
      coef: float32 [B, ch, cw, 4] (a . rgb + b) coefficients of B segments on the crop.
      present: bool [B, ch, cw] where each segment may be non-negligible.
      y0, x0: int32 [th], [tw] crop row / column below each pixel; fy, fx: float32 weights.
      seg_softness: float32 [B].
      min_alpha: see `MatteOptions.min_alpha`.
      k: ranks to keep.
    """
    guide = image.astype(jnp.float32) / 255.0
    ch, cw = coef.shape[1:3]
    below_y, above_y = jax.nn.one_hot(y0, ch), jax.nn.one_hot(y0 + 1, ch)
    below_x, above_x = jax.nn.one_hot(x0, cw), jax.nn.one_hot(x0 + 1, cw)
    # Bilinear interpolation as two small matrix products (faster than gathers on CPU).
    wy = below_y * (1 - fy)[:, None] + above_y * fy[:, None]
    wx = below_x * (1 - fx)[:, None] + above_x * fx[:, None]
    c = jnp.einsum("yc,bcdf,xd->byxf", wy, coef, wx)
    # A pixel sees a segment if any of its four interpolation corners does.
    near = jnp.einsum("yc,bcd,xd->byx", below_y + above_y, present.astype(jnp.float32),
                      below_x + above_x) > 0
    raw = jnp.sum(c[..., :3] * guide[None], -1) + c[..., 3]
    q = jnp.where(near, jnp.clip(raw, 0.0, 1.0), 0.0)
    total = jnp.sum(q, 0)
    fallback = jnp.argmax(jnp.where(near, raw, -jnp.inf), 0)
    onehot = fallback[None] == jnp.arange(q.shape[0])[:, None, None]
    q = jnp.where(total > 0, q / jnp.where(total > 0, total, 1.0), onehot.astype(jnp.float32))
    return _top_k(_floored(tempered(q, seg_softness), min_alpha), k)


@functools.partial(jax.jit, static_argnames=("k",))
def _tiles_ranks(image, coef, present, y0, fy, x0, fx, seg_softness, min_alpha, *, k):
    """`_tile_ranks` over a batch of tiles (leading axis): one dispatch for many tiles."""
    tile = functools.partial(_tile_ranks, min_alpha=min_alpha, k=k)
    return jax.vmap(tile)(image, coef, present, y0, fy, x0, fx, seg_softness)


_TILE_BATCH = 32  # Mixed tiles per device call (static batch; the last one is padded).


def _coefficient_grid(q: np.ndarray, frame: np.ndarray, hard_index: np.ndarray,
                      options: MatteOptions):
    """Per-segment colour-linear models on the grid the frame's pixels interpolate from.

    Returns:
      coef: float32 [S + 1, gh + 1, gw + 1, 4], `a . rgb + b` per grid cell (one extra edge row
        and column: the interpolation reads index + 1 everywhere).
      present: bool [S + 1, gh + 1, gw + 1], where each segment may be non-negligible.
      grid_hw: (gh, gw); align_corners: how the frame maps onto the grid.
    """
    s1, h, w = q.shape
    support = np.asarray(_support_jit(hard_index, num_segments=s1, radius=options.blend_radius))
    big_h, big_w = frame.shape[:2]
    if options.upsample == "bilinear":
        grid_hw, align = (h, w), True
        coef = np.zeros((s1, h, w, 4), np.float32)
        coef[..., 3] = q
        support_grid = support
    else:
        grid_hw = (min(big_h, round(h * options.guide_scale)),
                   min(big_w, round(w * options.guide_scale)))
        align = False
        guide = _guide_image(frame, grid_hw)
        # Grid cell centres in working coordinates: working maps onto the frame align-corners.
        centres_y = (np.arange(grid_hw[0]) + 0.5) * big_h / grid_hw[0] - 0.5
        centres_x = (np.arange(grid_hw[1]) + 0.5) * big_w / grid_hw[1] - 0.5
        p = _resample_at(q, centres_y * ((h - 1) / max(big_h - 1, 1)),
                         centres_x * ((w - 1) / max(big_w - 1, 1)))
        coef = np.asarray(_coefficients(guide, p, radius=options.radius,
                                        eps=np.float32(options.eps)))
        near_y = np.clip(np.round(centres_y * ((h - 1) / max(big_h - 1, 1))), 0, h - 1)
        near_x = np.clip(np.round(centres_x * ((w - 1) / max(big_w - 1, 1))), 0, w - 1)
        support_grid = support[:, near_y.astype(np.int64)][:, :, near_x.astype(np.int64)]
    # The largest value a . rgb + b can take for rgb in [0, 1]^3 bounds the segment's score.
    upper = np.maximum(coef[..., :3], 0).sum(-1) + coef[..., 3]
    present = (upper > options.presence_threshold) & support_grid
    coef = np.pad(coef, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")
    present = np.pad(present, ((0, 0), (0, 1), (0, 1)), mode="edge")
    return coef, present, grid_hw, align


@dataclasses.dataclass(frozen=True)
class _Tiling:
    """The frame's tiles and where their pixels read the coefficient grid.

    Attributes:
      ys, xs: int64 [H], [W] grid row / column below each frame row / column; fys, fxs: float32
        interpolation weights.
      tiles_y, tiles_x: (start, stop) of each tile row / column in the frame.
      crop_h, crop_w: the grid crop read by any tile (one fixed size: static shapes).
      th, tw: the (padded) tile size.
    """

    ys: np.ndarray
    fys: np.ndarray
    xs: np.ndarray
    fxs: np.ndarray
    tiles_y: list[tuple[int, int]]
    tiles_x: list[tuple[int, int]]
    crop_h: int
    crop_w: int
    th: int
    tw: int


def _tiling(frame_hw: tuple[int, int], grid_hw: tuple[int, int], align: bool,
            t: int) -> _Tiling:
    """Tiles of `t` x `t` pixels over a frame of `frame_hw` interpolating a `grid_hw` grid."""
    big_h, big_w = frame_hw
    ys, fys = _split(_axis_coordinates(big_h, grid_hw[0], align))
    xs, fxs = _split(_axis_coordinates(big_w, grid_hw[1], align))
    tiles_y = [(y, min(y + t, big_h)) for y in range(0, big_h, t)]
    tiles_x = [(x, min(x + t, big_w)) for x in range(0, big_w, t)]
    crop_h = max(int(ys[b - 1] - ys[a]) for a, b in tiles_y) + 2
    crop_w = max(int(xs[b - 1] - xs[a]) for a, b in tiles_x) + 2
    return _Tiling(ys, fys, xs, fxs, tiles_y, tiles_x, crop_h, crop_w,
                   min(t, big_h), min(t, big_w))


def _fill_single_segment_tiles(present: np.ndarray, tiling: _Tiling, k: int,
                               rank_ids: np.ndarray, rank_cov: np.ndarray) -> dict[int, list]:
    """Fills the tiles inside one segment into the rank arrays; the other ("mixed") tiles by
    bucket of candidate segments: {bucket: [(ya, yb, xa, xb, gy0, gx0, segments)]}."""
    s1 = present.shape[0]
    ys, xs, crop_h, crop_w = tiling.ys, tiling.xs, tiling.crop_h, tiling.crop_w
    # Which segments each grid cell may hold, as bit sets over crops: one pass per tile row.
    mixed: dict[int, list] = {}
    for ya, yb in tiling.tiles_y:
        gy0 = int(ys[ya])
        rows_present = present[:, gy0 : gy0 + crop_h].any(axis=1)  # [S, grid_w + 1]
        for xa, xb in tiling.tiles_x:
            gx0 = int(xs[xa])
            subset = np.flatnonzero(rows_present[:, gx0 : gx0 + crop_w].any(axis=1))
            if len(subset) == 0:  # Cannot happen (the sum is 1), but stay defined.
                subset = np.array([s1 - 1])
            if len(subset) == 1:
                # Inside one segment: the per-pixel path would normalise its score to 1 (or
                # fall back to it as the only candidate), so skip the work.
                rank_ids[0, ya:yb, xa:xb] = subset[0]
                rank_cov[0, ya:yb, xa:xb] = 1.0
                continue
            b = _bucket(max(len(subset), k), smallest=4)
            mixed.setdefault(b, []).append((ya, yb, xa, xb, gy0, gx0, subset))
    return mixed


def _mixed_tiles(mixed: dict[int, list], coef: np.ndarray, present: np.ndarray,
                 frame: np.ndarray, seg_softness: np.ndarray, tiling: _Tiling,
                 options: MatteOptions, rank_ids: np.ndarray, rank_cov: np.ndarray) -> None:
    """Ranks the mixed tiles per pixel on the device, `_TILE_BATCH` tiles per call, into the
    rank arrays."""
    crop_h, crop_w, th, tw = tiling.crop_h, tiling.crop_w, tiling.th, tiling.tw
    ys, fys, xs, fxs = tiling.ys, tiling.fys, tiling.xs, tiling.fxs
    for b, tiles in sorted(mixed.items()):
        for start in range(0, len(tiles), _TILE_BATCH):
            batch = tiles[start : start + _TILE_BATCH]
            n = _TILE_BATCH
            crop = np.zeros((n, b, crop_h, crop_w, 4), np.float32)
            pres = np.zeros((n, b, crop_h, crop_w), bool)
            soft = np.zeros((n, b), np.float32)
            image = np.zeros((n, th, tw, 3), np.uint8)
            iy = np.zeros((n, th), np.int32)
            wy = np.zeros((n, th), np.float32)
            ix = np.zeros((n, tw), np.int32)
            wx = np.zeros((n, tw), np.float32)
            for i, (ya, yb, xa, xb, gy0, gx0, subset) in enumerate(batch):
                part = coef[subset, gy0 : gy0 + crop_h, gx0 : gx0 + crop_w]
                crop[i, : len(subset), : part.shape[1], : part.shape[2]] = part
                pres[i, : len(subset), : part.shape[1], : part.shape[2]] = present[
                    subset, gy0 : gy0 + crop_h, gx0 : gx0 + crop_w]
                soft[i, : len(subset)] = seg_softness[subset]
                image[i] = _pad_image(frame[ya:yb, xa:xb], th, tw)
                iy[i], wy[i] = _pad_to(ys[ya:yb] - gy0, th), _pad_to(fys[ya:yb], th)
                ix[i], wx[i] = _pad_to(xs[xa:xb] - gx0, tw), _pad_to(fxs[xa:xb], tw)
            ids, cov = _tiles_ranks(image, crop, pres, iy, wy, ix, wx, soft,
                                    np.float32(options.min_alpha), k=options.k)
            ids, cov = np.asarray(ids), np.asarray(cov)
            for i, (ya, yb, xa, xb, _, _, subset) in enumerate(batch):
                tile_ids = ids[i, :, : yb - ya, : xb - xa]
                lookup = np.append(subset, -1).astype(np.int16)  # id -1 stays -1
                rank_ids[:, ya:yb, xa:xb] = lookup[np.where(tile_ids < 0, len(subset), tile_ids)]
                rank_cov[:, ya:yb, xa:xb] = cov[i, :, : yb - ya, : xb - xa]


def _full_res_ranks(q: np.ndarray, frame: np.ndarray, seg_softness: np.ndarray,
                    hard_index: np.ndarray, options: MatteOptions) -> tuple[np.ndarray, np.ndarray]:
    """Rank arrays at the frame's resolution from the working-resolution distribution `q`."""
    coef, present, grid_hw, align = _coefficient_grid(q, frame, hard_index, options)
    big_h, big_w = frame.shape[:2]
    tiling = _tiling((big_h, big_w), grid_hw, align, options.tile)
    rank_ids = np.full((options.k, big_h, big_w), -1, np.int16)
    rank_cov = np.zeros((options.k, big_h, big_w), np.float32)
    mixed = _fill_single_segment_tiles(present, tiling, options.k, rank_ids, rank_cov)
    _mixed_tiles(mixed, coef, present, frame, seg_softness, tiling, options, rank_ids, rank_cov)
    return rank_ids, rank_cov


def _resample_at(x: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of x [S, h, w] at rows `ys` x columns `xs` (clamped), float32."""
    h, w = x.shape[-2:]
    y0, fy = _split(np.clip(ys, 0, h - 1))
    x0, fx = _split(np.clip(xs, 0, w - 1))
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    rows = x[:, y0] * (1 - fy)[:, None] + x[:, y1] * fy[:, None]
    return (rows[..., x0] * (1 - fx) + rows[..., x1] * fx).astype(np.float32)


def _pad_to(v: np.ndarray, n: int) -> np.ndarray:
    return np.pad(v, (0, n - len(v)), mode="edge") if len(v) < n else v


def _pad_image(tile: np.ndarray, th: int, tw: int) -> np.ndarray:
    ph, pw = th - tile.shape[0], tw - tile.shape[1]
    return np.pad(tile, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else tile


# ---------------------------------------------------------------------------------------------
# Entry points.


def _checked_raw(prediction: FramePrediction) -> RawOutputs:
    if prediction.raw is None:
        raise ValueError(
            f"frame {prediction.index} has no raw model outputs; build the predictor with "
            "VideoPredictor(..., return_raw=True) to make mattes"
        )
    return prediction.raw


def _segments_and_index(raw: RawOutputs, descriptor: DatasetDescriptor, options: MatteOptions):
    table = softness.softness_table(descriptor.class_names, options.softness)
    segments = segments_of(raw.ids, descriptor, table)
    d = 1 << labels.TRACK_BITS
    pan = np.asarray(raw.ids, np.int64)
    pan = np.where(pan // d == descriptor.ignore_label, segments.ids[-1], pan)
    index = np.searchsorted(segments.ids[:-1], pan)
    index = np.where(pan == segments.ids[-1], segments.void_index, index)
    return segments, index.astype(np.int32)


def working_alphas(prediction: FramePrediction, descriptor: DatasetDescriptor,
                   options: MatteOptions | None = None) -> tuple[Segments, np.ndarray]:
    """All alphas at working resolution (no top-K): (segments, float32 [S + 1, h, w]).

    For inspection and tests; `frame_mattes` is the memory-bounded path.
    """
    options = options or MatteOptions()
    raw = _checked_raw(prediction)
    segments, index = _segments_and_index(raw, descriptor, options)
    q = model_distribution(raw, descriptor, segments, index, options.instance_temperature,
                           options.blend_radius)
    soft = _padded_softness(segments, q.shape[0])
    return segments, np.asarray(_tempered_jit(q, soft))[: len(segments)]


def frame_mattes(prediction: FramePrediction, descriptor: DatasetDescriptor,
                 options: MatteOptions | None = None) -> FrameMattes:
    """The ranked soft mattes of one predicted frame.

    Args:
      prediction: from a `VideoPredictor(..., return_raw=True)`.
      descriptor: the predictor's dataset (`predictor.descriptor`).
      options: K, softness, resolution and upsampling.

    Returns:
      `FrameMattes` at working resolution, or at the frame's resolution with
      `options.full_res`.
    """
    options = options or MatteOptions()
    raw = _checked_raw(prediction)
    segments, index = _segments_and_index(raw, descriptor, options)
    q = model_distribution(raw, descriptor, segments, index, options.instance_temperature,
                           options.blend_radius)
    if options.full_res:
        q = np.asarray(q)[: len(segments)]
        ids, cov = _full_res_ranks(q, prediction.image, segments.softness, index, options)
    else:
        soft = _padded_softness(segments, q.shape[0])
        k = min(options.k, q.shape[0])
        ids, cov = _working_ranks(q, soft, np.float32(options.min_alpha), k=k)
        ids, cov = np.asarray(ids).astype(np.int16), np.asarray(cov)
        if k < options.k:  # Fewer (padded) segments than ranks: the extra ranks are empty.
            pad = options.k - k
            ids = np.concatenate([ids, np.full((pad,) + ids.shape[1:], -1, np.int16)])
            cov = np.concatenate([cov, np.zeros((pad,) + cov.shape[1:], np.float32)])
    return FrameMattes(index=prediction.index, segments=segments, rank_ids=ids,
                       rank_coverage=cov, full_res=options.full_res)
