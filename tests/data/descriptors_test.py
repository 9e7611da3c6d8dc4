"""Dataset descriptors: derived labels and validation."""

import pytest

from vipdl.data import descriptors


def test_descriptor_validation():
    assert descriptors.CITYSCAPES_DVPS.void_label == 32000
    assert descriptors.SEMKITTI_DVPS.void_label == 255 * 65536
    with pytest.raises(KeyError, match="unknown dataset"):
        descriptors.get_descriptor("nope")
    with pytest.raises(ValueError, match="ignore_label"):
        descriptors.DatasetDescriptor(
            name="bad", class_names=("a",), colormap=((0, 0, 0),), thing_ids=(),
            ignore_label=1000, label_divisor=1000)
