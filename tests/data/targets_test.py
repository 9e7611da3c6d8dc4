import numpy as np
import pytest

from vipdl import keys
from vipdl.data import targets

D = 1000
IGNORE = 255
VOID = IGNORE * D
THINGS = (11, 13)
KW = dict(thing_ids=THINGS, label_divisor=D, ignore_label=IGNORE)
BOTH = (targets.make_targets, targets.make_targets_reference)


def _assert_same(expected: dict, actual: dict):
    assert sorted(expected) == sorted(actual)
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def test_gaussian_template_matches_the_known_answer():
    template, offset = targets.gaussian_template(8.0)
    assert template.shape == (51, 51) and template.dtype == np.float32
    assert offset == 25
    assert template[25, 25] == 1.0
    np.testing.assert_allclose(template[25, 33], np.exp(-0.5), rtol=1e-6)
    np.testing.assert_allclose(template[17, 25], np.exp(-0.5), rtol=1e-6)
    assert template.argmax() == 25 * 51 + 25


@pytest.mark.parametrize("fn", BOTH)
def test_single_instance_center_heatmap_and_offsets(fn):
    # Road everywhere, one car (13, instance 2) covering rows 10..19 and columns 20..33.
    pan = np.zeros((60, 80), np.int32)
    pan[10:20, 20:34] = 13 * D + 2
    out = fn(pan, None, **KW)
    cy, cx = 14, 26  # means 14.5 -> 14 and 26.5 -> 26 (half to even)
    heat = out[keys.GT_CENTER_HEATMAP]
    assert heat[cy, cx] == 1.0 and heat.max() == 1.0
    np.testing.assert_allclose(heat[cy, cx + 8], np.exp(-0.5), rtol=1e-6)
    np.testing.assert_allclose(heat[cy + 8, cx], np.exp(-0.5), rtol=1e-6)
    assert heat[cy, cx + 25] > 0 and heat[cy, cx + 26] == 0  # truncated to 51 x 51
    assert heat[cy + 25, cx] > 0 and heat[cy + 26, cx] == 0
    offset = out[keys.GT_OFFSET]
    assert tuple(offset[10, 20]) == (cy - 10, cx - 20)
    assert tuple(offset[19, 33]) == (cy - 19, cx - 33)
    assert not offset[pan == 0].any()
    np.testing.assert_array_equal(out[keys.GT_OFFSET_WEIGHTS], (pan != 0).astype(np.float32))
    np.testing.assert_array_equal(out[keys.GT_CENTER_WEIGHTS], np.ones_like(heat))
    np.testing.assert_array_equal(out[keys.GT_SEMANTIC], pan // D)
    # 140 px < 4096: weight 3 on the car only.
    np.testing.assert_array_equal(out[keys.GT_SEMANTIC_WEIGHTS], np.where(pan != 0, 3.0, 1.0))
    assert keys.GT_NEXT_OFFSET not in out and keys.GT_NEXT_OFFSET_WEIGHTS not in out


@pytest.mark.parametrize("fn", BOTH)
def test_mean_is_rounded_half_to_even(fn):
    pan = np.zeros((8, 8), np.int32)
    pan[0:2, 0] = 11 * D + 1  # mean y 0.5 -> 0
    pan[1:3, 7] = 11 * D + 2  # mean y 1.5 -> 2
    out = fn(pan, None, **KW, sigma=1.0)
    offset = out[keys.GT_OFFSET]
    assert tuple(offset[0, 0]) == (0, 0) and tuple(offset[1, 0]) == (-1, 0)
    assert tuple(offset[1, 7]) == (1, 0) and tuple(offset[2, 7]) == (0, 0)
    assert out[keys.GT_CENTER_HEATMAP][0, 0] == 1 and out[keys.GT_CENTER_HEATMAP][2, 7] == 1


@pytest.mark.parametrize("fn", BOTH)
def test_center_outside_mask_and_max_combination(fn):
    pan = np.zeros((40, 40), np.int32)
    # A ring: its mean (20, 20) is a road pixel, and the center is still drawn there.
    pan[10:31, 10:31] = 13 * D + 1
    pan[12:29, 12:29] = 0
    # A second instance whose Gaussian overlaps: combined by max, never summed.
    pan[20:22, 26:28] = 11 * D + 4  # mean (20.5, 26.5) -> (20, 26)
    out = fn(pan, None, **KW)
    heat = out[keys.GT_CENTER_HEATMAP]
    template, _ = targets.gaussian_template(8.0)
    assert heat[20, 20] == 1.0 and heat[20, 26] == 1.0
    # Between the centers both Gaussians contribute exp(-9/128); max keeps one of them.
    assert heat[20, 23] == template[25, 28]
    assert heat.max() == 1.0


@pytest.mark.parametrize("fn", BOTH)
def test_crowd_void_and_stuff_weights(fn):
    pan = np.array(
        [
            [0 * D, 3 * D, 13 * D, VOID],  # road, stuff 3, crowd car, void
            [13 * D + 1, 13 * D + 1, 11 * D, VOID + 7],  # car 1, crowd person, void w/ instance
        ],
        np.int32,
    )
    out = fn(pan, None, **KW)
    np.testing.assert_array_equal(out[keys.GT_SEMANTIC], [[0, 3, 13, IGNORE], [13, 13, 11, IGNORE]])
    # Center weight: not crowd and not void (stuff included).
    np.testing.assert_array_equal(out[keys.GT_CENTER_WEIGHTS], [[1, 1, 0, 0], [1, 1, 0, 0]])
    # Offset weight: non-crowd thing pixels only.
    np.testing.assert_array_equal(out[keys.GT_OFFSET_WEIGHTS], [[0, 0, 0, 0], [1, 1, 0, 0]])
    # Only car 1 is an instance: its center (1, 0.5 -> 0).
    heat = out[keys.GT_CENTER_HEATMAP]
    assert heat[1, 0] == 1.0 and heat.max() == 1.0
    np.testing.assert_array_equal(out[keys.GT_OFFSET][..., 1], [[0, 0, 0, 0], [0, -1, 0, 0]])
    # Semantic weights stay 1 on void (the loss masks ignore_label); small instances get 3.
    np.testing.assert_array_equal(out[keys.GT_SEMANTIC_WEIGHTS], [[1, 1, 1, 1], [3, 3, 1, 1]])


@pytest.mark.parametrize("fn", BOTH)
def test_small_instance_threshold_is_strict(fn):
    pan = np.zeros((70, 140), np.int32)
    pan[0:64, 0:64] = 11 * D + 1  # 4096 px: not small
    pan[0:64, 70:133] = 11 * D + 2  # 4032 px: small
    out = fn(pan, None, **KW)
    weights = out[keys.GT_SEMANTIC_WEIGHTS]
    assert weights[0, 0] == 1.0 and weights[0, 70] == 3.0 and weights[69, 139] == 1.0
    out = fn(pan, None, **KW, small_instance_area=10, small_instance_weight=5.0)
    assert out[keys.GT_SEMANTIC_WEIGHTS].max() == 1.0


@pytest.mark.parametrize("fn", BOTH)
def test_next_offsets_point_to_frame_t_centers(fn):
    pan = np.zeros((30, 30), np.int32)
    pan[4:9, 4:9] = 13 * D + 1  # center (6, 6)
    pan[20:23, 20:23] = 11 * D + 5  # center (21, 21): disappears in t+1
    nxt = np.zeros((30, 30), np.int32)
    nxt[5:10, 6:11] = 13 * D + 1  # moved by (1, 2)
    nxt[0:3, 25:28] = 13 * D + 9  # appears in t+1 only
    nxt[15:17, 15:17] = 13 * D  # crowd car in t+1: never matched
    out = fn(pan, nxt, **KW)
    next_offset = out[keys.GT_NEXT_OFFSET]
    next_weights = out[keys.GT_NEXT_OFFSET_WEIGHTS]
    assert tuple(next_offset[5, 6]) == (1, 0)
    assert tuple(next_offset[9, 10]) == (6 - 9, 6 - 10)
    # The t+1 pixel lying on the frame-t center has a zero target and weight 0.
    assert tuple(next_offset[6, 6]) == (0, 0) and next_weights[6, 6] == 0
    expected_weights = (nxt == 13 * D + 1).astype(np.float32)
    expected_weights[6, 6] = 0
    np.testing.assert_array_equal(next_weights, expected_weights)
    assert not next_offset[nxt != 13 * D + 1].any()
    # Frame t's own targets do not look at frame t+1.
    _assert_same(
        {k: v for k, v in fn(pan, None, **KW).items()},
        {
            k: v
            for k, v in out.items()
            if k not in (keys.GT_NEXT_OFFSET, keys.GT_NEXT_OFFSET_WEIGHTS)
        },
    )


def _random_panoptic(rng, height, width, *, label_divisor, ignore_label, things, stuff):
    """Blocks of stuff, void, crowd and a few instances, some shared by the two frames."""
    pan = rng.choice([s * label_divisor for s in stuff], size=(height, width)).astype(np.int32)
    for _ in range(rng.integers(0, 8)):
        y, x = rng.integers(0, height), rng.integers(0, width)
        h, w = rng.integers(1, height + 1), rng.integers(1, width + 1)
        kind = rng.integers(0, 4)
        if kind == 0:
            value = ignore_label * label_divisor
        elif kind == 1:
            value = rng.choice(things) * label_divisor  # crowd
        else:
            value = rng.choice(things) * label_divisor + rng.integers(1, 4)
        pan[y : y + h, x : x + w] = value
    return pan


@pytest.mark.parametrize(
    "label_divisor, ignore_label, things",
    [(1000, 255, (11, 13)), (1000, 32, tuple(range(11, 19))), (65536, 255, tuple(range(8)))],
)
def test_fast_equals_reference_on_random_maps(label_divisor, ignore_label, things):
    rng = np.random.default_rng(label_divisor + ignore_label)
    stuff = [c for c in range(19) if c not in things][:4]
    kw = dict(thing_ids=things, label_divisor=label_divisor, ignore_label=ignore_label)
    for trial in range(25):
        height, width = rng.integers(1, 70, size=2)
        pan, nxt = (
            _random_panoptic(
                rng,
                height,
                width,
                label_divisor=label_divisor,
                ignore_label=ignore_label,
                things=things,
                stuff=stuff,
            )
            for _ in range(2)
        )
        options = dict(
            small_instance_area=int(rng.integers(1, 400)), sigma=float(rng.choice([8, 3]))
        )
        _assert_same(
            targets.make_targets_reference(pan, nxt, **kw, **options),
            targets.make_targets(pan, nxt, **kw, **options),
        )
        if trial % 5 == 0:
            _assert_same(
                targets.make_targets_reference(pan, None, **kw),
                targets.make_targets(pan, None, **kw),
            )


def test_instance_at_the_border_is_clipped():
    pan = np.zeros((5, 6), np.int32)
    pan[0, 0] = 11 * D + 1
    pan[4, 5] = 11 * D + 2
    out = targets.make_targets(pan, None, **KW)
    template, _ = targets.gaussian_template(8.0)
    np.testing.assert_array_equal(
        out[keys.GT_CENTER_HEATMAP],
        np.maximum(template[25:30, 25:31], template[21:26, 20:26]),
    )


@pytest.mark.parametrize("fn", BOTH)
def test_bad_input_raises(fn):
    pan = np.zeros((4, 5), np.int32)
    with pytest.raises(ValueError, match="next_panoptic: shape"):
        fn(pan, np.zeros((4, 6), np.int32), **KW)
    with pytest.raises(ValueError, match="panoptic: expected an integer array"):
        fn(pan.astype(np.float32), None, **KW)
    with pytest.raises(ValueError, match=">= 0"):
        fn(pan - 1, None, **KW)
    with pytest.raises(ValueError, match="ignore_label"):
        fn(pan, None, thing_ids=THINGS, label_divisor=100, ignore_label=255)
