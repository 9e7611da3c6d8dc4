"""Panoptic-DeepLab post-processing: hand-made cases (expected values derived in comments) and
the jitted JAX version against the numpy reference on random model-like outputs."""

import functools

import jax
import numpy as np
import pytest

from tests.postprocess import numpy_reference as reference
from vipdl.postprocess import panoptic

D = 1000
VOID = 255 * D
# Classes of the hand-made cases: 0 = road (stuff), 1 = person, 2 = car (things).
HAND = dict(thing_ids=(1, 2), label_divisor=D, ignore_label=255, nms_kernel=3, keep_k_centers=4)


def _logits(semantic: np.ndarray, num_classes: int = 3) -> np.ndarray:
    return (np.eye(num_classes, dtype=np.float32)[semantic] * 5.0).astype(np.float32)


def _both(logits, heat, offsets, **options) -> np.ndarray:
    """Runs JAX and numpy; asserts they agree; returns the map."""
    options = reference.with_options(**options)
    fast = np.asarray(panoptic.panoptic_from_predictions(logits, heat, offsets, **options))
    slow = reference.panoptic_from_predictions(logits, heat, offsets, **options)
    np.testing.assert_array_equal(fast, slow)
    assert fast.dtype == np.int32
    return fast


def _centers_both(heat, **options):
    fast = panoptic.find_centers(heat, **options)
    valid = np.asarray(fast.valid)
    slow_yx, slow_scores = reference.find_centers(heat, **options)
    np.testing.assert_array_equal(np.asarray(fast.yx)[valid], slow_yx)
    np.testing.assert_array_equal(np.asarray(fast.scores)[valid], slow_scores)
    assert not valid[len(slow_yx) :].any() and valid[: len(slow_yx)].all()
    return slow_yx, slow_scores


def _offsets_to(centers_of_pixel: np.ndarray) -> np.ndarray:
    """Exact offsets from every pixel to the (y, x) given per pixel, [h, w, 2]."""
    h, w, _ = centers_of_pixel.shape
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return (centers_of_pixel - np.stack([ys, xs], -1)).astype(np.float32)


def test_majority_vote_and_stuff_area_limit_at_exactly_the_limit():
    semantic = np.array([[0, 0, 0, 0], [1, 1, 2, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    heat = np.zeros((4, 4), np.float32)
    heat[1, 1] = 0.9  # the only center
    offsets = np.zeros((4, 4, 2), np.float32)
    # All five thing pixels join the single center: 4 votes person, 1 vote car, so the car
    # pixel at (1, 2) becomes person 1 (1001). Road covers the other 11 pixels.
    expected = np.array([[0, 0, 0, 0], [1001, 1001, 1001, 0], [1001, 1001, 0, 0], [0, 0, 0, 0]])
    # Area 11 >= limit 11 keeps the road (the C++ op's strict > would void it).
    out = _both(_logits(semantic), heat, offsets, stuff_area_limit=11, **HAND)
    np.testing.assert_array_equal(out, expected)
    # With limit 12 the road is void; things are unaffected.
    out = _both(_logits(semantic), heat, offsets, stuff_area_limit=12, **HAND)
    np.testing.assert_array_equal(out, np.where(expected == 0, VOID, expected))


def test_majority_vote_tie_goes_to_the_smaller_class():
    semantic = np.array([[2, 2, 1, 1]])  # 2 car and 2 person pixels in one instance
    heat = np.array([[0.0, 0.0, 0.5, 0.0]], np.float32)
    out = _both(
        _logits(semantic), heat, np.zeros((1, 4, 2), np.float32), stuff_area_limit=0, **HAND
    )
    np.testing.assert_array_equal(out, [[1001, 1001, 1001, 1001]])


def test_instances_renumbered_per_class_in_order_of_first_appearance():
    # Centers in row-major order: slot 1 = (0, 3) (score 0.5), slot 2 = (3, 0) (score 0.9).
    heat = np.zeros((4, 4), np.float32)
    heat[0, 3], heat[3, 0] = 0.5, 0.9
    # Columns 0-1 point to (3, 0), columns 2-3 to (0, 3). Pixel (0, 0) is scanned first and
    # belongs to slot 2, so slot 2 becomes person 1 and slot 1 becomes person 2, even though
    # slot 2 has the higher score and the later center.
    target = np.zeros((4, 4, 2))
    target[:, :2] = (3, 0)
    target[:, 2:] = (0, 3)
    semantic = np.ones((4, 4), int)
    out = _both(_logits(semantic), heat, _offsets_to(target), stuff_area_limit=0, **HAND)
    np.testing.assert_array_equal(out, np.where(np.arange(4)[None, :] < 2, 1001, 1002) + 0 * out)
    # Per class: a car instance in between keeps its own counter (car 1).
    semantic[:, 2:] = 2
    out = _both(_logits(semantic), heat, _offsets_to(target), stuff_area_limit=0, **HAND)
    np.testing.assert_array_equal(out[:, :2], 1001)
    np.testing.assert_array_equal(out[:, 2:], 2001)


def test_nms_plateau_keeps_all_ties_and_threshold_is_strict():
    heat = np.zeros((5, 5), np.float32)
    heat[1, 1] = heat[1, 2] = 0.8  # a plateau: both equal the 3x3 pooled max
    heat[4, 4] = 0.1  # exactly the threshold: not a center (strictly greater needed)
    heat[3, 0] = 0.3  # within 3x3 of nothing larger (zero padding at the border)
    yx, scores = _centers_both(heat, center_threshold=0.1, nms_kernel=3, keep_k_centers=4)
    np.testing.assert_array_equal(yx, [[1, 1], [1, 2], [3, 0]])
    np.testing.assert_array_equal(scores, np.float32([0.8, 0.8, 0.3]))
    # A 5x5 window around (3, 0) reaches (1, 1): the 0.3 peak is suppressed.
    yx, _ = _centers_both(heat, center_threshold=0.1, nms_kernel=5, keep_k_centers=4)
    np.testing.assert_array_equal(yx, [[1, 1], [1, 2]])


def test_more_centers_than_keep_k_takes_top_scores_ties_in_row_major_order():
    heat = np.zeros((3, 10), np.float32)
    heat[1, 1], heat[1, 4], heat[1, 7], heat[0, 9] = 0.5, 0.9, 0.5, 0.7
    # Top 3: 0.9 (1, 4), 0.7 (0, 9), then the 0.5 tie goes to (1, 1), earlier in a row-major
    # scan than (1, 7). Kept centers are listed in row-major order.
    yx, scores = _centers_both(heat, center_threshold=0.1, nms_kernel=3, keep_k_centers=3)
    np.testing.assert_array_equal(yx, [[0, 9], [1, 1], [1, 4]])
    np.testing.assert_array_equal(scores, np.float32([0.7, 0.5, 0.9]))
    # keep_k larger than the map still works (slots capped at h * w).
    yx, _ = _centers_both(heat[:1, :2], center_threshold=0.1, nms_kernel=3, keep_k_centers=400)
    assert len(yx) == 0


def test_grouping_distance_tie_goes_to_the_first_center():
    centers = panoptic.Centers(
        yx=np.array([[1, 1], [1, 2], [0, 0]], np.int32),
        valid=np.array([True, True, False]),
        scores=np.array([0.8, 0.8, 0.0], np.float32),
    )
    offsets = np.zeros((2, 3, 2), np.float32)
    offsets[0, 0] = (1.0, 1.5)  # lands at (1, 1.5): equally far from both centers
    fast = np.asarray(panoptic.group_pixels(centers, offsets))
    slow = reference.group_pixels(np.array([[1, 1], [1, 2]]), offsets)
    np.testing.assert_array_equal(fast, slow)
    # (0,0) -> tie -> slot 1. Others by plain distance; the invalid slot (0, 0) is never used
    # although it is the closest point for pixel (0, 1).
    np.testing.assert_array_equal(fast, [[1, 1, 2], [1, 1, 2]])


@pytest.mark.parametrize("num_centers", [7, 300])
def test_grid_grouping_equals_every_center_compared(num_centers):
    """The cell candidates never lose the nearest center: random centers (dense ones too),
    integer offsets (many exact ties), positions far outside the frame, a mask, and vmap."""
    rng = np.random.default_rng(num_centers)
    height, width, slots = 40, 70, 320
    maps, refs, masks, tables = [], [], [], []
    for example in range(2):
        flat = rng.choice(height * width, num_centers, replace=False)
        yx = np.stack(np.divmod(np.sort(flat), width), -1).astype(np.int32)
        offsets = rng.integers(-12, 13, (height, width, 2)).astype(np.float32)
        offsets[rng.random((height, width)) < 0.02] *= 40  # far outside the frame
        if example:
            offsets += rng.random((height, width, 2)).astype(np.float32) * 0.5
        valid = np.zeros(slots, bool)
        valid[:num_centers] = True
        padded = np.zeros((slots, 2), np.int32)
        padded[:num_centers] = yx
        tables.append(panoptic.Centers(padded, valid, valid.astype(np.float32)))
        maps.append(offsets)
        refs.append(reference.group_pixels(yx, offsets))
        masks.append(rng.random((height, width)) < 0.7)
    batched = jax.tree.map(lambda *x: np.stack(x), *tables)
    grouped = jax.vmap(panoptic.group_pixels)(batched, np.stack(maps), np.stack(masks))
    for got, want, mask in zip(np.asarray(grouped), refs, masks):
        np.testing.assert_array_equal(got[mask], want[mask])
        assert not got[~mask].any()
    np.testing.assert_array_equal(np.asarray(panoptic.group_pixels(tables[0], maps[0])), refs[0])


def test_no_centers_voids_thing_pixels_instead_of_a_crowd_segment():
    semantic = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    heat = np.full((2, 4), 0.1, np.float32)  # never > 0.1: no center anywhere
    out = _both(
        _logits(semantic), heat, np.zeros((2, 4, 2), np.float32), stuff_area_limit=4, **HAND
    )
    # Pure-TF path: thing pixels with instance 0 stay void (no "person crowd" 1000 label).
    np.testing.assert_array_equal(out, [[0, 0, VOID, VOID], [0, 0, VOID, VOID]])


def test_merge_handles_instance_ids_on_stuff_pixels_like_deeplab2():
    # Arbitrary instance maps (not from grouping): id 3 lies on road and person pixels; id 3
    # first appears at (0, 0), a road pixel, id 1 at (0, 2). Only thing pixels vote.
    semantic = np.array([[0, 1, 1, 1]])
    instance = np.array([[3, 3, 1, 1]])
    kw = dict(thing_ids=(1, 2), label_divisor=D, ignore_label=255, stuff_area_limit=0)
    fast = panoptic.merge_semantic_and_instance(
        semantic, instance, num_classes=3, max_instance_id=4, **kw
    )
    slow = reference.merge_semantic_and_instance(semantic, instance, **kw)
    np.testing.assert_array_equal(np.asarray(fast), slow)
    # Road pixel with instance 3 is neither stuff (instance != 0) nor thing: void.
    np.testing.assert_array_equal(slow, [[VOID, 1001, 1002, 1002]])


RANDOM = dict(thing_ids=(2, 3, 4), label_divisor=D, ignore_label=255, nms_kernel=5)


@pytest.mark.parametrize(
    "seed,num_peaks,keep_k,quantize",
    [
        (0, 6, 16, False),
        (1, 12, 16, False),
        (2, 40, 16, True),
        (3, 25, 16, True),
        (4, 0, 16, False),
    ],
)
def test_jax_equals_numpy_on_model_like_outputs(model_like, seed, num_peaks, keep_k, quantize):
    rng = np.random.default_rng(seed)
    logits, heat, offsets = model_like(rng, 24, 40, 6, num_peaks, quantize=quantize)
    out = _both(logits, heat, offsets, keep_k_centers=keep_k, stuff_area_limit=30, **RANDOM)
    if num_peaks >= 25:  # many centers: the keep_k cap is active
        assert len(reference.find_centers(heat, nms_kernel=5, keep_k_centers=0)[0]) > keep_k
    assert (out % D < D).all()


def test_vmap_and_jit_over_a_batch(model_like):
    rng = np.random.default_rng(7)
    batch = [model_like(rng, 24, 40, 6, 10, quantize=True) for _ in range(3)]
    logits, heat, offsets = (np.stack(x) for x in zip(*batch))
    options = reference.with_options(keep_k_centers=16, stuff_area_limit=30, **RANDOM)
    fn = jax.jit(jax.vmap(functools.partial(panoptic.panoptic_from_predictions, **options)))
    out = np.asarray(fn(logits, heat, offsets))
    for i in range(3):
        expected = reference.panoptic_from_predictions(logits[i], heat[i], offsets[i], **options)
        np.testing.assert_array_equal(out[i], expected)


def test_bad_inputs_raise_clear_errors():
    logits = np.zeros((4, 4, 3), np.float32)
    heat = np.zeros((4, 4), np.float32)
    offsets = np.zeros((4, 4, 2), np.float32)
    with pytest.raises(ValueError, match="center_heatmap"):
        panoptic.panoptic_from_predictions(logits, heat[None], offsets, **reference.with_options(**HAND))
    with pytest.raises(ValueError, match="offset_map"):
        panoptic.panoptic_from_predictions(
            logits, heat, offsets[..., :1], **reference.with_options(**HAND)
        )
    with pytest.raises(ValueError, match="thing_ids"):
        panoptic.panoptic_from_predictions(
            logits, heat, offsets, **reference.with_options(**{**HAND, "thing_ids": (5,)})
        )
    # 4 center slots could number 4 persons: instance id 4 does not fit label_divisor 4.
    with pytest.raises(ValueError, match="center slots"):
        panoptic.panoptic_from_predictions(
            logits, heat, offsets,
            **reference.with_options(**{**HAND, "label_divisor": 4, "ignore_label": 3}),
        )
    with pytest.raises(ValueError, match="ignore_label"):
        panoptic.panoptic_from_predictions(
            logits, heat, offsets, **reference.with_options(**{**HAND, "ignore_label": D})
        )


def test_panoptic_from_semantic_equals_the_logits_entry_point(model_like):
    logits, heat, offsets = model_like(np.random.default_rng(11), 24, 40, 6, 10)
    options = reference.with_options(keep_k_centers=16, stuff_area_limit=30, **RANDOM)
    from_logits = panoptic.panoptic_from_predictions(logits, heat, offsets, **options)
    from_labels = panoptic.panoptic_from_semantic(
        np.argmax(logits, -1), heat, offsets, num_classes=6, **options
    )
    np.testing.assert_array_equal(from_logits, from_labels)
    with pytest.raises(ValueError, match="semantic must be"):
        panoptic.panoptic_from_semantic(logits, heat, offsets, num_classes=6, **options)
