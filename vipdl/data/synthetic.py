"""A seeded, procedural world of labelled street videos.

Every video is a side-on street scene seen by a panning camera: stuff bands (sky, buildings,
vegetation, sidewalk, road) with per-video layout, colour and texture, void poles and sometimes
an ego-vehicle hood, and thing instances (person, car, bicycle) that walk or drive across, change
scale as they approach or recede, occlude each other in depth order, enter and leave the frame and
are sometimes fully hidden by a nearer object for a frame or two. Instance ids are fixed per
object for the whole video, so the videos test tracking as well as segmentation.

Labels follow `vipdl.data.descriptors.SYNTHETIC`: class ids road 0, sidewalk 1, building 2,
vegetation 3, sky 4, person 5, car 6, bicycle 7; `panoptic = class * 1000 + instance`, void =
255 * 1000. Depth is metric and per-layer: a flat ground plane seen from 1.2 m, objects at the
depth of their foot point, buildings and trees at a constant depth, sky far, void unknown (0).

Videos are generated in memory only; `vipdl.data.synthetic_export.write_dataset` writes them in
the on-disk layouts of the real datasets (Cityscapes-VPS, Cityscapes-DVPS, KITTI-STEP).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import numpy as np

from vipdl import keys
from vipdl.data import descriptors

DESCRIPTOR = descriptors.SYNTHETIC

ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR, BICYCLE = range(8)
THING_CLASSES = (PERSON, CAR, BICYCLE)

# Camera height in metres: the ground-plane depth at image row y is
# CAMERA_HEIGHT * focal / (y - horizon), and an object standing at row y is
# real_height * (y - horizon) / CAMERA_HEIGHT pixels tall.
CAMERA_HEIGHT = 1.2
SKY_DEPTH = 80.0
MAX_GROUND_DEPTH = 80.0

# (real height in metres, width / height aspect) of each thing class, side view.
_THING_SHAPE = {PERSON: (1.7, 0.38), CAR: (1.5, 2.6), BICYCLE: (1.1, 1.6)}
# Horizontal speed range (fraction of the image width per frame) per thing class.
_THING_SPEED = {PERSON: (0.004, 0.02), CAR: (0.01, 0.045), BICYCLE: (0.008, 0.03)}
# Relative probability of each thing class when sampling objects.
_THING_PROB = np.array([0.45, 0.3, 0.25])

# Base colours (RGB). Instances of one class share a small palette so that similar-looking
# instances meet; the classes overlap in colour (red clothes, red cars) but differ in shape.
_STUFF_COLOUR = {
    ROAD: (92, 86, 98),
    SIDEWALK: (172, 142, 150),
    BUILDING: (118, 104, 92),
    VEGETATION: (62, 122, 44),
    SKY: (130, 176, 228),
}
_CLOTHES = np.array([(190, 40, 50), (40, 60, 120), (200, 170, 40), (70, 70, 70), (30, 110, 90)])
_CAR_PAINT = np.array(
    [(40, 60, 150), (180, 180, 186), (170, 30, 35), (35, 35, 40), (225, 225, 220)]
)
_BIKE_FRAME = np.array([(120, 15, 35), (20, 90, 160), (230, 120, 20)])
_SKIN = (222, 180, 150)
_POLE = (150, 150, 120)
_HOOD = (30, 32, 36)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Options of the synthetic world.

    Attributes:
        height: frame height in pixels.
        width: frame width in pixels.
        num_frames: raw frames per video.
        annotation_stride: raw frames between two annotated frames; annotated frames are the raw
            frames `stride - 1, 2 * stride - 1, ...` (Cityscapes-VPS annotates frames 5, 10, ...
            of 30, i.e. stride 5). Every raw frame still has a label in `SyntheticVideo`.
        min_objects: minimum number of thing objects per video.
        max_objects: maximum number of thing objects per video.
        occlusion_probability: probability that a video contains a scripted crossing in which a
            near car fully hides a far person or bicycle for one to three frames.
        max_pan: maximum camera pan speed, fraction of the width per frame.
        noise_std: standard deviation of the per-pixel colour noise (0..255 scale).
        hood_probability: probability of a void ego-vehicle hood at the bottom of the frame.
        max_poles: maximum number of void poles per video.
        object_scale: scales how far below the horizon objects stand, hence their size (pixel
            size is proportional to that distance). 1 lets the nearest objects fill most of the
            frame height; smaller values move every object further away while keeping the
            scripted events (a near car still fully hides a farther person) and the ratios
            between objects.
    """

    height: int = 128
    width: int = 256
    num_frames: int = 8
    annotation_stride: int = 1
    min_objects: int = 3
    max_objects: int = 6
    occlusion_probability: float = 0.7
    max_pan: float = 0.015
    noise_std: float = 6.0
    hood_probability: float = 0.3
    max_poles: int = 2
    object_scale: float = 1.0

    def __post_init__(self):
        if self.height < 16 or self.width < 16:
            raise ValueError(f"height and width must be >= 16, got {self.height}x{self.width}")
        if self.annotation_stride < 1:
            raise ValueError(f"annotation_stride must be >= 1, got {self.annotation_stride}")
        if len(self.annotated_frames) < 2:
            raise ValueError(
                f"num_frames={self.num_frames} with annotation_stride={self.annotation_stride} "
                "gives fewer than 2 annotated frames; no pair can be formed"
            )
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError(
                f"need 0 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}"
            )
        if not 0.1 <= self.object_scale <= 1.0:
            raise ValueError(f"object_scale must be in [0.1, 1], got {self.object_scale}")
        if self.max_objects >= DESCRIPTOR.label_divisor:
            raise ValueError(f"max_objects must be < {DESCRIPTOR.label_divisor}")

    @property
    def annotated_frames(self) -> tuple[int, ...]:
        """Raw frame indices that carry annotations, in order."""
        s = self.annotation_stride
        return tuple(range(s - 1, self.num_frames, s))


@dataclasses.dataclass(frozen=True)
class ObjectTrack:
    """Ground-truth trajectory of one thing object (for tests and diagnostics).

    Attributes:
        instance_id: instance id in the panoptic labels (unique within the video).
        class_id: semantic class id.
        boxes: float32 [num_frames, 4] box `(y0, x0, y1, x1)` in frame pixel coordinates; may lie
            partly or wholly outside the frame.
        visible_pixels: int32 [num_frames] pixels of the object visible in each frame.
        depth: float32 [num_frames] depth of the object in metres.
    """

    instance_id: int
    class_id: int
    boxes: np.ndarray
    visible_pixels: np.ndarray
    depth: np.ndarray

    def in_frame(self, height: int, width: int) -> np.ndarray:
        """bool [num_frames]: whether the box overlaps the frame at all."""
        y0, x0, y1, x1 = self.boxes.T
        return (y1 > 0) & (y0 < height) & (x1 > 0) & (x0 < width)


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
    """One generated video.

    Attributes:
        frames: uint8 [num_frames, height, width, 3].
        panoptic: int32 [num_frames, height, width], `class * 1000 + instance`, void 255000.
        depth: float32 [num_frames, height, width], metres, 0 = unknown (void).
        annotated_frames: raw frame indices that are annotated (see `SyntheticConfig`).
        tracks: one `ObjectTrack` per thing object.
    """

    frames: np.ndarray
    panoptic: np.ndarray
    depth: np.ndarray
    annotated_frames: tuple[int, ...]
    tracks: tuple[ObjectTrack, ...]


# --------------------------------------------------------------------------------------------
# Textures.


def _value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth noise in [-1, 1], float32 [height, width]: bilinear upsampling of a coarse grid."""
    gh = int(np.ceil(height / cell)) + 2
    gw = int(np.ceil(width / cell)) + 2
    grid = rng.uniform(-1.0, 1.0, size=(gh, gw)).astype(np.float32)
    ys = np.arange(height, dtype=np.float32) / cell
    xs = np.arange(width, dtype=np.float32) / cell
    y0 = ys.astype(np.int32)
    x0 = xs.astype(np.int32)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _jitter(rng: np.random.Generator, colour, amount: float) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


# --------------------------------------------------------------------------------------------
# The static world (stuff, poles) in world coordinates, wider than the frame for the pan.


@dataclasses.dataclass
class _World:
    semantic: np.ndarray  # int32 [H, WW]
    colour: np.ndarray  # float32 [H, WW, 3]
    depth: np.ndarray  # float32 [H, WW]
    horizon: float


def _ground_depth(rows: np.ndarray, horizon: float, height: int) -> np.ndarray:
    # The focal length is chosen so the bottom row is 4 m away.
    k = 4.0 * (height - horizon)
    d = np.where(rows > horizon + 0.5, k / np.maximum(rows - horizon, 1e-3), MAX_GROUND_DEPTH)
    return np.minimum(d, MAX_GROUND_DEPTH).astype(np.float32)


def _make_world(rng: np.random.Generator, cfg: SyntheticConfig, world_width: int) -> _World:
    """The static background of one video: stuff layout, colour/texture, depth, void poles.

    Long on purpose: one sequential recipe in which every step draws from `rng` in a fixed order.
    Splitting it would not shorten the logic, and reordering any draw changes every generated
    video (and the demo's published numbers).
    """
    h, ww = cfg.height, world_width
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(ww, dtype=np.float32)[None, :]
    horizon = h * rng.uniform(0.4, 0.52)

    # Sidewalk/road boundary: a line at a per-video height and slope.
    edge0 = horizon + (h - horizon) * rng.uniform(0.12, 0.3)
    slope = rng.uniform(-0.06, 0.06) * h / ww
    road_edge = edge0 + slope * (cols - ww / 2)
    semantic = np.where(rows >= road_edge, ROAD, SIDEWALK).astype(np.int32)
    semantic = np.broadcast_to(semantic, (h, ww)).copy()

    # Skyline: piecewise-constant building heights with gaps.
    skyline = np.full(ww, horizon, np.float32)
    building_id = np.full(ww, -1, np.int32)
    x = -int(rng.integers(0, cfg.width // 4))
    b = 0
    while x < ww:
        bw = int(rng.integers(cfg.width // 8, cfg.width // 3))
        if rng.uniform() < 0.85:
            top = horizon * rng.uniform(0.05, 0.75)
            lo, hi = max(x, 0), min(x + bw, ww)
            skyline[lo:hi] = top
            building_id[lo:hi] = b
            b += 1
        x += bw
    above = rows < horizon
    semantic = np.where(above, SKY, semantic)
    semantic = np.where(above & (rows >= skyline[None, :]), BUILDING, semantic)

    # Trees: elliptic crowns straddling the building line and the sidewalk.
    num_trees = int(rng.integers(0, 2 + ww // max(cfg.width // 2, 1)))
    tree_mask = np.zeros((h, ww), bool)
    for _ in range(num_trees):
        cx = rng.uniform(0, ww)
        cy = horizon * rng.uniform(0.55, 1.0)
        ry = h * rng.uniform(0.1, 0.22)
        rx = ry * rng.uniform(0.8, 1.6)
        wobble = 1 + 0.15 * np.sin(np.arctan2(rows - cy, cols - cx) * 5 + rng.uniform(0, 6))
        tree_mask |= ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 < wobble**2
    semantic = np.where(tree_mask & (rows < road_edge), VEGETATION, semantic)

    # Colour and texture, per class.
    colour = np.zeros((h, ww, 3), np.float32)
    n_fine = _value_noise(rng, h, ww, 2.0)
    n_mid = _value_noise(rng, h, ww, 6.0)
    n_coarse = _value_noise(rng, h, ww, 24.0)

    road = _jitter(rng, _STUFF_COLOUR[ROAD], 12) + (12 * n_fine + 8 * n_coarse)[..., None]
    if rng.uniform() < 0.6:  # Dashed lane marking, still labelled road.
        lane_y = edge0 + (h - edge0) * rng.uniform(0.35, 0.6)
        dash = (np.mod(cols, cfg.width / 6) < cfg.width / 12) & (np.abs(rows - lane_y) < h / 80 + 1)
        road = np.where(dash[..., None], np.float32(215), road)
    colour = np.where((semantic == ROAD)[..., None], road, colour)

    tile = max(cfg.height // 12, 3)
    grout = (np.mod(cols + rows * 0.5, tile) < 1) | (np.mod(rows, tile / 2) < 1)
    sidewalk = _jitter(rng, _STUFF_COLOUR[SIDEWALK], 14) + (8 * n_mid)[..., None]
    sidewalk = sidewalk - 35 * grout[..., None]
    colour = np.where((semantic == SIDEWALK)[..., None], sidewalk, colour)

    # Each building gets its own tint and a window grid.
    tints = np.stack([_jitter(rng, _STUFF_COLOUR[BUILDING], 30) for _ in range(max(b, 1))])
    tint = tints[np.maximum(building_id, 0)][None, :, :]
    win = max(cfg.height // 16, 4)
    windows = (np.mod(rows, win) < win * 0.55) & (np.mod(cols, win) < win * 0.5)
    building = tint + (10 * n_mid)[..., None] - 45 * windows[..., None] * np.float32([1, 1, 0.7])
    colour = np.where((semantic == BUILDING)[..., None], building, colour)

    veg = _jitter(rng, _STUFF_COLOUR[VEGETATION], 15) + (30 * n_fine + 15 * n_mid)[..., None] * [
        0.6,
        1.0,
        0.4,
    ]
    colour = np.where((semantic == VEGETATION)[..., None], veg, colour)

    sky = _jitter(rng, _STUFF_COLOUR[SKY], 15) + (rows / max(horizon, 1) * 30)[..., None]
    clouds = np.clip(n_coarse, 0, 1)[..., None] * rng.uniform(0, 90)
    colour = np.where((semantic == SKY)[..., None], sky + clouds, colour)

    depth = np.zeros((h, ww), np.float32)
    ground = np.broadcast_to(_ground_depth(rows, horizon, h), (h, ww))
    depth = np.where((semantic == ROAD) | (semantic == SIDEWALK), ground, depth)
    bdepth = rng.uniform(20, 60, size=max(b, 1)).astype(np.float32)[np.maximum(building_id, 0)]
    depth = np.where(semantic == BUILDING, bdepth[None, :], depth)
    depth = np.where(semantic == VEGETATION, np.float32(rng.uniform(10, 25)), depth)
    depth = np.where(semantic == SKY, np.float32(SKY_DEPTH), depth)

    # Void poles (street lights, signs): unlabelled, unknown depth.
    for _ in range(int(rng.integers(0, cfg.max_poles + 1))):
        px = rng.uniform(0, ww)
        pw = max(cfg.width / 100, 1.5) * rng.uniform(1, 2)
        base = horizon + (h - horizon) * rng.uniform(0.1, 0.3)
        top = horizon * rng.uniform(0.1, 0.6)
        pole = (np.abs(cols - px) < pw / 2) & (rows >= top) & (rows <= base)
        semantic = np.where(pole, DESCRIPTOR.ignore_label, semantic)
        colour = np.where(pole[..., None], _jitter(rng, _POLE, 20) + 10 * n_fine[..., None], colour)
        depth = np.where(pole, np.float32(0), depth)

    return _World(semantic=semantic, colour=colour.astype(np.float32), depth=depth, horizon=horizon)


# --------------------------------------------------------------------------------------------
# Things.


@dataclasses.dataclass
class _Object:
    class_id: int
    instance_id: int
    x0: float  # World x of the box centre at frame 0.
    vx: float  # World pixels per frame.
    d0: float  # Foot row minus horizon at frame 0 (sets scale and depth).
    vd: float  # Change of d per frame.
    colour: np.ndarray  # Main colour, float32 [3].
    rank: float = 0.0  # Tie-breaker of the depth order.


def _box(obj: _Object, t: int, horizon: float) -> tuple[float, float, float, float, float]:
    """World box `(y0, x0, y1, x1)` and foot distance `d` below the horizon at frame t."""
    d = max(obj.d0 + obj.vd * t, 1.0)
    real_h, aspect = _THING_SHAPE[obj.class_id]
    bh = real_h * d / CAMERA_HEIGHT
    bw = bh * aspect
    cx = obj.x0 + obj.vx * t
    foot = horizon + d
    return foot - bh, cx - bw / 2, foot, cx + bw / 2, d


def _shape(class_id: int, u: np.ndarray, v: np.ndarray, base: np.ndarray, rng_vals: np.ndarray):
    """Mask and colour of a thing in box coordinates.

    Args:
        class_id: thing class.
        u: float32 [h, 1] vertical coordinate in [0, 1] (0 = top of the box).
        v: float32 [1, w] horizontal coordinate in [0, 1].
        base: float32 [3] main colour of the instance.
        rng_vals: float32 [4] per-instance shape parameters in [0, 1].

    Returns:
        (bool [h, w] mask, float32 [h, w, 3] colour).
    """
    u, v = np.broadcast_arrays(u, v)
    hw = u.shape
    col = np.broadcast_to(base, (*hw, 3)).astype(np.float32).copy()
    if class_id == PERSON:
        head_r = 0.1
        head = ((u - head_r) / head_r) ** 2 + ((v - 0.5) / 0.32) ** 2 < 1
        torso = (u >= 0.18) & (u < 0.6) & (np.abs(v - 0.5) < 0.5 - 0.2 * (0.6 - u))
        stride = 0.16 * (rng_vals[0] - 0.5)
        legs = (u >= 0.58) & (
            (np.abs(v - 0.32 - stride * (u - 0.58) * 2) < 0.14)
            | (np.abs(v - 0.68 + stride * (u - 0.58) * 2) < 0.14)
        )
        mask = head | torso | legs
        col[np.broadcast_to(head, hw)] = _SKIN
        col[np.broadcast_to(legs & ~torso, hw)] = (45, 45, 65)
    elif class_id == CAR:
        cab0, cab1 = 0.18 + 0.08 * rng_vals[0], 0.8 - 0.08 * rng_vals[1]
        body = (u >= 0.36) & (u < 0.9)
        corner = np.minimum(v, 1 - v) < 0.04
        body &= ~(corner & ((u < 0.42) | (u > 0.84)))
        cabin = (u < 0.38) & (v >= cab0 + 0.1 * (0.38 - u)) & (v <= cab1 - 0.1 * (0.38 - u))
        wheels = ((u - 0.86) / 0.14) ** 2 + (
            (np.minimum(np.abs(v - 0.2), np.abs(v - 0.8))) / 0.06
        ) ** 2 < 1
        mask = body | cabin | wheels
        window = cabin & (u > 0.06) & (np.abs(v - (cab0 + cab1) / 2) > 0.01)
        col[np.broadcast_to(window, hw)] = (40, 55, 70)
        col[np.broadcast_to(wheels & (u > 0.8), hw)] = (20, 20, 22)
        col[np.broadcast_to((u > 0.55) & (u < 0.58) & body, hw)] = base * 0.6
    else:  # BICYCLE with rider-less frame: two wheels joined by a frame and a saddle post.
        wheel_r = 0.36
        dl = ((u - (1 - wheel_r)) / wheel_r) ** 2 + ((v - 0.22) / 0.22) ** 2
        dr = ((u - (1 - wheel_r)) / wheel_r) ** 2 + ((v - 0.78) / 0.22) ** 2
        wheels = (dl < 1) | (dr < 1)
        tyre = wheels & ((dl > 0.55) | (dr > 0.55)) & ~((dl < 0.55) | (dr < 0.55))
        bar = (np.abs(u - 0.45) < 0.08) & (v > 0.22) & (v < 0.8)
        post = (np.abs(v - 0.4 - 0.1 * rng_vals[0]) < 0.06) & (u > 0.1) & (u < 0.5)
        handle = (np.abs(v - 0.75) < 0.05) & (u > 0.05) & (u < 0.45)
        mask = wheels | bar | post | handle
        col[np.broadcast_to(tyre, hw)] = (25, 25, 25)
        col[np.broadcast_to(wheels & ~tyre, hw)] = base * 0.5 + 60
    return np.broadcast_to(mask, hw), col


def _sample_objects(
    rng: np.random.Generator, cfg: SyntheticConfig, horizon: float, cam_x: np.ndarray, pan: float
) -> list[_Object]:
    """Samples the thing objects; velocities below are relative to the screen.

    Long for the same reason as `_make_world`: a fixed sequence of `rng` draws.
    """
    h, w, t_count = cfg.height, cfg.width, cfg.num_frames
    # Every sampled foot distance below the horizon is a fraction of `span`.
    span = (h - horizon) * cfg.object_scale
    objects: list[_Object] = []
    num = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    t_mid = (t_count - 1) / 2

    def colour_for(class_id: int, like: np.ndarray | None = None) -> np.ndarray:
        if like is not None:  # A look-alike of another instance.
            return _jitter(rng, like, 10)
        palette = {PERSON: _CLOTHES, CAR: _CAR_PAINT, BICYCLE: _BIKE_FRAME}[class_id]
        return _jitter(rng, palette[rng.integers(len(palette))], 18)

    def add(class_id, screen_x_mid, v_screen, d0, vd, like=None):
        vx = v_screen + pan  # World velocity; the camera moves by `pan` per frame.
        x0 = screen_x_mid + cam_x[int(round(t_mid))] - vx * t_mid
        colour = colour_for(class_id, like)
        objects.append(_Object(class_id, len(objects) + 1, x0, vx, d0, vd, colour, rng.uniform()))

    def speed(class_id):
        lo, hi = _THING_SPEED[class_id]
        return rng.uniform(lo, hi) * w * rng.choice([-1.0, 1.0])

    # A scripted crossing: a near car passes in front of a far person/bicycle and hides it fully
    # for a frame or two around the middle of the video.
    if num >= 2 and rng.uniform() < cfg.occlusion_probability and t_count >= 3:
        far_class = PERSON if rng.uniform() < 0.75 else BICYCLE
        # The car's top (0.25 d_near above the horizon) must reach the person's top (0.42 d_far
        # above it), hence d_near >= 1.67 d_far; a bicycle's top is below the horizon anyway.
        d_far = span * rng.uniform(0.4, 0.5)
        d_near = d_far * 1.667 * rng.uniform(1.05, 1.15)
        near_h = _THING_SHAPE[CAR][0] * d_near / CAMERA_HEIGHT
        far_w = _THING_SHAPE[far_class][0] * d_far / CAMERA_HEIGHT * _THING_SHAPE[far_class][1]
        # The cabin spans roughly the middle half of the car and has to cover the far object:
        # full occlusion lasts while the centres are closer than `cover / 2`, i.e. 1.2-2.5 frames.
        cover = 0.5 * near_h * _THING_SHAPE[CAR][1] - far_w
        v_far = speed(far_class) * 0.5
        v_rel = max(cover, 1.0) / rng.uniform(1.2, 2.5) * rng.choice([-1.0, 1.0])
        x_mid = w * rng.uniform(0.35, 0.65)
        t_c = t_mid + rng.uniform(-0.5, 0.5)
        x_at_mid_far = x_mid + v_far * (t_mid - t_c)
        x_at_mid_near = x_mid + (v_far + v_rel) * (t_mid - t_c)
        add(far_class, x_at_mid_far, v_far, d_far, 0.0)
        add(CAR, x_at_mid_near, v_far + v_rel, d_near, 0.0)

    # Two look-alike instances of one class crossing each other at different depths in the
    # middle of the video: the tracker must not swap their ids.
    if num - len(objects) >= 2 and rng.uniform() < 0.6:
        class_id = PERSON if rng.uniform() < 0.6 else CAR
        lo = 0.45 if class_id == PERSON else 0.5
        d_a = span * rng.uniform(lo, 0.7)
        d_b = d_a * rng.uniform(1.15, 1.35)
        v = speed(class_id)
        x_mid = w * rng.uniform(0.3, 0.7)
        add(class_id, x_mid, v, d_a, 0.0)
        add(class_id, x_mid, -v * rng.uniform(0.7, 1.3), d_b, 0.0, like=objects[-1].colour)

    # The rest: random class, depth and approach/recede rate; a quarter enter the frame from
    # outside, a quarter leave it, the others move freely.
    last = t_count - 1
    while len(objects) < num:
        class_id = int(rng.choice(THING_CLASSES, p=_THING_PROB))
        d0 = span * (rng.uniform(0.5, 0.85) if class_id == CAR else rng.uniform(0.45, 1.0))
        v = speed(class_id)
        mode = rng.choice(3, p=[0.5, 0.25, 0.25]) if last > 0 else 0
        if mode == 0:
            add(class_id, w * rng.uniform(-0.15, 1.15), v, d0, span * rng.uniform(-0.025, 0.025))
            continue
        half = 0.5 * _THING_SHAPE[class_id][0] * d0 / CAMERA_HEIGHT * _THING_SHAPE[class_id][1]
        outside = half + w * rng.uniform(0.01, 0.06)  # Centre offset beyond the edge.
        inside = w * rng.uniform(0.1, 0.35)  # Centre offset inside the edge.
        if mode == 1:  # Enter: outside at frame 0, inside at the last frame.
            sx0, sx1 = -outside, inside
        else:  # Leave: inside at frame 0, outside at the last frame.
            sx0, sx1 = inside, -outside
        if v < 0:  # Mirror to the right edge for leftward motion.
            sx0, sx1 = w - sx0, w - sx1
        v = (sx1 - sx0) / last
        add(class_id, sx0 + v * t_mid, v, d0, 0.0)
    return objects


# --------------------------------------------------------------------------------------------
# Videos.


def _as_seed_sequence(seed: int | Sequence[int]) -> np.random.SeedSequence:
    entropy = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]
    if any(s < 0 for s in entropy):
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.SeedSequence(entropy)


def generate_video(config: SyntheticConfig, seed: int | Sequence[int]) -> SyntheticVideo:
    """Generates one labelled video; identical output for identical `(config, seed)`.

    Args:
        config: world options.
        seed: non-negative int or sequence of ints (e.g. `(seed, video_index)`).

    Returns:
        A `SyntheticVideo` with `frames` uint8 [T, H, W, 3], `panoptic` int32 [T, H, W] and
        `depth` float32 [T, H, W] for every raw frame T = `config.num_frames`.

    Long for the same reason as `_make_world`: a fixed sequence of `rng` draws per frame.
    """
    rng = np.random.default_rng(_as_seed_sequence(seed))
    h, w, t_count = config.height, config.width, config.num_frames
    pan = rng.uniform(-config.max_pan, config.max_pan) * w
    cam_x = np.round(np.arange(t_count) * pan - min(0.0, pan * (t_count - 1))).astype(np.int64)
    world_width = w + int(np.ceil(abs(pan) * (t_count - 1))) + 1
    world = _make_world(rng, config, world_width)
    objects = _sample_objects(rng, config, world.horizon, cam_x, pan)
    hood = None
    if rng.uniform() < config.hood_probability:
        hood = (h * rng.uniform(0.9, 0.95), h * rng.uniform(0.03, 0.07))
    brightness = rng.uniform(0.85, 1.15)
    noise = rng.normal(0.0, config.noise_std, size=(t_count, h, w, 3)).astype(np.float32)

    void = DESCRIPTOR.void_label
    divisor = DESCRIPTOR.label_divisor
    frames = np.empty((t_count, h, w, 3), np.uint8)
    panoptic = np.empty((t_count, h, w), np.int32)
    depth = np.empty((t_count, h, w), np.float32)
    boxes = np.zeros((len(objects), t_count, 4), np.float32)
    obj_depth = np.zeros((len(objects), t_count), np.float32)
    shape_params = [rng.uniform(size=4).astype(np.float32) for _ in objects]
    rows = np.arange(h, dtype=np.float32)
    cols = np.arange(w, dtype=np.float32)
    ground_k = 4.0 * (h - world.horizon)

    for t in range(t_count):
        sl = slice(cam_x[t], cam_x[t] + w)
        sem = world.semantic[:, sl]
        pan_t = np.where(sem == DESCRIPTOR.ignore_label, void, sem * divisor).astype(np.int32)
        col = world.colour[:, sl].copy()
        dep = world.depth[:, sl].copy()

        # Far to near (painter's algorithm); the foot row decides depth.
        placed = []
        for k, obj in enumerate(objects):
            y0, x0, y1, x1, d = _box(obj, t, world.horizon)
            x0 -= cam_x[t]
            x1 -= cam_x[t]
            boxes[k, t] = (y0, x0, y1, x1)
            obj_depth[k, t] = min(ground_k / d, MAX_GROUND_DEPTH)
            placed.append((d, obj.rank, k))
        for _d, _, k in sorted(placed):
            obj = objects[k]
            y0, x0, y1, x1 = boxes[k, t]
            r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), h)
            c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), w)
            if r0 >= r1 or c0 >= c1:
                continue
            u = ((rows[r0:r1] + 0.5 - y0) / (y1 - y0))[:, None]
            v = ((cols[c0:c1] + 0.5 - x0) / (x1 - x0))[None, :]
            mask, obj_col = _shape(obj.class_id, u, v, obj.colour, shape_params[k])
            shade = 1.0 + 0.08 * (v - 0.5) - 0.1 * u  # Soft lighting so instances are not flat.
            obj_col = obj_col * shade[..., None]
            pan_t[r0:r1, c0:c1][mask] = obj.class_id * divisor + obj.instance_id
            col[r0:r1, c0:c1][mask] = obj_col[mask]
            dep[r0:r1, c0:c1][mask] = obj_depth[k, t]

        if hood is not None:
            top = hood[0] - hood[1] * np.cos(np.linspace(-1.2, 1.2, w))[None, :]
            hood_mask = rows[:, None] >= top
            pan_t[hood_mask] = void
            col[hood_mask] = _HOOD
            dep[hood_mask] = 0.0

        frames[t] = np.clip(col * brightness + noise[t], 0, 255).astype(np.uint8)
        panoptic[t] = pan_t
        depth[t] = dep

    tracks = []
    for k, obj in enumerate(objects):
        code = obj.class_id * divisor + obj.instance_id
        visible = (panoptic == code).sum(axis=(1, 2)).astype(np.int32)
        tracks.append(ObjectTrack(obj.instance_id, obj.class_id, boxes[k], visible, obj_depth[k]))
    return SyntheticVideo(
        frames=frames,
        panoptic=panoptic,
        depth=depth,
        annotated_frames=config.annotated_frames,
        tracks=tuple(tracks),
    )


DEFAULT_CONFIG = SyntheticConfig()


class SyntheticPairSource:
    """Random-access source of annotated pairs (t, t+1) of generated videos.

    Item `i` is the decoded dataset example of `docs/architecture.md`: `keys.IMAGE`,
    `keys.NEXT_IMAGE` uint8 [H, W, 3], `keys.PANOPTIC`, `keys.NEXT_PANOPTIC` int32 [H, W],
    `keys.DEPTH` float32 [H, W] (frame t, metres, 0 = unknown), `keys.SEQUENCE_ID` str,
    `keys.FRAME_INDEX`, `keys.NEXT_FRAME_INDEX` int (annotated-frame indices). Pairs of a video
    are consecutive and in frame order. Video `v` is `generate_video(config, (seed, v))`, or
    with `split` the video `synthetic_export.write_dataset` writes for that split
    (`generate_video(config, split_seed(seed, split, v))`), so in-memory training sees the same
    videos as training from the written and prepared dataset. Videos are generated on first use
    and cached (a few MB per video at the default size).
    """

    def __init__(
        self,
        num_videos: int,
        *,
        config: SyntheticConfig = DEFAULT_CONFIG,
        seed: int = 0,
        split: str | None = None,
    ):
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        self.num_videos = num_videos
        self.config = config
        self.seed = seed
        self.split = split
        self._pairs_per_video = len(config.annotated_frames) - 1
        self._cache: dict[int, SyntheticVideo] = {}

    def __getstate__(self) -> dict:
        # Workers (e.g. grain processes) get an empty cache and regenerate what they need.
        return {**self.__dict__, "_cache": {}}

    def _video(self, video_index: int) -> SyntheticVideo:
        video = self._cache.get(video_index)
        if video is None:
            seed = (
                (self.seed, video_index)
                if self.split is None
                else split_seed(self.seed, self.split, video_index)
            )
            video = generate_video(self.config, seed)
            self._cache[video_index] = video
        return video

    def video(self, video_index: int) -> SyntheticVideo:
        """The whole video `video_index` (cached)."""
        if not 0 <= video_index < self.num_videos:
            raise IndexError(f"video {video_index} out of range [0, {self.num_videos})")
        return self._video(video_index)

    def __len__(self) -> int:
        return self.num_videos * self._pairs_per_video

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"pair {index} out of range [0, {len(self)})")
        v, p = divmod(index, self._pairs_per_video)
        video = self._video(v)
        t0, t1 = video.annotated_frames[p], video.annotated_frames[p + 1]
        return {
            keys.IMAGE: video.frames[t0],
            keys.NEXT_IMAGE: video.frames[t1],
            keys.PANOPTIC: video.panoptic[t0],
            keys.NEXT_PANOPTIC: video.panoptic[t1],
            keys.DEPTH: video.depth[t0],
            keys.SEQUENCE_ID: sequence_id(v),
            keys.FRAME_INDEX: p,
            keys.NEXT_FRAME_INDEX: p + 1,
        }


def sequence_id(video_index: int) -> str:
    """Sequence id of video `video_index`, as written in the on-disk layouts."""
    return f"{video_index:06d}"


def split_seed(seed: int, split: str, video_index: int) -> tuple[int, int, int]:
    """Seed of video `video_index` of `split` (splits never share videos).

    `SyntheticPairSource(split=...)` and `synthetic_export.write_dataset` both use it, so
    in-memory training sees the videos of the written dataset.
    """
    return (seed, zlib.crc32(split.encode()), video_index)
