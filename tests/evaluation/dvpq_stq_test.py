"""DVPQ depth thresholds / AbsRel and STQ on hand-made sequences."""

import numpy as np
import pytest

from vipdl import formats
from vipdl.evaluation import dvpq, readers, stq


def _write_dvps(root, gt_pan, pred_pan, gt_depth, pred_depth):
    gt_dir = root / "gt"
    for d in ("gt", "pan", "depth"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for t, (g, p, gd, pd) in enumerate(zip(gt_pan, pred_pan, gt_depth, pred_depth)):
        stem = f"000000_{t:06d}_city_000000_{5 * t:06d}"
        formats.atomic_write_png(
            gt_dir / f"{stem}_gtFine_instanceTrainIds.png", np.asarray(g, np.uint16)
        )
        formats.write_depth_png(gt_dir / f"{stem}_depth.png", gd)
        formats.write_dvps_panoptic_png(
            root / "pan" / f"{stem}_leftImg8bit.png", p, label_divisor=1000
        )
        formats.write_depth_png(root / "depth" / f"{stem}_leftImg8bit.png", pd)
    return readers.read_dvps(gt_dir, root / "pan", root / "depth")


def test_depth_threshold_rejects_pixels(tmp_path):
    pan = np.array([[0, 0, 0, 0], [13001, 13001, 13001, 32000]])  # road, car, void
    gt_depth = np.full((2, 4), 10.0)
    pred_depth = gt_depth.copy()
    pred_depth[1, :2] = 13.0  # 30 % error on 2 of the 3 car pixels.
    seqs = _write_dvps(tmp_path, [pan, pan], [pan, pan], [gt_depth] * 2, [pred_depth] * 2)
    opts = dvpq.DvpqOptions(depth_thresholds=(0, 0.5, 0.25), window_sizes=(1, 2))
    result = dvpq.evaluate_dvps(seqs, opts)
    s = result.summary()
    # lambda 0 and 0.5: perfect. lambda 0.25: the car keeps 1 of 3 pixels -> IoU 1/3 -> FN + FP.
    assert s["runs"]["0"]["0"]["DVPQ"] == 100.0 and s["runs"]["0.5"]["5"]["DVPQ"] == 100.0
    car = s["runs"]["0.25"]["0"]["per_class"]["13"]
    assert (car["tp"], car["fp"], car["fn"]) == (0, 2, 2)
    assert s["runs"]["0.25"]["0"]["DVPQ"] == pytest.approx(50.0)  # road 100, car 0
    assert s["DVPQ"] == pytest.approx((100 + 100 + 50 + 50) / 4)
    assert s["VPQ"] == 100.0
    # AbsRel: 2 of 8 pixels per frame have error 0.3.
    assert s["abs_rel"] == pytest.approx(0.3 * 2 / 8)


def test_crowd_is_an_ordinary_segment_in_dvpq(tmp_path):
    pan = np.array([[0, 0, 13000, 13000]])  # car with instance 0: not crowd in eval_dvpq.py
    pred = np.array([[0, 0, 0, 0]])
    depth = np.full((1, 4), 5.0)
    seqs = _write_dvps(tmp_path, [pan], [pred], [depth], [depth])
    opts = dvpq.DvpqOptions(depth_thresholds=(0,), window_sizes=(1,))
    car = dvpq.evaluate_dvps(seqs, opts).summary()["runs"]["0"]["0"]["per_class"]["13"]
    assert car["fn"] == 1


OPTS = stq.StqOptions(num_classes=19, thing_ids=(11, 13), ignore_label=255)


def _stq(frames):
    return stq.evaluate_arrays({"s": frames}, OPTS, label_divisor=1000).summary()


def test_stq_perfect_and_semantic_only_errors():
    gt = np.array([[0, 0, 13001, 13001], [1000, 1000, 11002, 255000]])
    s = _stq([(gt, gt), (gt, gt)])
    assert (s["STQ"], s["AQ"], s["SQ"]) == (1.0, 1.0, 1.0)
    assert s["per_seq"]["s"]["num_tracks"] == 2


def test_stq_id_switch_lowers_aq_only():
    gt = np.array([[0, 0, 13001, 13001]])
    switched = np.array([[0, 0, 13005, 13005]])
    s = _stq([(gt, gt), (gt, switched)])
    # Track of 4 px: two predicted ids of 2 px each, TPA 2, IoU 2/4: AQ = (2 * 0.5 * 2) / 4.
    assert s["AQ"] == pytest.approx(0.5) and s["SQ"] == 1.0
    assert s["STQ"] == pytest.approx(np.sqrt(0.5))


def test_stq_crowd_ignored_for_aq_and_void_column_counts():
    gt = np.array([[0, 0, 13000, 13000, 11001]])  # car crowd, a person
    pred = np.array([[0, 255000, 13007, 13007, 11001]])  # road pixel predicted as void
    s = _stq([(gt, pred)])
    assert s["AQ"] == 1.0  # the car prediction on crowd is dropped
    # IoU: road 1/2, car 1, person 1, plus the non-empty void column with IoU 0 (deeplab2).
    assert s["SQ"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
