"""Dense label tables and wide track ids (vipdl.postprocess.labels), both code paths of each."""

import numpy as np
import pytest

from vipdl.postprocess import labels


@pytest.mark.parametrize("scale", [1, 1 << 40])  # lookup table / sort
def test_dense_tables_and_pairs(scale):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, (9, 11)).astype(np.int64) * scale + 3
    b = rng.integers(0, 4, (9, 11)).astype(np.int64) * 1000
    values, index, areas = labels.dense(a)
    np.testing.assert_array_equal(values[index], a)
    np.testing.assert_array_equal(values, np.unique(a))
    np.testing.assert_array_equal(areas, [np.sum(a == v) for v in values])
    bv, bi, _ = labels.dense(b)
    ia, ib, count = labels.pair_counts(index, len(values), bi, len(bv))
    pairs, want = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0, return_counts=True)
    np.testing.assert_array_equal(np.stack([values[ia], bv[ib]], 1), pairs)
    np.testing.assert_array_equal(count, want)
    with pytest.raises(ValueError, match="m labels must be >= 0"):
        labels.dense(-a, what="m")


def test_segment_pixels_first_pixels_and_intersections():
    index = np.array([[2, 2, 0], [1, 2, 0], [1, 1, 3]], np.int32)
    wanted = np.array([3, 1, 2])
    pixels = labels.segment_pixels(index, wanted)
    assert [p.tolist() for p in pixels] == [[8], [3, 6, 7], [0, 1, 4]]
    assert labels.first_pixels(index, wanted).tolist() == [8, 3, 0]
    inter = labels.intersections([np.array([0, 3, 4]), np.array([8])], index, 4)
    np.testing.assert_array_equal(inter, [[0, 1, 2, 0], [0, 0, 0, 1]])


def test_wide_ids_round_trip_and_overflow():
    panoptic = np.array([[11002, 0, 32000]])
    wide = labels.to_wide(panoptic, 1000)
    np.testing.assert_array_equal(labels.wide_to_panoptic(wide, 1000), panoptic)
    semantic, track = labels.split_wide(labels.wide(np.array([11]), np.array([123456])))
    assert (semantic.tolist(), track.tolist()) == ([11], [123456])
    with pytest.raises(labels.TrackIdOverflowError, match="track id 123456"):
        labels.wide_to_panoptic(labels.wide(np.array([11]), np.array([123456])), 1000)


def test_pair_counts_of_large_tables_take_the_sparse_path():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 3000, 500), rng.integers(0, 3000, 500)
    ia, ib, count = labels.pair_counts(a, 3000, b, 3000)
    pairs, want = np.unique(np.stack([a, b], 1), axis=0, return_counts=True)
    np.testing.assert_array_equal(np.stack([ia, ib], 1), pairs)
    np.testing.assert_array_equal(count, want)
