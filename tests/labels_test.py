import numpy as np
import pytest

from vipdl.data import descriptors, labels


def test_rgb_id_round_trip():
    ids = np.array([[0, 1, 255], [256, 65535, (1 << 24) - 1]], dtype=np.int64)
    np.testing.assert_array_equal(labels.rgb_to_id(labels.id_to_rgb(ids)), ids)


def test_id_to_rgb_rejects_overflow():
    with pytest.raises(ValueError, match="2\\^24"):
        labels.id_to_rgb(np.array([[1 << 24]]))


def test_step_round_trip():
    pan = np.array([[11 * 1000 + 3, 13 * 1000 + 999], [255 * 1000, 0]])
    rgb = labels.panoptic_to_step_rgb(pan, 1000)
    assert tuple(rgb[0, 1]) == (13, 3, 231)
    np.testing.assert_array_equal(labels.step_rgb_to_panoptic(rgb, 1000), pan)


def test_descriptor_validation():
    assert descriptors.CITYSCAPES_DVPS.void_label == 32000
    assert descriptors.SEMKITTI_DVPS.void_label == 255 * 65536
    with pytest.raises(KeyError, match="unknown dataset"):
        descriptors.get_descriptor("nope")
    with pytest.raises(ValueError, match="ignore_label"):
        descriptors.DatasetDescriptor(
            name="bad", class_names=("a",), colormap=((0, 0, 0),), thing_ids=(),
            ignore_label=1000, label_divisor=1000)
