"""Boundary IoU / Boundary PQ / Boundary VPQ: hand-derived cases and a literal reference."""

import numpy as np
import pytest
from scipy import ndimage

from vipdl.evaluation import boundary, pq, vpq

KW = dict(num_classes=3, thing_ids=(1, 2), label_divisor=1000, ignore_label=255)


def _square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def test_dilation_pixels():
    assert boundary.dilation_pixels(1024, 2048) == 46  # 0.02 * 2289.7 = 45.8
    assert boundary.dilation_pixels(10, 10) == 1  # 0.28 rounds to 0, raised to 1
    assert boundary.dilation_pixels(100, 100) == 3  # 2.83
    with pytest.raises(ValueError, match="dilation_ratio"):
        boundary.dilation_pixels(10, 10, 0.0)


def test_band_of_a_square_is_its_outline():
    m = _square((10, 10), 2, 8, 2, 8)
    band = boundary.mask_boundary(m, 1)
    assert band.sum() == 36 - 16  # the 6 x 6 square minus its 4 x 4 interior
    assert not band[3:7, 3:7].any()
    band2 = boundary.mask_boundary(m, 2)
    assert band2.sum() == 36 - 4


def test_image_border_counts_as_outside():
    full = np.ones((10, 10), bool)
    assert boundary.mask_boundary(full, 1).sum() == 36  # the outer ring
    assert boundary.mask_boundary(full, 2).sum() == 100 - 36


@pytest.mark.parametrize("seed", range(4))
def test_band_equals_repeated_3x3_erosion(seed):
    # The reference implementation: pad with background, erode d times with a 3 x 3 square.
    rng = np.random.default_rng(seed)
    m = ndimage.binary_opening(rng.random((23, 31)) < 0.6)
    for d in (1, 2, 4):
        eroded = ndimage.binary_erosion(m, np.ones((3, 3)), iterations=d, border_value=0)
        np.testing.assert_array_equal(boundary.mask_boundary(m, d), m & ~eroded)


def test_boundary_iou_of_a_shifted_square():
    # 6 x 6 square shifted right by one pixel, d = 1: each outline has 20 pixels and they share
    # rows 2 and 7 over columns 3..7 (10 pixels): boundary IoU 10 / 30, mask IoU 30 / 42.
    gt = _square((10, 10), 2, 8, 2, 8)
    pred = _square((10, 10), 2, 8, 3, 9)
    assert boundary.boundary_iou(gt, pred) == pytest.approx(1 / 3)
    assert boundary.boundary_iou(gt, gt) == 1.0
    assert boundary.boundary_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0


def test_boundary_iou_with_the_image_border():
    # Whole image vs its left half, d = 1: outer ring 36 pixels, the half's outline 10*5 - 8*3 =
    # 26 pixels; shared: rows 0 and 9 over columns 0..4 and column 0 over rows 1..8 = 18.
    gt = np.ones((10, 10), bool)
    pred = _square((10, 10), 0, 10, 0, 5)
    assert boundary.boundary_iou(gt, pred) == pytest.approx(18 / 44)


def test_boundary_pq_rejects_what_mask_pq_accepts():
    # Thing class 1 (instance 1) on stuff class 0; the prediction is shifted by one pixel: mask
    # IoU 30/42 > 0.5 (a match for PQ), boundary IoU 1/3 (no match for Boundary PQ).
    gt = np.zeros((10, 10), np.int64)
    gt[_square((10, 10), 2, 8, 2, 8)] = 1001
    pred = np.zeros((10, 10), np.int64)
    pred[_square((10, 10), 2, 8, 3, 9)] = 1001
    mask = vpq.panoptic_quality(gt, pred, **KW)["per_k"]["0"]["per_class"]["1"]
    band = vpq.panoptic_quality(gt, pred, **KW, boundary_dilation=0.02)["per_k"]["0"]["per_class"]["1"]
    assert (mask["tp"], mask["fp"], mask["fn"]) == (1, 0, 0)
    assert mask["iou"] == pytest.approx(30 / 42)
    assert (band["tp"], band["fp"], band["fn"]) == (0, 1, 1)
    # A prediction that is exact scores the same either way.
    same = vpq.panoptic_quality(gt, gt, **KW, boundary_dilation=0.02)
    assert same["BPQ"] == pytest.approx(100.0)


def test_boundary_iou_is_min_with_mask_iou():
    # A 6 x 6 square predicted as its 6 x 5 left part: mask IoU 30/36; d = 1 outlines: gt 20,
    # prediction 18, shared 14 (rows 2 and 7 over columns 2..6, column 2 over rows 3..6):
    # boundary IoU 14 / 24 < 30 / 36.
    gt = np.zeros((10, 10), np.int64)
    gt[_square((10, 10), 2, 8, 2, 8)] = 1001
    pred = np.zeros((10, 10), np.int64)
    pred[_square((10, 10), 2, 8, 2, 7)] = 1001
    band = vpq.panoptic_quality(gt, pred, **KW, boundary_dilation=0.02)["per_k"]["0"]["per_class"]["1"]
    assert band["tp"] == 1
    assert band["iou"] == pytest.approx(14 / 24)


def _reference_bpq(gt_keys, pred_keys, gt_segments, pred_segments, d):
    """Per-pair literal Boundary PQ matching from binary masks (void gt = key 0)."""
    void = gt_keys == 0
    tp, iou_sum = 0, 0.0
    for g, (cat, flag) in gt_segments.items():
        if flag != pq.NORMAL:
            continue
        gm = gt_keys == g
        for p, pcat in pred_segments.items():
            if pcat != cat:
                continue
            pm = pred_keys == p
            inter = (gm & pm).sum()
            union = gm.sum() + pm.sum() - inter - (pm & void).sum()
            gb = boundary.mask_boundary(gm, d)
            pb = boundary.mask_boundary(pm, d) & ~void
            b_iou = (gb & pb).sum() / max((gb | pb).sum(), 1)
            iou = min(inter / union, b_iou)
            if iou > 0.5:
                tp += 1
                iou_sum += iou
    return tp, iou_sum


@pytest.mark.parametrize("seed", range(6))
def test_boundary_matching_equals_literal_reference(seed):
    rng = np.random.default_rng(seed)
    shape = (24, 36)
    gt = np.kron(rng.integers(0, 5, size=(6, 9)), np.ones((4, 4), np.int64))
    pred = gt.copy()
    # Perturb the prediction: shift some rows and flip random pixels.
    pred[rng.random(shape) < 0.08] = rng.integers(0, 5)
    pred = np.where(rng.random(shape[0])[:, None] < 0.3, np.roll(pred, 1, axis=1), pred)
    gt_segments = {0: (-1, pq.VOID)}
    gt_segments.update({k: (k % 2, pq.NORMAL) for k in range(1, 5)})
    pred_segments = {k: k % 2 for k in range(1, 5)}
    gt_table = pq.SegmentTable.from_mapping(
        {k: v[0] for k, v in gt_segments.items()}, {k: v[1] for k, v in gt_segments.items()}
    )
    pred_table = pq.SegmentTable.from_mapping(pred_segments)
    d = boundary.dilation_pixels(*shape, 0.05)
    stats = pq.match_pairs(
        pq.pair_counts(gt, pred), gt_table, pred_table, 2,
        boundary=boundary.boundary_pair_counts(gt, pred, 0.05),
    )
    tp, iou_sum = _reference_bpq(gt, pred, gt_segments, pred_segments, d)
    assert int(stats.tp.sum()) == tp
    assert float(stats.iou.sum()) == pytest.approx(iou_sum, abs=1e-12)


def test_boundary_vpq_pools_the_bands_of_a_tube():
    # Two frames: exact in frame 0, shifted in frame 1. Tube (k = 1) band IoU = (20 + 10) /
    # (20 + 30) = 0.6 > 0.5, tube mask IoU = (36 + 30) / (36 + 42) -> matched with min = 0.6.
    gt = np.zeros((10, 10), np.int64)
    gt[_square((10, 10), 2, 8, 2, 8)] = 1001
    shifted = np.zeros((10, 10), np.int64)
    shifted[_square((10, 10), 2, 8, 3, 9)] = 1001
    result = vpq.evaluate_arrays(
        [([gt, gt], [gt, shifted])], **KW, window_sizes=(1, 2), boundary_dilation=0.02
    )
    tube = result.stats[2]
    assert tube.tp[1] == 1
    assert tube.iou[1] == pytest.approx(0.6)
    single = result.stats[1]  # Frame 0 matches, frame 1 does not.
    assert (single.tp[1], single.fp[1], single.fn[1]) == (1, 1, 1)


def test_matched_boundary_ious():
    gt = np.zeros((10, 10), np.int64)
    gt[_square((10, 10), 2, 8, 2, 8)] = 2
    pred = np.zeros((10, 10), np.int64)
    pred[_square((10, 10), 2, 8, 3, 9)] = 7
    gt_table = pq.SegmentTable.from_mapping({0: -1, 2: 1}, {0: pq.VOID})
    pred_table = pq.SegmentTable.from_mapping({7: 1})
    ious = boundary.matched_boundary_ious(
        pq.pair_counts(gt, pred), boundary.boundary_pair_counts(gt, pred), gt_table, pred_table
    )
    # Around void ground truth (key 0): the prediction's band pixels on void, its column 8
    # (6 pixels), are dropped: 10 shared / (20 + 14 - 10).
    np.testing.assert_allclose(ious, [10 / 24])


def test_bad_input():
    with pytest.raises(ValueError, match="height, width"):
        boundary.inner_band(np.zeros(5, int), 1)
    with pytest.raises(ValueError, match="one shape"):
        boundary.boundary_iou(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="non-negative"):
        boundary.inner_band(-np.ones((3, 3), int), 1)
