"""An oracle model for predictor tests and benchmarks: frames carry their own labels.

`paint` encodes a panoptic map into a frame (red = class, green = instance); `OracleModel` reads
it back with exact centers, offsets and next-frame offsets, so a predictor's output can be
checked against the ground truth. `busy_street` generates an endless street of cars that keep
entering and leaving (thousands of tracks of one class), one frame at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vipdl import keys
from vipdl.data.descriptors import SYNTHETIC

D = SYNTHETIC.label_divisor
ROAD, SKY, PERSON, CAR, BICYCLE = 0, 4, 5, 6, 7
MAX_INSTANCES = 25  # green = 10 * instance + 5 <= 255


class OracleModel(nnx.Module):
    """A stand-in ViP-DeepLab whose outputs are exact for frames painted by `paint`.

    Class = red // 10 (values >= num_classes read as road, e.g. the 127.5 padding), instance =
    green // 10 on thing pixels. Centers sit at each instance's rounded centroid; offsets point
    there; next-frame offsets point from frame t+1 pixels to the same instance's centroid in
    frame t (0 when the instance is new). Depth = 1 + blue / 10.
    """

    def __init__(self, num_classes: int = SYNTHETIC.num_classes):
        self.num_classes = num_classes
        self.thing = jnp.zeros(num_classes, bool).at[jnp.asarray(SYNTHETIC.thing_ids)].set(True)

    def encode(self, frames):
        return {"image": frames.astype(jnp.float32)}

    def _labels(self, image):
        sem = jnp.floor(image[..., 0] / 10).astype(jnp.int32)
        sem = jnp.where(sem < self.num_classes, sem, ROAD)
        inst = jnp.floor(image[..., 1] / 10).astype(jnp.int32)
        return sem, jnp.where(self.thing[sem], jnp.clip(inst, 0, MAX_INSTANCES), 0)

    @staticmethod
    def _centroids(inst):
        h, w = inst.shape
        yy, xx = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
        seg = inst.ravel()
        count = jax.ops.segment_sum(jnp.ones(h * w), seg, MAX_INSTANCES + 1)
        cy = jax.ops.segment_sum(yy.ravel().astype(jnp.float32), seg, MAX_INSTANCES + 1)
        cx = jax.ops.segment_sum(xx.ravel().astype(jnp.float32), seg, MAX_INSTANCES + 1)
        safe = jnp.maximum(count, 1)
        present = (count > 0).at[0].set(False)
        return jnp.round(cy / safe), jnp.round(cx / safe), present, yy, xx

    def _frame(self, image):
        sem, inst = self._labels(image)
        cy, cx, present, yy, xx = self._centroids(inst)
        heat = jnp.zeros(inst.shape).at[cy.astype(int), cx.astype(int)].max(present * 1.0)
        offsets = jnp.stack([cy[inst] - yy, cx[inst] - xx], -1) * (inst > 0)[..., None]
        return {
            keys.PRED_SEMANTIC_LOGITS: jax.nn.one_hot(sem, self.num_classes) * 10.0,
            keys.PRED_CENTER_HEATMAP: heat,
            keys.PRED_OFFSET_MAP: offsets,
            keys.PRED_DEPTH: 1.0 + image[..., 2] / 10.0,
        }

    def decode_frame(self, features, output_hw):
        assert features["image"].shape[1:3] == tuple(output_hw)
        return jax.vmap(self._frame)(features["image"])

    def _next(self, image_t, image_t1):
        _, inst_t = self._labels(image_t)
        cy, cx, present, _, _ = self._centroids(inst_t)
        _, inst = self._labels(image_t1)
        _, _, _, yy, xx = self._centroids(inst)
        ok = (inst > 0) & present[inst]
        return jnp.stack([cy[inst] - yy, cx[inst] - xx], -1) * ok[..., None]

    def decode_next(self, features_t, features_t1, output_hw):
        return jax.vmap(self._next)(features_t["image"], features_t1["image"])

    def __call__(self, images):
        image_t = self.encode(images[..., :3])
        image_t1 = self.encode(images[..., 3:])
        out = self.decode_frame(image_t, images.shape[1:3])
        out[keys.PRED_NEXT_OFFSET_MAP] = self.decode_next(image_t, image_t1, images.shape[1:3])
        return out


def paint(panoptic: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 [t, h, w, 3] frames that the oracle reads back as `panoptic`."""
    rng = np.random.default_rng(seed)
    sem, inst = panoptic // D, panoptic % D
    frames = np.stack([10 * sem + 5, 10 * inst + 5, rng.integers(0, 256, sem.shape)], -1)
    return frames.astype(np.uint8)


def busy_street(num_frames: int, height: int = 40, width: int = 64, *, new_per_frame: int = 5,
                seed: int = 0):
    """Yields `(frame uint8 [h, w, 3], semantic int32 [h, w], track int32 [h, w])` per frame:
    sky over road, and small cars that enter, drive a few frames and leave, `new_per_frame`
    new ones a frame (each a new track of class car; track ids from 1, never reused).

    Cars carry a per-frame instance slot (what the oracle reads) that is unique among the cars
    in view and not reused for two frames after its car left, so the oracle links exactly the
    same car from frame to frame.
    """
    rng = np.random.default_rng(seed)
    alive: list[dict] = []
    released: dict[int, int] = {}  # slot -> frame it became free
    next_track = 1
    for t in range(num_frames):
        alive = [c for c in alive if c["until"] > t]
        used = {c["slot"] for c in alive}
        for slot in list(released):
            if t - released[slot] < 2:
                used.add(slot)
        free = [s for s in range(1, MAX_INSTANCES + 1) if s not in used]
        for _ in range(min(new_per_frame, len(free))):
            slot = free.pop(int(rng.integers(len(free))))
            h, w = int(rng.integers(3, 7)), int(rng.integers(4, 9))
            alive.append(dict(slot=slot, track=next_track, until=t + int(rng.integers(3, 9)),
                              y=int(rng.integers(height // 4, height - h)),
                              x=float(rng.integers(0, width - w)), v=float(rng.normal(0, 1.5)),
                              h=h, w=w))
            next_track += 1
        semantic = np.full((height, width), ROAD, np.int32)
        semantic[: height // 4] = SKY
        slots = np.zeros((height, width), np.int32)
        track = np.zeros((height, width), np.int32)
        for car in alive:
            x0 = int(np.clip(car["x"], 0, width - car["w"]))
            region = (slice(car["y"], car["y"] + car["h"]), slice(x0, x0 + car["w"]))
            semantic[region], slots[region], track[region] = CAR, car["slot"], car["track"]
            car["x"] += car["v"]
        for car in alive:
            if car["until"] == t + 1:
                released[car["slot"]] = t + 1
        yield paint((semantic * D + slots)[None], seed=t)[0], semantic, track
