"""The synthetic street world for editing: exact fractional coverage at any resolution.

`vipdl.data.synthetic` paints label maps pixel by pixel, which is what training needs. Judging
soft mattes needs more: how much of each pixel each object covers. Here a scene is described
in continuous coordinates (units of the frame height; x runs to the aspect ratio) and rendered
by supersampling: each output pixel averages `supersample^2` point samples, both for the colour
and for the per-segment coverage. One scene renders at any resolution up to 7680 x 4320, in
bands of rows, so memory stays bounded.

The look follows the training world (same classes, palettes, camera, object sizes at
`object_scale` 0.6), so a model trained on it works here at its working resolution. What is new
is what editing cares about (docs/editing.md#the-editing-world):

* hair: every person has a hair cap and 20-60 strands, curved polylines 0.0005-0.0011 frame
  heights wide (sub-pixel below ~1500 rows), labelled as the person;
* thin void poles (0.002-0.005 frame heights wide) and bicycles made of thin rings and bars;
* objects that partly overlap: each video stages a person in front of a car and a bicycle in
  front of a person, so border pixels are shared by two objects and the background.

Labels follow `vipdl.data.descriptors.SYNTHETIC` (panoptic = class * 1000 + instance, void
255000).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from vipdl.data import synthetic as base

D = base.DESCRIPTOR.label_divisor
VOID = base.DESCRIPTOR.void_label
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY = base.ROAD, base.SIDEWALK, base.BUILDING, \
    base.VEGETATION, base.SKY
PERSON, CAR, BICYCLE = base.PERSON, base.CAR, base.BICYCLE
_HAIR = np.array([(40, 28, 20), (90, 60, 30), (200, 170, 110), (20, 20, 22), (150, 80, 40)],
                 np.float32)


@dataclasses.dataclass(frozen=True)
class EditingConfig:
    """Options of the editing world.

    Attributes:
      height, width: output size in pixels (any size up to 7680 x 4320; the scene layout only
        depends on the aspect ratio and the seed).
      num_frames: frames per video.
      supersample: point samples per pixel side (coverage resolution 1 / supersample^2).
      min_objects, max_objects: thing objects per video, including the staged overlaps.
      max_poles: thin void poles per video.
      noise_std: per-pixel colour noise (0..255), added after supersampling.
      object_scale: object distance scale, as `synthetic.SyntheticConfig.object_scale`.
    """

    height: int = 512
    width: int = 1024
    num_frames: int = 3
    supersample: int = 4
    min_objects: int = 4
    max_objects: int = 7
    max_poles: int = 3
    noise_std: float = 6.0
    object_scale: float = 0.6

    def __post_init__(self):
        if not (16 <= self.height <= 8640 and 16 <= self.width <= 15360):
            raise ValueError(f"height x width must be within 16..8640 x 16..15360, got "
                             f"{self.height}x{self.width}")
        if not 1 <= self.supersample <= 15:
            raise ValueError(f"supersample must be in [1, 15], got {self.supersample}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if not 3 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 3 <= min_objects <= max_objects, got {self.min_objects}, "
                             f"{self.max_objects}")

    @property
    def aspect(self) -> float:
        return self.width / self.height


@dataclasses.dataclass(frozen=True)
class EditingFrame:
    """One rendered frame.

    Attributes:
      image: uint8 [H, W, 3].
      panoptic: int32 [H, W], the segment covering most of each pixel.
      segment_ids: int64 [S] panoptic ids of the segments with some coverage (void included
        when present).
      coverage: float32 [S, H, W] fraction of each pixel covered by each segment (sums to 1),
        or None when rendered without coverage.
    """

    image: np.ndarray
    panoptic: np.ndarray
    segment_ids: np.ndarray
    coverage: np.ndarray | None


# --------------------------------------------------------------------------------------------
# Continuous textures.


class _Noise:
    """Smooth value noise in [-1, 1] at continuous coordinates (bilinear on a random grid)."""

    def __init__(self, rng: np.random.Generator, cell: float, extent_y: float, extent_x: float):
        self.cell = cell
        self.grid = rng.uniform(-1, 1, (int(extent_y / cell) + 3, int(extent_x / cell) + 3))
        self.grid = self.grid.astype(np.float32)

    def __call__(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        gy = np.clip(np.float32(1 / self.cell) * y.astype(np.float32), 0, self.grid.shape[0] - 2)
        gx = np.clip(np.float32(1 / self.cell) * x.astype(np.float32), 0, self.grid.shape[1] - 2)
        y0, x0 = gy.astype(np.int64), gx.astype(np.int64)
        fy, fx = gy - y0, gx - x0
        g = self.grid
        top = g[y0, x0] * (1 - fx) + g[y0, x0 + 1] * fx
        bottom = g[y0 + 1, x0] * (1 - fx) + g[y0 + 1, x0 + 1] * fx
        return top * (1 - fy) + bottom * fy


# --------------------------------------------------------------------------------------------
# The scene.


@dataclasses.dataclass
class _Thing:
    class_id: int
    instance_id: int
    x_mid: float  # Box centre x at frame 0 (height units).
    vx: float  # Height units per frame.
    d: float  # Foot distance below the horizon (sets size).
    colour: np.ndarray
    params: np.ndarray  # float32 [4] shape parameters in [0, 1].
    hair: np.ndarray | None = None  # float32 [n, 8, 2] strand polylines in head units.
    hair_width: float = 0.0  # Strand width in height units.
    hair_colour: np.ndarray | None = None

    def box(self, t: int, horizon: float) -> tuple[float, float, float, float]:
        real_h, aspect = base._THING_SHAPE[self.class_id]
        bh = real_h * self.d / base.CAMERA_HEIGHT
        bw = bh * aspect
        cx = self.x_mid + self.vx * t
        foot = horizon + self.d
        return foot - bh, cx - bw / 2, foot, cx + bw / 2


@dataclasses.dataclass
class Scene:
    """A video's world in continuous coordinates (see `make_scene`)."""

    config: EditingConfig
    seed: int
    horizon: float
    road_edge: tuple[float, float]  # (edge at x = 0, slope)
    buildings: list[tuple[float, float, float, np.ndarray]]  # (x0, x1, top, tint)
    trees: list[tuple[float, float, float, float, float]]  # (cy, cx, ry, rx, phase)
    poles: list[tuple[float, float, float, float]]  # (x, width, top, base)
    things: list[_Thing]
    colours: dict[int, np.ndarray]
    noise: tuple[_Noise, _Noise, _Noise]
    brightness: float
    lane: float | None

    @property
    def segment_ids(self) -> np.ndarray:
        """Every panoptic id the scene can produce (stuff, things, void), sorted."""
        ids = [c * D for c in (ROAD, SIDEWALK, BUILDING, VEGETATION, SKY)]
        ids += [t.class_id * D + t.instance_id for t in self.things]
        return np.array(sorted(ids + [VOID]), np.int64)


def _hair(rng: np.random.Generator) -> np.ndarray:
    """Strand polylines [n, 8, 2] in head units: (0, 0) head centre, head radius 1."""
    n = int(rng.integers(20, 61))
    out = np.zeros((n, 8, 2), np.float32)
    s = np.linspace(0, 1, 8)[:, None]
    side = rng.choice([-1.0, 1.0])  # Hair blown to one side.
    for k in range(n):
        angle = rng.uniform(-0.95 * np.pi, -0.05 * np.pi)  # Upper half of the head.
        start = np.array([np.sin(angle) * 0.95, np.cos(angle) * 0.95])  # (y, x)
        out_dir = np.array([np.sin(angle), np.cos(angle)])
        length = rng.uniform(0.6, 1.8)
        droop = np.array([rng.uniform(0.4, 1.2), side * rng.uniform(0.1, 0.8)])
        wiggle = rng.uniform(0.05, 0.2) * np.sin(s * rng.uniform(4, 9) + rng.uniform(0, 6))
        pts = start + s * length * out_dir + (s ** 2) * droop * length + wiggle * out_dir[::-1]
        out[k] = pts
    return out


def make_scene(config: EditingConfig, seed: int | Sequence[int]) -> Scene:
    """A random scene; identical for identical (aspect ratio, seed, object options)."""
    rng = np.random.default_rng(base._as_seed_sequence(seed))
    aspect = config.aspect
    horizon = rng.uniform(0.4, 0.52)
    edge0 = horizon + (1 - horizon) * rng.uniform(0.12, 0.3)
    slope = rng.uniform(-0.06, 0.06) / aspect
    buildings = []
    x = -rng.uniform(0, 0.25 * aspect / 2)
    while x < aspect:
        bw = rng.uniform(1 / 8, 1 / 3) * aspect / 2
        if rng.uniform() < 0.85:
            buildings.append((x, x + bw, horizon * rng.uniform(0.05, 0.75),
                              base._jitter(rng, base._STUFF_COLOUR[BUILDING], 30)))
        x += bw
    trees = []
    for _ in range(int(rng.integers(0, 4))):
        ry = rng.uniform(0.1, 0.22)
        trees.append((horizon * rng.uniform(0.55, 1.0), rng.uniform(0, aspect), ry,
                      ry * rng.uniform(0.8, 1.6), rng.uniform(0, 6)))
    poles = []
    for _ in range(int(rng.integers(1, config.max_poles + 1))):
        base_y = horizon + (1 - horizon) * rng.uniform(0.1, 0.3)
        poles.append((rng.uniform(0, aspect), rng.uniform(0.002, 0.005),
                      horizon * rng.uniform(0.1, 0.6), base_y))
    colours = {c: base._jitter(rng, base._STUFF_COLOUR[c], 14) for c in base._STUFF_COLOUR}
    colours[-1] = base._jitter(rng, base._POLE, 20)
    noise = (_Noise(rng, 2 / 128, 1.0, aspect), _Noise(rng, 6 / 128, 1.0, aspect),
             _Noise(rng, 24 / 128, 1.0, aspect))

    span = (1 - horizon) * config.object_scale
    num = int(rng.integers(config.min_objects, config.max_objects + 1))
    n_frames = config.num_frames
    things: list[_Thing] = []

    def add(class_id, x_mid, vx, d):
        palette = {PERSON: base._CLOTHES, CAR: base._CAR_PAINT, BICYCLE: base._BIKE_FRAME}
        colour = base._jitter(rng, palette[class_id][rng.integers(len(palette[class_id]))], 18)
        thing = _Thing(class_id, len(things) + 1, x_mid, vx, d, colour,
                       rng.uniform(size=4).astype(np.float32))
        if class_id == PERSON:
            thing.hair = _hair(rng)
            thing.hair_width = rng.uniform(0.0005, 0.0011)
            thing.hair_colour = _HAIR[rng.integers(len(_HAIR))]
        things.append(thing)

    def speed(class_id):
        lo, hi = base._THING_SPEED[class_id]
        return rng.uniform(lo, hi) * 2 * rng.choice([-1.0, 1.0]) / max(n_frames, 1)

    # Staged overlaps: a person in front of a car, a bicycle in front of a person.
    x_car = rng.uniform(0.3, aspect - 0.3)
    d_car = span * rng.uniform(0.5, 0.7)
    add(CAR, x_car, speed(CAR) * 0.3, d_car)
    car_w = base._THING_SHAPE[CAR][0] * d_car / base.CAMERA_HEIGHT * base._THING_SHAPE[CAR][1]
    add(PERSON, x_car + rng.choice([-1, 1]) * car_w * rng.uniform(0.3, 0.45), speed(PERSON) * 0.3,
        d_car * rng.uniform(1.15, 1.3))
    x_p = rng.uniform(0.2, aspect - 0.2)
    d_p = span * rng.uniform(0.55, 0.8)
    add(PERSON, x_p, speed(PERSON) * 0.3, d_p)
    add(BICYCLE, x_p + rng.uniform(-0.05, 0.05), speed(BICYCLE) * 0.3, d_p * rng.uniform(1.1, 1.2))
    while len(things) < num:
        class_id = int(rng.choice(base.THING_CLASSES, p=base._THING_PROB))
        add(class_id, rng.uniform(0.05, aspect - 0.05), speed(class_id),
            span * rng.uniform(0.45, 1.0))
    lane = edge0 + (1 - edge0) * rng.uniform(0.35, 0.6) if rng.uniform() < 0.6 else None
    return Scene(config=config, seed=int(np.asarray(seed).ravel()[0]), horizon=horizon,
                 road_edge=(edge0 - slope * aspect / 2, slope), buildings=buildings,
                 trees=trees, poles=poles, things=things, colours=colours, noise=noise,
                 brightness=float(rng.uniform(0.85, 1.15)), lane=lane)


# --------------------------------------------------------------------------------------------
# Rendering.


def _background(scene: Scene, ys: np.ndarray, xs: np.ndarray):
    """Labels (int64 [n, m]) and colours (float32 [n, m, 3]) of the stuff and the poles.

    Args:
      ys, xs: float64 [n], [m] sorted sample coordinates (height units) of the band's grid.
    """
    n, m = len(ys), len(xs)
    y, x = ys[:, None], xs[None, :]
    edge = scene.road_edge[0] + scene.road_edge[1] * x
    label = np.where(y >= edge, ROAD, SIDEWALK).astype(np.int64)
    label[ys < scene.horizon] = SKY
    # Buildings are disjoint x intervals: a column's building is found by a search.
    starts = np.array([b[0] for b in scene.buildings] + [np.inf])
    which = np.searchsorted(starts, xs, side="right") - 1
    inside = (which >= 0) & (xs < np.array([b[1] for b in scene.buildings] + [np.inf])[which])
    tops = np.where(inside, np.array([b[2] for b in scene.buildings] + [np.inf])[which], np.inf)
    label[(y < scene.horizon) & (y >= tops[None, :])] = BUILDING
    for cy, cx, ry, rx, phase in scene.trees:
        r = slice(*np.searchsorted(ys, (cy - 1.2 * ry, cy + 1.2 * ry)))
        c = slice(*np.searchsorted(xs, (cx - 1.2 * rx, cx + 1.2 * rx)))
        ty, tx = y[r], x[:, c]
        wob = 1 + 0.15 * np.sin(np.arctan2(ty - cy, tx - cx) * 5 + phase)
        crown = (((ty - cy) / ry) ** 2 + ((tx - cx) / rx) ** 2 < wob ** 2) & (ty < edge[:, c])
        label[r, c][crown] = VEGETATION
    colours = scene.colours
    colour = np.zeros((n, m, 3), np.float32)
    fine, mid, coarse = scene.noise
    for cls in (ROAD, SIDEWALK, BUILDING, VEGETATION, SKY):
        rr, cc = np.nonzero(label == cls)
        if not len(rr):
            continue
        py, px = ys[rr], xs[cc]
        if cls == ROAD:
            col = colours[ROAD] + (12 * fine(py, px) + 8 * coarse(py, px))[:, None]
            if scene.lane is not None:
                dash = (np.mod(px, 1 / 3) < 1 / 6) & (np.abs(py - scene.lane) < 1 / 80)
                col[dash] = 215
        elif cls == SIDEWALK:
            tile = 1 / 12
            grout = (np.mod(px + py * 0.5, tile) < 1 / 128) | (np.mod(py, tile / 2) < 1 / 128)
            col = colours[SIDEWALK] + (8 * mid(py, px) - 35 * grout)[:, None]
        elif cls == BUILDING:
            tint = np.stack([b[3] for b in scene.buildings])[which[cc]]
            win = 1 / 16
            windows = (np.mod(py, win) < win * 0.55) & (np.mod(px, win) < win * 0.5)
            col = (tint + (10 * mid(py, px))[:, None]
                   - 45 * windows[:, None] * np.float32([1, 1, 0.7]))
        elif cls == VEGETATION:
            col = colours[VEGETATION] + (30 * fine(py, px) + 15 * mid(py, px))[:, None] * \
                np.float32([0.6, 1.0, 0.4])
        else:
            col = (colours[SKY] + (py / scene.horizon * 30)[:, None]
                   + (np.clip(coarse(py, px), 0, 1) * 60)[:, None])
        colour[rr, cc] = col
    panoptic = label * D
    for px, pw, top, bottom in scene.poles:
        r = slice(*np.searchsorted(ys, (top, bottom), side="left"))
        c = slice(*np.searchsorted(xs, (px - pw / 2, px + pw / 2)))
        if r.start >= r.stop or c.start >= c.stop:
            continue
        panoptic[r, c] = VOID
        py, px_ = np.meshgrid(ys[r], xs[c], indexing="ij")
        colour[r, c] = colours[-1] + 10 * fine(py, px_)[..., None]
    return panoptic, colour


def _segments_distance(py, px, pts: np.ndarray) -> np.ndarray:
    """Distance from points (py, px) to a polyline pts [m, 2]."""
    best = np.full(np.broadcast(py, px).shape, np.inf, np.float32)
    for a, b in zip(pts[:-1], pts[1:]):
        d = b - a
        t = np.clip(((py - a[0]) * d[0] + (px - a[1]) * d[1]) / max(float(d @ d), 1e-12), 0, 1)
        best = np.minimum(best, np.hypot(py - a[0] - t * d[0], px - a[1] - t * d[1]))
    return best


def _paint_thing(thing: _Thing, t: int, scene: Scene, ys: np.ndarray, xs: np.ndarray,
                 panoptic: np.ndarray, colour: np.ndarray) -> None:
    """Paints a thing over the band's samples (rows `ys`, columns `xs`) in place."""
    y0, x0, y1, x1 = thing.box(t, scene.horizon)
    bh = y1 - y0
    hair_reach = 2.8 * 0.1 * bh if thing.hair is not None else 0.0  # strands leave the box
    r0, r1 = np.searchsorted(ys, y0 - hair_reach), np.searchsorted(ys, y1)
    c0, c1 = np.searchsorted(xs, x0 - hair_reach), np.searchsorted(xs, x1 + hair_reach)
    if r0 >= r1 or c0 >= c1:
        return
    yy, xx = ys[r0:r1, None], xs[None, c0:c1]
    u, v = (yy - y0) / bh, (xx - x0) / (x1 - x0)
    mask, col = base._shape(thing.class_id, u.astype(np.float32), v.astype(np.float32),
                            thing.colour, thing.params)
    mask = mask & (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    col = col * (1.0 + 0.08 * (v - 0.5) - 0.1 * u)[..., None]
    if thing.class_id == BICYCLE:  # Thinner rings and bars than the training world's.
        mask, col = _thin_bicycle(u, v, thing)
    if thing.hair is not None:
        # Head centre and radius in height units (head: ellipse at u = 0.1, radii 0.1 bh and
        # 0.32 of the box width).
        hy, hx, hr = y0 + 0.1 * bh, (x0 + x1) / 2, 0.1 * bh
        cap = (((yy - hy) / hr) ** 2 + ((xx - hx) / (0.32 * (x1 - x0))) ** 2 < 1) & (yy < hy)
        strands = np.zeros(mask.shape, bool)
        for pts in thing.hair:
            world = pts * hr + np.array([hy, hx], np.float32)
            lo, hi = world.min(0) - thing.hair_width, world.max(0) + thing.hair_width
            rs = slice(np.searchsorted(ys[r0:r1], lo[0]), np.searchsorted(ys[r0:r1], hi[0]))
            cs = slice(np.searchsorted(xs[c0:c1], lo[1]), np.searchsorted(xs[c0:c1], hi[1]))
            if rs.start >= rs.stop or cs.start >= cs.stop:
                continue
            dist = _segments_distance(yy[rs], xx[:, cs], world)
            strands[rs, cs] |= dist < thing.hair_width / 2
        hair = cap | strands
        mask = mask | hair
        col = np.where(hair[..., None], thing.hair_colour, col)
    pid = thing.class_id * D + thing.instance_id
    panoptic[r0:r1, c0:c1][mask] = pid
    colour[r0:r1, c0:c1][mask] = col[mask]


def _thin_bicycle(u: np.ndarray, v: np.ndarray, thing: _Thing):
    """A bicycle of thin rings (tyres) and bars, in box coordinates."""
    rw = 0.36
    ring = np.zeros(np.broadcast(u, v).shape, bool)
    for cv in (0.22, 0.78):
        r = np.sqrt(((u - (1 - rw)) / rw) ** 2 + ((v - cv) / 0.22) ** 2)
        ring |= np.abs(r - 0.9) < 0.09
    bar = (np.abs(u - 0.45) < 0.035) & (v > 0.22) & (v < 0.8)
    post = (np.abs(v - 0.4 - 0.1 * thing.params[0]) < 0.03) & (u > 0.1) & (u < 0.64)
    handle = (np.abs(v - 0.75) < 0.03) & (u > 0.05) & (u < 0.64)
    frame = bar | post | handle
    col = np.broadcast_to(thing.colour, ring.shape + (3,)).astype(np.float32).copy()
    col[ring] = (25, 25, 25)
    return (ring | frame) & (u >= 0) & (u < 1) & (v >= 0) & (v < 1), col


_BAND_ROWS = 32


def render_frame(scene: Scene, t: int, *, height: int | None = None, width: int | None = None,
                 supersample: int | None = None, with_coverage: bool = True) -> EditingFrame:
    """Renders frame `t` of a scene (row bands of 32 output rows at a time).

    Args:
      scene: from `make_scene`.
      t: frame index (objects move with t).
      height, width, supersample: override the scene config's (same aspect ratio expected).
      with_coverage: also return the per-segment coverage (S float32 maps; off for very large
        frames that only need the image).
    """
    cfg = scene.config
    h, w = height or cfg.height, width or cfg.width
    ss = supersample or cfg.supersample
    if abs(w / h - cfg.aspect) > 0.02:
        raise ValueError(f"render size {h}x{w} has not the scene's aspect ratio {cfg.aspect:.3f}")
    ids = scene.segment_ids
    image = np.empty((h, w, 3), np.uint8)
    panoptic = np.empty((h, w), np.int32)
    coverage = np.zeros((len(ids), h, w), np.float32) if with_coverage else None
    area = np.zeros(len(ids), np.int64)
    xs = ((np.arange(w * ss) + 0.5) / ss) / h  # Sample x in height units.
    order = sorted(scene.things, key=lambda th: (th.d, th.instance_id))  # Far first.
    for band, r in enumerate(range(0, h, _BAND_ROWS)):
        rows = min(_BAND_ROWS, h - r)
        ys = (r + (np.arange(rows * ss) + 0.5) / ss) / h
        pan, col = _background(scene, ys, xs)
        for thing in order:
            _paint_thing(thing, t, scene, ys, xs, pan, col)
        col = col.reshape(rows, ss, w, ss, 3).mean(axis=(1, 3)) * scene.brightness
        rng = np.random.default_rng((scene.seed, t, band, 7))
        col += rng.normal(0, cfg.noise_std, col.shape).astype(np.float32)
        image[r : r + rows] = np.clip(col, 0, 255).astype(np.uint8)
        # Samples per (segment, pixel) in one pass: pixel-major bins of the segment index.
        index = np.searchsorted(ids, pan).reshape(rows, ss, w, ss)
        pixel = (np.arange(rows)[:, None, None, None] * w + np.arange(w)[None, None, :, None])
        counts = np.bincount((pixel * len(ids) + index).ravel(), minlength=rows * w * len(ids))
        counts = counts.reshape(rows, w, len(ids)).transpose(2, 0, 1)
        area += counts.sum(axis=(1, 2))
        panoptic[r : r + rows] = ids[np.argmax(counts, 0)]
        if coverage is not None:
            coverage[:, r : r + rows] = counts / np.float32(ss * ss)
    present = area > 0
    return EditingFrame(image=image, panoptic=panoptic, segment_ids=ids[present],
                        coverage=None if coverage is None else coverage[present])


def generate_video(config: EditingConfig, seed: int | Sequence[int],
                   with_coverage: bool = True) -> Iterator[EditingFrame]:
    """Renders the frames of one video lazily (one frame in memory at a time)."""
    scene = make_scene(config, seed)
    for t in range(config.num_frames):
        yield render_frame(scene, t, with_coverage=with_coverage)
