"""Seeded generators of tiny evaluation fixtures (imported by the tests by file path).

Each video is a few rectangles of stuff, moving thing instances, a crowd region and void; the
prediction perturbs it (shifted boxes, an id switch, a wrong class, a dropped object, a false
object, void predictions), so TP, FP, FN, crowd and void rules all fire.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vipdl import formats
from vipdl.data.descriptors import CITYSCAPES_VPS
from vipdl.evaluation import writers

D = 1000
VOID = 255


def random_video(
    rng: np.random.Generator,
    num_frames: int,
    height: int = 16,
    width: int = 32,
    thing_classes: tuple[int, ...] = tuple(range(11, 19)),
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Returns (gt frames, pred frames), int64 [height, width] `semantic * 1000 + instance`."""
    stuff = rng.choice(11, size=3, replace=False)
    cut = sorted(rng.choice(np.arange(3, height - 3), size=2, replace=False))
    objects = []
    for inst in range(1, int(rng.integers(2, 5)) + 1):
        cls = int(rng.choice(thing_classes))
        h, w = int(rng.integers(3, 8)), int(rng.integers(3, 10))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        objects.append([cls, inst, y, x, h, w, int(rng.integers(-2, 3))])
    crowd_cls = int(rng.choice(thing_classes))
    switch_frame = int(rng.integers(1, num_frames)) if num_frames > 1 else 1
    wrong_obj = int(rng.integers(0, len(objects)))
    gts, preds = [], []
    for t in range(num_frames):
        gt = np.full((height, width), stuff[0] * D, np.int64)
        gt[cut[0] :] = stuff[1] * D
        gt[cut[1] :] = stuff[2] * D
        c0 = int(rng.integers(0, width - 6))
        gt[: int(rng.integers(1, 4)), c0 : c0 + 6] = crowd_cls * D  # Crowd.
        vy, vx = int(rng.integers(0, height - 3)), int(rng.integers(0, width - 4))
        gt[vy : vy + 3, vx : vx + 4] = VOID * D
        pred = np.where(gt // D == VOID, stuff[int(rng.integers(0, 3))] * D, gt)
        pred = np.where(gt // D == crowd_cls, crowd_cls * D + 50, pred)
        for i, (cls, inst, y, x, h, w, vx_) in enumerate(objects):
            x = int(np.clip(x + vx_ * t, 0, width - w))
            gt[y : y + h, x : x + w] = cls * D + inst
            if i == 0 and t == num_frames - 1:
                continue  # Dropped in the last frame: FN.
            dy, dx = (int(v) for v in rng.integers(-1, 2, size=2))
            p_inst = inst
            if i == 1 and t >= switch_frame:
                p_inst = inst + 20  # Id switch midway.
            p_cls = cls
            if i == wrong_obj and t % 3 == 2:
                p_cls = int(rng.choice([c for c in thing_classes if c != cls] or [cls]))
            yy, xx = max(y + dy, 0), max(x + dx, 0)
            pred[yy : yy + h, xx : xx + w] = p_cls * D + p_inst
        if rng.random() < 0.7:  # False object.
            fy, fx = int(rng.integers(0, height - 3)), int(rng.integers(0, width - 3))
            pred[fy : fy + 3, fx : fx + 3] = int(rng.choice(thing_classes)) * D + 77
        if rng.random() < 0.5:  # Void prediction.
            py, px = int(rng.integers(0, height - 2)), int(rng.integers(0, width - 5))
            pred[py : py + 2, px : px + 5] = VOID * D
        if rng.random() < 0.5:  # Prediction mostly on void.
            pred[vy : vy + 3, vx : vx + 3] = int(rng.choice(thing_classes)) * D + 88
        gts.append(gt)
        preds.append(pred)
    return gts, preds


def make_vps(root: Path, seed: int, num_videos: int = 3, num_frames: int = 6) -> dict:
    """Writes a Cityscapes-VPS GT + prediction set; returns paths and the arrays."""
    rng = np.random.default_rng(seed)
    videos = [random_video(rng, num_frames) for _ in range(num_videos)]
    frames_gt, frames_pred = [], []
    for v, (gts, preds) in enumerate(videos):
        for t, (g, p) in enumerate(zip(gts, preds)):
            image_id = f"{v:04d}_{t:04d}_city_{v:06d}_{5 * t:06d}"
            frames_gt.append((image_id, g))
            frames_pred.append((image_id, p))
    writers.write_vps_ground_truth(root, "val", frames_gt, descriptor=CITYSCAPES_VPS)
    with writers.VpsPredictionWriter(
        root / "pred", label_divisor=D, ignore_label=VOID, thing_ids=CITYSCAPES_VPS.thing_ids
    ) as w:
        for image_id, p in sorted(frames_pred):
            w.add(image_id, p)
    return {
        "gt_json": root / "panoptic_gt_val_city_vps.json",
        "gt_dir": root / "val" / "panoptic_video",
        "pred_dir": root / "pred",
        "videos": videos,
    }


def make_dvps(root: Path, seed: int, num_seqs: int = 3, num_frames: int = 6) -> dict:
    """Writes a Cityscapes-DVPS GT (+ depth) and panoptic / depth predictions."""
    rng = np.random.default_rng(seed)
    gt_dir, pan_dir, depth_dir = root / "video_sequence" / "val", root / "pan", root / "depth"
    for d in (gt_dir, pan_dir, depth_dir):
        d.mkdir(parents=True, exist_ok=True)
    videos = []
    for s in range(num_seqs):
        gts, preds = random_video(rng, num_frames)
        videos.append((gts, preds))
        for t, (g, p) in enumerate(zip(gts, preds)):
            stem = f"{s:06d}_{t:06d}_city_{s:06d}_{5 * t:06d}"
            g = np.where(g // D == VOID, 32 * D, g).astype(np.uint16)
            formats.atomic_write_png(gt_dir / f"{stem}_gtFine_instanceTrainIds.png", g)
            void_code = 32 if (s + t) % 2 else 255  # Both void spellings of predictions.
            p = np.where(p // D == VOID, void_code * D, p)
            formats.write_dvps_panoptic_png(pan_dir / f"{stem}_leftImg8bit.png", p, label_divisor=D)
            depth = rng.uniform(2.0, 80.0, size=g.shape)
            depth[rng.random(g.shape) < 0.2] = 0.0
            formats.write_depth_png(gt_dir / f"{stem}_depth.png", depth)
            noise = rng.choice([0.02, 0.15, 0.3, 0.7], size=g.shape) * rng.choice([-1, 1], g.shape)
            formats.write_depth_png(
                depth_dir / f"{stem}_leftImg8bit.png", depth * (1 + noise) + 0.5
            )
    return {"root": root, "gt_dir": gt_dir, "pred_dir": pan_dir, "depth_dir": depth_dir}


def make_step(root: Path, seed: int, num_seqs: int = 2, num_frames: int = 5) -> dict:
    """Writes KITTI-STEP GT and predictions `<root>/{gt,pred}/<seq>/<frame>.png`."""
    rng = np.random.default_rng(seed)
    for s in range(num_seqs):
        gts, preds = random_video(rng, num_frames, thing_classes=(11, 13))
        for t, (g, p) in enumerate(zip(gts, preds)):
            for kind, arr in (("gt", g), ("pred", p)):
                path = root / kind / f"{s:04d}" / f"{t:06d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                formats.write_step_png(path, arr, label_divisor=D)
    return {"gt_dir": root / "gt", "pred_dir": root / "pred"}


def read_step_arrays(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path)).astype(np.int64)
    return rgb[..., 0] * D + rgb[..., 1] * 256 + rgb[..., 2]
