"""The editing world: exact fractional coverage, resolution independence, thin structures."""

import numpy as np
import pytest

from vipdl.data import synthetic_editing as se

D = se.D


@pytest.fixture(scope="module")
def scene():
    return se.make_scene(se.EditingConfig(height=64, width=128, num_frames=2), 5)


@pytest.fixture(scope="module")
def frame(scene):
    return se.render_frame(scene, 0)


def test_coverage_is_a_partition_in_sample_units(frame):
    cov = frame.coverage
    assert cov.shape == (len(frame.segment_ids), 64, 128) and cov.dtype == np.float32
    np.testing.assert_array_equal(cov.sum(0), 1.0)
    np.testing.assert_array_equal(np.round(cov * 16), cov * 16)  # multiples of 1 / 4^2
    np.testing.assert_array_equal(frame.panoptic, frame.segment_ids[cov.argmax(0)])
    assert frame.image.shape == (64, 128, 3) and frame.image.dtype == np.uint8


def test_one_scene_at_two_resolutions_has_the_same_coverage(scene, frame):
    # 2x the pixels with 2x2 samples each puts the samples exactly where 4x4 samples of the
    # small frame are: block means of the large coverage are the small coverage.
    big = se.render_frame(scene, 0, height=128, width=256, supersample=2)
    assert list(big.segment_ids) == list(frame.segment_ids)
    pooled = big.coverage.reshape(-1, 64, 2, 128, 2).mean(axis=(2, 4))
    assert (np.abs(pooled - frame.coverage) > 1e-6).mean() < 1e-4


def test_thin_structures_and_overlaps(scene):
    f = se.render_frame(scene, 0, height=256, width=512, supersample=4)
    cov, ids = f.coverage, f.segment_ids
    persons = ids // D == se.PERSON
    fractional = (cov > 0) & (cov < 1)
    # Hair: many person pixels are partly covered, including pixels where the person has less
    # than half the pixel (strands thinner than a pixel).
    assert (fractional[persons] & (cov[persons] < 0.5)).sum() > 100
    void = ids == se.VOID
    assert void.any() and fractional[void].sum() > 0  # thin poles
    # Partial overlaps: pixels shared by two thing segments (and the background).
    things = np.isin(ids // D, (se.PERSON, se.CAR, se.BICYCLE))
    assert ((cov[things] > 0).sum(0) >= 2).sum() > 20


def test_deterministic_and_moving(scene, frame):
    again = se.render_frame(se.make_scene(scene.config, 5), 0)
    np.testing.assert_array_equal(again.image, frame.image)
    later = se.render_frame(scene, 1, with_coverage=False)
    assert later.coverage is None
    assert (later.panoptic != frame.panoptic).any()


def test_bad_input(scene):
    with pytest.raises(ValueError, match="aspect ratio"):
        se.render_frame(scene, 0, height=64, width=64)
    with pytest.raises(ValueError, match="supersample"):
        se.EditingConfig(supersample=0)
    with pytest.raises(ValueError, match="height x width"):
        se.EditingConfig(height=8)
