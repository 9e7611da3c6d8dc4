import math

import numpy as np
import pytest

from vipdl import keys
from vipdl.data import augment

D = 1000
IGNORE = 255
VOID = IGNORE * D


def _bilinear_loop(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 `resize_bilinear(align_corners=True)`, one output pixel at a time, float32."""
    in_h, in_w = image.shape[:2]
    image = image.astype(np.float32)

    def ratio(n_in, n_out):
        return np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(n_in)

    out = np.zeros((out_h, out_w, *image.shape[2:]), np.float32)
    for i in range(out_h):
        y = np.float32(i) * ratio(in_h, out_h)
        y0, y1 = int(math.floor(y)), min(int(math.ceil(y)), in_h - 1)
        ly = y - np.float32(math.floor(y))
        for j in range(out_w):
            x = np.float32(j) * ratio(in_w, out_w)
            x0, x1 = int(math.floor(x)), min(int(math.ceil(x)), in_w - 1)
            lx = x - np.float32(math.floor(x))
            top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * lx
            bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * lx
            out[i, j] = top + (bottom - top) * ly
    return out


def _nearest_loop(label: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    in_h, in_w = label.shape[:2]

    def source(i, n_in, n_out):
        ratio = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(n_in)
        return min(int(math.floor(np.float32(i) * ratio + 0.5)), n_in - 1)

    return np.array(
        [
            [label[source(i, in_h, out_h), source(j, in_w, out_w)] for j in range(out_w)]
            for i in range(out_h)
        ]
    )


def test_scale_set_default_has_16_values_with_one():
    scales = augment.scale_set()
    assert len(scales) == 16 and 1.0 in scales
    np.testing.assert_allclose(scales, 0.5 + 0.1 * np.arange(16), atol=1e-12)
    assert scales[1] == 0.6 and scales[-1] == 2.0


def test_scale_set_reference_float32_reproduces_deeplab2_artefact():
    scales = augment.scale_set(reference_float32=True)
    assert len(scales) == 15 and 1.0 not in scales
    assert scales[0] == 0.5 and scales[-1] == 2.0
    # tf.linspace(0.5, 2.0, 15) in float32 (checked against TF in the slow test below).
    assert scales[1] == pytest.approx(0.6071428656578064, abs=0)
    np.testing.assert_allclose(scales, 0.5 + np.arange(15) * 1.5 / 14, rtol=1e-6)


def test_scale_set_edge_cases():
    assert augment.scale_set(1.0, 1.0) == (1.0,)
    assert augment.scale_set(0.5, 1.0, 0.25) == (0.5, 0.75, 1.0)
    with pytest.raises(ValueError, match="min_scale"):
        augment.scale_set(2.0, 1.0)
    with pytest.raises(ValueError, match="step"):
        augment.scale_set(0.5, 1.0, 0.0)


def test_scaled_size_truncates_float32_product():
    assert augment.scaled_size((1024, 2048), 0.5) == (512, 1024)
    assert augment.scaled_size((1024, 2048), 0.7) == (716, 1433)
    assert augment.scaled_size((375, 1242), 1.1) == (412, 1366)


def test_bilinear_hand_example_and_corners():
    image = np.array([[0, 10], [20, 30]], np.uint8)
    out = augment.resize_bilinear_align_corners(image, (3, 3))
    np.testing.assert_array_equal(out, [[0, 5, 10], [10, 15, 20], [20, 25, 30]])
    assert out.dtype == np.float32
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (7, 9, 3)).astype(np.uint8)
    out = augment.resize_bilinear_align_corners(image, (20, 5))
    for y, x in [(0, 0), (-1, 0), (0, -1), (-1, -1)]:
        np.testing.assert_array_equal(out[y, x], image[y, x])  # align corners


def test_bilinear_equals_loop_reference_and_subsets():
    rng = np.random.default_rng(1)
    for _ in range(12):
        in_h, in_w, out_h, out_w = rng.integers(1, 14, size=4)
        channels = () if rng.random() < 0.3 else (3,)
        image = rng.integers(0, 256, (in_h, in_w, *channels)).astype(np.uint8)
        expected = _bilinear_loop(image, out_h, out_w)
        np.testing.assert_array_equal(
            augment.resize_bilinear_align_corners(image, (out_h, out_w)), expected
        )
        rows = rng.integers(0, out_h, size=5)
        cols = rng.permutation(out_w)[: max(out_w // 2, 1)]
        np.testing.assert_array_equal(
            augment.resize_bilinear_align_corners(image, (out_h, out_w), rows=rows, cols=cols),
            expected[rows][:, cols],
        )
        # Independent float64 check of the sampling grid (align corners, not half-pixel).
        if in_h > 1 and in_w > 1 and out_h > 1 and out_w > 1:
            i, j = out_h - 2, out_w // 2
            y, x = i * (in_h - 1) / (out_h - 1), j * (in_w - 1) / (out_w - 1)
            y0, x0 = min(int(y), in_h - 2), min(int(x), in_w - 2)
            ly, lx = y - y0, x - x0
            patch = image[y0 : y0 + 2, x0 : x0 + 2].astype(np.float64)
            value = (
                patch[0, 0] * (1 - ly) * (1 - lx)
                + patch[0, 1] * (1 - ly) * lx
                + patch[1, 0] * ly * (1 - lx)
                + patch[1, 1] * ly * lx
            )
            np.testing.assert_allclose(expected[i, j], value, atol=1e-3)


def test_nearest_hand_example_and_loop_reference():
    label = np.array([[1, 2, 3]], np.int32)
    # Source columns 0, 0.5, 1, 1.5, 2 round half away from zero: 0, 1, 1, 2, 2.
    np.testing.assert_array_equal(
        augment.resize_nearest_align_corners(label, (1, 5)), [[1, 2, 2, 3, 3]]
    )
    rng = np.random.default_rng(2)
    for _ in range(12):
        in_h, in_w, out_h, out_w = rng.integers(1, 15, size=4)
        label = rng.integers(0, 10**6, (in_h, in_w)).astype(np.int32)
        out = augment.resize_nearest_align_corners(label, (out_h, out_w))
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, _nearest_loop(label, out_h, out_w))


def _example(rng, height, width, *, depth=True):
    example = {
        keys.IMAGE: rng.integers(0, 256, (height, width, 3)).astype(np.uint8),
        keys.NEXT_IMAGE: rng.integers(0, 256, (height, width, 3)).astype(np.uint8),
        keys.PANOPTIC: rng.integers(0, 5, (height, width)).astype(np.int32) * D + 13 * D,
        keys.NEXT_PANOPTIC: rng.integers(0, 5, (height, width)).astype(np.int32) * D,
        keys.SEQUENCE_ID: "seq",
        keys.FRAME_INDEX: 3,
    }
    if depth:
        example[keys.DEPTH] = (rng.integers(0, 80 * 256, (height, width)) / 256).astype(np.float32)
    return example


def _naive_transform(example, seed, *, crop_size_hw, scales):
    """Resize the whole frame, pad, crop, flip: the obvious (slow) order of operations."""
    rng = np.random.default_rng(seed)
    crop_h, crop_w = crop_size_hw
    scale = scales[rng.integers(len(scales))]
    out_h, out_w = augment.scaled_size(example[keys.IMAGE].shape[:2], scale)
    pad_y = rng.integers(max(crop_h - out_h, 1))
    pad_x = rng.integers(max(crop_w - out_w, 1))
    canvas_h, canvas_w = max(out_h, crop_h), max(out_w, crop_w)
    crop_y = rng.integers(canvas_h - crop_h + 1)
    crop_x = rng.integers(canvas_w - crop_w + 1)
    flip = rng.random() < 0.5

    def finish(full, fill, dtype):
        canvas = np.full((canvas_h, canvas_w, *full.shape[2:]), fill, dtype)
        canvas[pad_y : pad_y + out_h, pad_x : pad_x + out_w] = full
        crop = canvas[crop_y : crop_y + crop_h, crop_x : crop_x + crop_w]
        return crop[:, ::-1] if flip else crop

    result = dict(example)
    for key in (keys.IMAGE, keys.NEXT_IMAGE):
        full = _bilinear_loop(example[key], out_h, out_w)
        result[key] = finish(full, 127.5, np.float32)
    for key in (keys.PANOPTIC, keys.NEXT_PANOPTIC):
        result[key] = finish(_nearest_loop(example[key], out_h, out_w), VOID, np.int32)
    depth = _nearest_loop(example[keys.DEPTH], out_h, out_w).astype(np.float32)
    if scale != 1.0:
        depth = np.floor(depth * 256 / np.float32(scale)) / 256
    result[keys.DEPTH] = finish(depth, 0.0, np.float32)
    return result


@pytest.mark.parametrize(
    "size, crop", [((12, 17), (9, 11)), ((6, 5), (13, 16)), ((10, 10), (10, 10))]
)
def test_random_pair_transform_equals_resize_pad_crop_flip(size, crop):
    rng = np.random.default_rng(3)
    example = _example(rng, *size)
    scales = (0.5, 0.7, 1.0, 1.3, 2.0)
    for seed in range(12):
        actual = augment.random_pair_transform(
            example,
            np.random.default_rng(seed),
            crop_size_hw=crop,
            scales=scales,
            ignore_label=IGNORE,
            label_divisor=D,
        )
        expected = _naive_transform(example, seed, crop_size_hw=crop, scales=scales)
        assert sorted(actual) == sorted(expected)
        for key in (keys.IMAGE, keys.NEXT_IMAGE, keys.PANOPTIC, keys.NEXT_PANOPTIC, keys.DEPTH):
            assert actual[key].shape[:2] == crop
            assert actual[key].dtype == expected[key].dtype, key
            np.testing.assert_array_equal(actual[key], expected[key], err_msg=f"{key} {seed}")
        assert actual[keys.SEQUENCE_ID] == "seq" and actual[keys.FRAME_INDEX] == 3


def test_both_frames_get_the_same_transform():
    rng = np.random.default_rng(4)
    example = _example(rng, 11, 13, depth=False)
    example[keys.NEXT_IMAGE] = example[keys.IMAGE]
    example[keys.NEXT_PANOPTIC] = example[keys.PANOPTIC]
    for seed in range(10):
        out = augment.random_pair_transform(
            example,
            np.random.default_rng(seed),
            crop_size_hw=(8, 15),
            scales=augment.scale_set(),
            ignore_label=IGNORE,
            label_divisor=D,
        )
        np.testing.assert_array_equal(out[keys.IMAGE], out[keys.NEXT_IMAGE])
        np.testing.assert_array_equal(out[keys.PANOPTIC], out[keys.NEXT_PANOPTIC])
        # Padding is exactly where the labels are void, with the mean pixel.
        pad = out[keys.PANOPTIC] == VOID
        assert np.all(out[keys.IMAGE][pad] == 127.5)


def test_scale_is_drawn_from_the_set_and_flip_happens():
    image_size, crop = (10, 10), (41, 41)
    scales = (0.5, 1.0, 2.0, 3.0)
    allowed = {augment.scaled_size(image_size, s) for s in scales}
    example = {
        keys.IMAGE: np.zeros((*image_size, 3), np.uint8),
        keys.PANOPTIC: np.zeros(image_size, np.int32),
    }
    seen = set()
    for seed in range(40):
        out = augment.random_pair_transform(
            example,
            np.random.default_rng(seed),
            crop_size_hw=crop,
            scales=scales,
            ignore_label=IGNORE,
            label_divisor=D,
        )
        ys, xs = np.nonzero(out[keys.PANOPTIC] != VOID)
        seen.add((ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
        assert keys.NEXT_IMAGE not in out
    assert seen == allowed

    ramp = {
        keys.IMAGE: np.tile(np.arange(6, dtype=np.uint8)[None, :, None], (2, 1, 3)),
        keys.PANOPTIC: np.tile(np.arange(6, dtype=np.int32), (2, 1)),
    }
    flips = set()
    for seed in range(10):
        out = augment.random_pair_transform(
            ramp,
            np.random.default_rng(seed),
            crop_size_hw=(1, 6),
            scales=(1.0,),
            ignore_label=IGNORE,
            label_divisor=D,
        )
        row = out[keys.PANOPTIC][0]
        assert list(row) in ([0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0])
        np.testing.assert_array_equal(out[keys.IMAGE][0, :, 0], row)
        flips.add(row[0] == 5)
    assert flips == {True, False}


@pytest.mark.parametrize("scale, expected", [(2.0, 5.0), (0.5, 20.0), (1.3, 1969 / 256)])
def test_depth_is_divided_by_the_scale(scale, expected):
    example = {
        keys.IMAGE: np.zeros((8, 8, 3), np.uint8),
        keys.PANOPTIC: np.zeros((8, 8), np.int32),
        keys.DEPTH: np.full((8, 8), 10.0, np.float32),
    }
    out = augment.random_pair_transform(
        example,
        np.random.default_rng(0),
        crop_size_hw=(12, 12),
        scales=(scale,),
        ignore_label=IGNORE,
        label_divisor=D,
    )
    depth, valid = out[keys.DEPTH], out[keys.PANOPTIC] != VOID
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth[valid], np.float32(expected))
    assert not depth[~valid].any()


def test_size_mismatch_is_rejected():
    rng = np.random.default_rng(5)
    example = _example(rng, 6, 7)
    example[keys.NEXT_PANOPTIC] = example[keys.NEXT_PANOPTIC][:, :5]
    with pytest.raises(ValueError, match="next_panoptic: size \\(6, 5\\) differs"):
        augment.random_pair_transform(
            example,
            rng,
            crop_size_hw=(4, 4),
            scales=(1.0,),
            ignore_label=IGNORE,
            label_divisor=D,
        )


def test_pad_bottom_right():
    rng = np.random.default_rng(6)
    example = _example(rng, 3, 4)
    out = augment.pad_bottom_right(example, (5, 6), ignore_label=IGNORE, label_divisor=D)
    np.testing.assert_array_equal(out[keys.IMAGE][:3, :4], example[keys.IMAGE])
    assert out[keys.IMAGE].dtype == np.float32
    assert np.all(out[keys.IMAGE][3:] == 127.5) and np.all(out[keys.IMAGE][:, 4:] == 127.5)
    np.testing.assert_array_equal(out[keys.PANOPTIC][:3, :4], example[keys.PANOPTIC])
    assert np.all(out[keys.NEXT_PANOPTIC][3:] == VOID)
    assert not out[keys.DEPTH][:, 4:].any()
    with pytest.raises(ValueError, match="exceeds the eval crop"):
        augment.pad_bottom_right(example, (2, 6), ignore_label=IGNORE, label_divisor=D)


@pytest.mark.slow
def test_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    lo, hi, step = (float(np.float32(v)) for v in (0.5, 2.0, 0.1))
    expected = tf.linspace(lo, hi, int((hi - lo) / step + 1)).numpy()
    np.testing.assert_array_equal(augment.scale_set(reference_float32=True), expected)
    rng = np.random.default_rng(7)
    for _ in range(10):
        in_h, in_w, out_h, out_w = (int(v) for v in rng.integers(1, 40, size=4))
        image = rng.integers(0, 256, (in_h, in_w, 3)).astype(np.uint8)
        bilinear = tf.compat.v1.image.resize_bilinear(
            tf.cast(image[None], tf.float32), [out_h, out_w], align_corners=True
        )
        np.testing.assert_allclose(
            augment.resize_bilinear_align_corners(image, (out_h, out_w)), bilinear[0], atol=1e-4
        )
        label = rng.integers(0, 10**6, (in_h, in_w, 1)).astype(np.int32)
        nearest = tf.compat.v1.image.resize(
            label, [out_h, out_w], method="nearest", align_corners=True
        )
        np.testing.assert_array_equal(
            augment.resize_nearest_align_corners(label, (out_h, out_w)), nearest
        )
        scale = float(rng.choice(augment.scale_set(reference_float32=True)))
        tf_size = tf.cast(tf.cast([in_h * 37, in_w * 53], tf.float32) * scale, tf.int32)
        assert augment.scaled_size((in_h * 37, in_w * 53), scale) == tuple(tf_size.numpy())
