"""Tracked predictions with more tracks of one class than the label divisor (1000) allows,
written in both prediction layouts and scored from the files: the same VPQ / STQ as in memory."""

import dataclasses

import numpy as np
import pytest

from vipdl import formats
from vipdl.data.descriptors import CITYSCAPES_VPS
from vipdl.evaluation import readers, stq, vpq, writers

CAR, ROAD, VOID = 13, 0, 255
WIDE = 1 << 32  # tracked predictions: class << 32 | track


def _world(num_frames=4, height=32, width=64, seed=0):
    """Ground truth: 2x2 cars tiled over the frame, each car a track of one frame only (so
    > 1000 car tracks, some cells road); the prediction segments every frame exactly, but
    continues the frame-1 track of the same place for 1 in 7 of the frame-2 cars (an
    association error)."""
    rng = np.random.default_rng(seed)
    cells = (height // 2) * (width // 2)
    gt_tracks, pred_tracks = [], []
    for t in range(num_frames):
        ids = t * cells + 1 + np.arange(cells)
        block = ids.reshape(height // 2, width // 2).repeat(2, 0).repeat(2, 1)
        pred = block.copy()
        if t == 2:
            swap = (rng.random(cells) < 1 / 7).reshape(height // 2, width // 2)
            pred = np.where(swap.repeat(2, 0).repeat(2, 1), block - cells, block)
        gt_tracks.append(block)
        pred_tracks.append(pred)
    gt = [np.where((t % 5) == 0, ROAD, CAR) for t in gt_tracks]  # some road cells
    return gt, gt_tracks, pred_tracks


def test_more_than_1000_tracks_of_one_class_score_the_same_from_files_and_memory(tmp_path):
    semantic, gt_tracks, pred_tracks = _world()
    num_tracks = len(np.unique(np.concatenate([p[s == CAR] for s, p in zip(semantic,
                                                                           pred_tracks)])))
    assert num_tracks > 1000
    # Ground truth in a convention wide enough for its tracks (the writers take any divisor).
    d_gt = 1 << 20
    gt_descriptor = dataclasses.replace(CITYSCAPES_VPS, label_divisor=d_gt)
    gt_panoptic = [s.astype(np.int64) * d_gt + np.where(s == CAR, t, 0)
                   for s, t in zip(semantic, gt_tracks)]
    pred_wide = [s.astype(np.int64) * WIDE + np.where(s == CAR, t, 0)
                 for s, t in zip(semantic, pred_tracks)]

    names = [f"vid_{t:06d}" for t in range(len(semantic))]
    writers.write_vps_ground_truth(tmp_path / "gt", "val", zip(names, gt_panoptic),
                                   descriptor=gt_descriptor)
    with writers.VpsPredictionWriter(tmp_path / "pred", label_divisor=1000,
                                     ignore_label=VOID, thing_ids=range(11, 19)) as w:
        for name, wide in zip(names, pred_wide):
            values, index = np.unique(wide, return_inverse=True)
            w.add_segments(name, index.reshape(wide.shape), values // WIDE, values % WIDE)
    for t, (s, g, p) in enumerate(zip(semantic, gt_tracks, pred_tracks)):
        for root, tracks in (("step_gt", g), ("step_pred", p)):
            values, index = np.unique(s.astype(np.int64) * WIDE + np.where(s == CAR, tracks, 0),
                                      return_inverse=True)
            formats.write_step_segments(tmp_path / root / "vid" / f"{t:06d}.png",
                                        index.reshape(s.shape), values // WIDE, values % WIDE)

    dataset = readers.read_vps(tmp_path / "gt" / "panoptic_gt_val_city_vps.json",
                               tmp_path / "gt" / "val" / "panoptic_video", tmp_path / "pred")
    from_files = vpq.evaluate_vps(dataset, window_sizes=(1, 2, 3), annotation_stride=1)
    in_memory = vpq.evaluate_arrays(
        [(gt_panoptic, pred_wide)], num_classes=19, thing_ids=tuple(range(11, 19)),
        label_divisor=d_gt, ignore_label=VOID, window_sizes=(1, 2, 3), pred_label_divisor=WIDE)
    a, b = from_files.summary(), in_memory.summary()
    assert a["per_k"] == b["per_k"]
    car = a["per_k"]["2"]["per_class"]["13"]
    assert car["tp"] > 1000 and car["fp"] > 0  # the swapped frame-2 cars break their tubes
    assert a["per_k"]["0"]["VPQ_th"] == pytest.approx(100.0)

    opts = stq.StqOptions(num_classes=19, thing_ids=tuple(range(11, 19)), ignore_label=VOID)
    from_files = stq.evaluate_step(readers.read_step(tmp_path / "step_gt",
                                                     tmp_path / "step_pred"), opts).summary()
    in_memory = stq.evaluate_arrays({"vid": list(zip(gt_panoptic, pred_wide))}, opts,
                                    label_divisor=d_gt, pred_label_divisor=WIDE).summary()
    assert from_files["num_tracks"] == in_memory["num_tracks"] > 1000
    assert from_files["STQ"] == pytest.approx(in_memory["STQ"])
    assert from_files["AQ"] == pytest.approx(in_memory["AQ"]) and from_files["AQ"] < 1.0
