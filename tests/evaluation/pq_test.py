"""PQ matching: the fast pair-histogram path equals the literal reference, and hand cases."""

import numpy as np
import pytest

from vipdl.evaluation import pq, vpq

THINGS = tuple(range(11, 19))
KW = dict(num_classes=19, thing_ids=THINGS, label_divisor=1000, ignore_label=255)


def _pq(gt, pred):
    return vpq.panoptic_quality(np.asarray(gt), np.asarray(pred), **KW)


def _random_case(rng, size=(12, 20), n_gt=12, n_pred=12, big_ids=False):
    hi = 1 << 24 if big_ids else 200
    gt_ids = rng.choice(np.arange(1, hi), size=n_gt, replace=False)
    pred_ids = rng.choice(np.arange(1, hi), size=n_pred, replace=False)
    gt_choices = np.concatenate([[0], gt_ids])
    pred_choices = np.concatenate([[pq.NO_PREDICTION], pred_ids])
    # Blocky maps so that segments overlap substantially.
    gt = np.kron(rng.choice(gt_choices, size=(size[0] // 2, size[1] // 2)), np.ones((2, 2), int))
    pred = gt.copy()
    noise = rng.random(size) < 0.35
    pred = np.where(noise, rng.choice(pred_choices, size=size), rng.choice(pred_choices)).astype(
        int
    )
    pred = np.where(rng.random(size) < 0.5, _relabel(gt, gt_ids, pred_ids), pred)
    gt_segments = {0: (-1, pq.VOID)}
    for g in gt_ids:
        gt_segments[int(g)] = (int(rng.integers(0, 3)), int(rng.choice([0, 0, 0, 1, 3])))
    pred_segments = {int(p): int(rng.integers(0, 3)) for p in pred_ids}
    return gt, pred, gt_segments, pred_segments


def _relabel(gt, gt_ids, pred_ids):
    lut = {int(g): int(p) for g, p in zip(gt_ids, pred_ids)}
    return np.vectorize(lambda v: lut.get(int(v), 0))(gt)


def _tables(gt_segments, pred_segments):
    gt_table = pq.SegmentTable.from_mapping(
        {k: v[0] for k, v in gt_segments.items()}, {k: v[1] for k, v in gt_segments.items()}
    )
    return gt_table, pq.SegmentTable.from_mapping(pred_segments)


@pytest.mark.parametrize("seed", range(12))
def test_fast_matching_equals_reference(seed):
    rng = np.random.default_rng(seed)
    gt, pred, gseg, pseg = _random_case(rng, big_ids=seed % 2 == 1)
    fast = pq.match_pairs(pq.pair_counts(gt, pred), *_tables(gseg, pseg), 3)
    ref = pq.reference_match(gt, pred, gseg, pseg, 3)
    assert fast.tp.tolist() == ref.tp.tolist()
    assert fast.fp.tolist() == ref.fp.tolist()
    assert fast.fn.tolist() == ref.fn.tolist()
    np.testing.assert_allclose(fast.iou, ref.iou, rtol=0, atol=1e-12)


def test_tube_of_merged_frames_equals_reference_on_concatenation():
    rng = np.random.default_rng(7)
    frames = [_random_case(rng) for _ in range(3)]
    # Same segment tables for all frames (a video): take the first frame's tables.
    _, _, gseg, pseg = frames[0]
    frames = [
        (np.where(np.isin(g, list(gseg)), g, 0), np.where(np.isin(p, list(pseg)), p, 0))
        for g, p, _, _ in frames
    ]
    merged = pq.merge_pair_counts([pq.pair_counts(g, p) for g, p in frames])
    fast = pq.match_pairs(merged, *_tables(gseg, pseg), 3)
    gt_cat = np.concatenate([g for g, _ in frames], axis=1)
    pred_cat = np.concatenate([p for _, p in frames], axis=1)
    ref = pq.reference_match(gt_cat, pred_cat, gseg, pseg, 3)
    assert (fast.tp.tolist(), fast.fp.tolist(), fast.fn.tolist()) == (
        ref.tp.tolist(),
        ref.fp.tolist(),
        ref.fn.tolist(),
    )
    np.testing.assert_allclose(fast.iou, ref.iou, atol=1e-12)


def test_perfect_prediction_is_100():
    gt = np.array([[1000, 1000, 13001, 13001], [2000, 2000, 13002, 255000]])
    r = _pq(gt, gt)["per_k"]["0"]
    assert (r["PQ"], r["SQ"], r["RQ"]) == (100.0, 100.0, 100.0)
    assert r["per_class"]["13"]["tp"] == 2


def test_all_wrong_is_0():
    gt = np.array([[1000, 1000, 13001, 13001]] * 2)
    pred = np.array([[2000, 2000, 14001, 14001]] * 2)
    r = _pq(gt, pred)["per_k"]["0"]
    # Classes 1, 13 (FN) and 2, 14 (FP) all occur, each with PQ 0.
    assert r["PQ"] == 0.0 and r["num_classes"] == 4


def test_iou_exactly_half_does_not_match():
    # GT car: 4 pixels; prediction: 2 of them + 0 extra -> IoU 2/4 = 0.5 exactly.
    gt = np.array([[13001, 13001, 13001, 13001, 0, 0, 0, 0]])
    pred = np.array([[13001, 13001, 0, 0, 0, 0, 0, 0]])
    car = _pq(gt, pred)["per_k"]["0"]["per_class"]["13"]
    assert (car["tp"], car["fp"], car["fn"]) == (0, 1, 1)
    # One more pixel of overlap: IoU 3/4 > 0.5 matches.
    pred[0, 2] = 13001
    car = _pq(gt, pred)["per_k"]["0"]["per_class"]["13"]
    assert (car["tp"], car["fp"], car["fn"]) == (1, 0, 0)
    assert car["iou"] == pytest.approx(0.75)


def test_void_removed_from_union():
    # Pred car covers the GT car (2 px) plus 2 void px: IoU = 2 / (2 + 4 - 2 - 2) = 1.
    gt = np.array([[13001, 13001, 255000, 255000, 0, 0]])
    pred = np.array([[13001, 13001, 13001, 13001, 0, 0]])
    car = _pq(gt, pred)["per_k"]["0"]["per_class"]["13"]
    assert (car["tp"], car["fp"], car["fn"], car["iou"]) == (1, 0, 0, 1.0)


def test_prediction_mostly_on_void_is_not_fp():
    gt = np.array([[0, 0, 255000, 255000, 255000, 0]])
    pred = np.array([[0, 0, 0, 13005, 13005, 13005]])  # 2 of 3 px on void.
    assert _pq(gt, pred)["per_k"]["0"]["per_class"]["13"]["fp"] == 0
    pred = np.array([[0, 0, 0, 0, 13005, 13005]])  # Exactly half on void -> FP.
    assert _pq(gt, pred)["per_k"]["0"]["per_class"]["13"]["fp"] == 1


def test_crowd_is_neither_fn_nor_absorbs_fp_of_other_classes():
    gt = np.array([[13000, 13000, 13000, 0, 0, 0]])  # Car crowd.
    pred = np.array([[13004, 13004, 13004, 0, 0, 0]])  # A car on the crowd: ignored.
    car = _pq(gt, pred)["per_k"]["0"]["per_class"]["13"]
    assert (car["tp"], car["fp"], car["fn"]) == (0, 0, 0)
    pred = np.array([[11004, 11004, 11004, 0, 0, 0]])  # A person on a car crowd: FP.
    person = _pq(gt, pred)["per_k"]["0"]["per_class"]["11"]
    assert person["fp"] == 1


def test_class_predicted_but_absent_in_gt_counts_as_zero():
    gt = np.array([[1000, 1000, 1000, 1000]])
    pred = np.array([[1000, 1000, 1000, 18001]])
    r = _pq(gt, pred)["per_k"]["0"]
    assert r["per_class"]["18"]["fp"] == 1
    assert r["num_classes"] == 2  # road (PQ 75) and bicycle (PQ 0).
    assert r["PQ"] == pytest.approx((100 * 3 / 4 + 0.0) / 2)
    assert r["PQ_st"] == pytest.approx(75.0) and r["PQ_th"] == 0.0


def test_group_without_classes_is_none_not_an_error():
    gt = np.array([[1000, 1000]])
    r = _pq(gt, gt)["per_k"]["0"]
    assert r["PQ_th"] is None and r["PQ"] == 100.0


def test_dense_ids_reports_unknown_ids():
    with pytest.raises(pq.UnknownIdsError) as e:
        pq.dense_ids(np.array([0, 5, 7, 1 << 20]), np.array([0, 5]))
    assert e.value.ids == [7, 1 << 20]
    vals, idx = pq.dense_ids(np.array([9, 3, 9, 1 << 23]))
    assert vals.tolist() == [3, 9, 1 << 23] and vals[idx].tolist() == [9, 3, 9, 1 << 23]
