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


def test_class_19_predictions_are_void_as_in_the_official_script(tmp_path):
    """Class 19 (`num_classes`) is eval_dvpq.py's own "ignored" category: never an error.

    The official script relabels depth-rejected pixels to 19 * 1000; class 19 never matches a
    GT class (GT has 0-18 and void 32) and its FP land in index 19, which `[:19]` drops. So a
    predicted class-19 pixel is "no prediction". Every class has a TP here, so the official
    class mean is finite and equals vipdl's (docs/evaluation.md#void-predictions). Running the
    official script on 6 copies of this frame (it assumes 6 frames per sequence) prints the
    same per-class sums (x 6) and the same 96.84 / 95.79 / 94.74.
    """
    # 5 x 20: column c < 19 is class c (things 11-18 with instance 1), 5 px each; column 19 is
    # void (32000) without GT depth.
    gt = np.tile(np.array([c * 1000 + (c >= 11) for c in range(19)] + [32000]), (5, 1))
    pred = gt.copy()
    pred[0, 0] = 19000  # road loses 1 of 5 px: IoU 4 / 5
    pred[0, 13] = 19005  # car loses 1 of 5 px: IoU 4 / 5 (a class-19 "instance" on the car)
    pred[4, 5] = 19000  # pole loses 1 of 5 px: IoU 4 / 5
    pred[:, 19] = 19000  # class 19 on void
    gt_depth = np.full((5, 20), 10.0)
    gt_depth[:, 19] = 0.0
    pred_depth = gt_depth.copy()
    pred_depth[4, 13] = 16.0  # car pixel, relative error 0.6
    pred_depth[3, 0] = 14.0  # road pixel, relative error 0.4
    seqs = _write_dvps(tmp_path, [gt], [pred], [gt_depth], [pred_depth])
    opts = dvpq.DvpqOptions(depth_thresholds=(0, 0.5, 0.25), window_sizes=(1,))
    s = dvpq.evaluate_dvps(seqs, opts).summary()
    # Every class is a TP without FP / FN; PQ = IoU. Class-19 pixels are no class at all.
    # lambda 0:    road 4/5, pole 4/5, car 4/5, 16 classes 1 -> (16 + 2.4) / 19 = 96.842 %.
    # lambda 0.5:  the car pixel (0.6 > 0.5) is rejected -> car 3/5 -> 18.2 / 19 = 95.789 %.
    # lambda 0.25: the road pixel (0.4) too -> road 3/5 -> 18 / 19 = 94.737 %.
    # Things 11-18: (7 + car) / 8; stuff 0-10: (9 + road + pole) / 11.
    expected = {
        "0": ((16 + 2.4) / 19, (7 + 0.8) / 8, (9 + 1.6) / 11, {0: 0.8, 5: 0.8, 13: 0.8}),
        "0.5": ((16 + 2.2) / 19, (7 + 0.6) / 8, (9 + 1.6) / 11, {0: 0.8, 5: 0.8, 13: 0.6}),
        "0.25": ((16 + 2.0) / 19, (7 + 0.6) / 8, (9 + 1.4) / 11, {0: 0.6, 5: 0.8, 13: 0.6}),
    }
    for thr, (pq, th, st, ious) in expected.items():
        run = s["runs"][thr]["0"]
        assert run["DVPQ"] == pytest.approx(100 * pq, abs=1e-9)
        assert run["DVPQ_th"] == pytest.approx(100 * th, abs=1e-9)
        assert run["DVPQ_st"] == pytest.approx(100 * st, abs=1e-9)
        per_class = run["per_class"]
        assert sorted(int(c) for c in per_class) == list(range(19))
        for c in range(19):
            got = per_class[str(c)]
            assert (got["tp"], got["fp"], got["fn"]) == (1, 0, 0), (thr, c)
            assert got["iou"] == pytest.approx(ious.get(c, 1.0), abs=1e-12), (thr, c)
    # AbsRel over the 95 pixels with GT depth: (0.6 + 0.4) / 95.
    assert s["abs_rel"] == pytest.approx(1.0 / 95, abs=1e-12)
    assert s["DVPQ"] == pytest.approx(100 * (18.2 + 18.0) / 19 / 2, abs=1e-9)


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
