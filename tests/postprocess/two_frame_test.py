"""ViP-DeepLab two-frame canvas and the pairwise stitcher (docs/postprocessing.md#two-frame-inference)."""

import functools

import jax
import numpy as np
import pytest

from tests.postprocess import numpy_reference as reference
from vipdl import keys
from vipdl.postprocess import two_frame

D = 1000
OPTIONS = dict(thing_ids=(1, 2), label_divisor=D, ignore_label=255, nms_kernel=3, keep_k_centers=4)


def _pred(semantic, heat, offsets, num_classes=3):
    return {
        keys.PRED_SEMANTIC_LOGITS: np.eye(num_classes, dtype=np.float32)[semantic] * 5,
        keys.PRED_CENTER_HEATMAP: np.asarray(heat, np.float32),
        keys.PRED_OFFSET_MAP: np.asarray(offsets, np.float32),
    }


def _to_origin(h, w):
    """Offsets from every pixel to (0, 0)."""
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([-ys, -xs], -1).astype(np.float32)


def test_canvas_propagates_ids_and_counts_stuff_over_both_frames():
    # Frame t: a person on columns 0-1 with its center at (0, 0). Frame t+1: the person moved
    # to columns 1-2; its next-frame offsets point back to (0, 0) in frame t. On the canvas a
    # right-half pixel (y, x + 4) gets dx - 4 and lands on (0, 0) too, so it joins the same
    # instance: person 1 (1001) in both frames. Frame t+1's own heatmap peak at (1, 3) is
    # ignored (centers come from frame t only).
    sem_t = np.array([[1, 1, 0, 0], [1, 1, 0, 0]])
    sem_t1 = np.array([[0, 1, 1, 0], [0, 1, 1, 0]])
    heat_t = np.zeros((2, 4))
    heat_t[0, 0] = 0.9
    heat_t1 = np.zeros((2, 4))
    heat_t1[1, 3] = 0.9
    pred_t = _pred(sem_t, heat_t, _to_origin(2, 4))
    pred_t1 = _pred(sem_t1, heat_t1, np.zeros((2, 4, 2)))
    next_offsets = _to_origin(2, 4)
    # Road has 4 pixels per frame, 8 on the canvas: limit 8 keeps it in both halves.
    panoptic_t, concat_next = two_frame.two_frame_panoptic(
        pred_t, pred_t1, next_offsets, **reference.with_options(stuff_area_limit=8, **OPTIONS)
    )
    np.testing.assert_array_equal(panoptic_t, [[1001, 1001, 0, 0], [1001, 1001, 0, 0]])
    np.testing.assert_array_equal(concat_next, [[0, 1001, 1001, 0], [0, 1001, 1001, 0]])
    # Post-processing frame t alone sees only 4 road pixels: the road is void (docs/postprocessing.md#two-frame-inference).
    alone = reference.panoptic_from_predictions(
        pred_t[keys.PRED_SEMANTIC_LOGITS],
        heat_t,
        pred_t[keys.PRED_OFFSET_MAP],
        **reference.with_options(stuff_area_limit=8, **OPTIONS),
    )
    np.testing.assert_array_equal(alone[:, 2:], 255 * D)


def test_build_canvas_layout():
    rng = np.random.default_rng(0)
    pred_t = _pred(rng.integers(0, 3, (3, 5)), rng.random((3, 5)), rng.random((3, 5, 2)))
    pred_t1 = _pred(rng.integers(0, 3, (3, 5)), rng.random((3, 5)), rng.random((3, 5, 2)))
    next_offsets = rng.random((3, 5, 2)).astype(np.float32)
    semantic, heat, offsets = (
        np.asarray(x) for x in two_frame.build_canvas(pred_t, pred_t1, next_offsets)
    )
    assert semantic.shape == (3, 10, 3) and heat.shape == (3, 10) and offsets.shape == (3, 10, 2)
    np.testing.assert_array_equal(semantic[:, 5:], pred_t1[keys.PRED_SEMANTIC_LOGITS])
    np.testing.assert_array_equal(heat[:, 5:], 0)
    np.testing.assert_array_equal(offsets[:, :5], pred_t[keys.PRED_OFFSET_MAP])
    np.testing.assert_array_equal(offsets[..., 5:, 0], next_offsets[..., 0])
    np.testing.assert_allclose(offsets[..., 5:, 1], next_offsets[..., 1] - 5, rtol=0, atol=1e-6)


def test_two_frame_equals_numpy_reference_under_vmap(model_like):
    rng = np.random.default_rng(3)
    options = reference.with_options(
        thing_ids=(2, 3, 4),
        label_divisor=D,
        ignore_label=255,
        nms_kernel=5,
        keep_k_centers=12,
        stuff_area_limit=40,
    )
    pairs = []
    for _ in range(2):
        lt, ht, ot = model_like(rng, 16, 24, 6, 8, quantize=True)
        l1, h1, o1 = model_like(rng, 16, 24, 6, 8, quantize=True)
        nxt = (ot + np.round(rng.normal(0, 1, ot.shape)) / 2).astype(np.float32)
        pairs.append((_pred_raw(lt, ht, ot), _pred_raw(l1, h1, o1), nxt))
    batched = jax.tree.map(lambda *x: np.stack(x), *pairs)
    fn = jax.vmap(functools.partial(two_frame.two_frame_panoptic, **options))
    panoptic_t, concat_next = fn(*batched)
    for i, (pt, p1, nxt) in enumerate(pairs):
        canvas = [np.asarray(x) for x in two_frame.build_canvas(pt, p1, nxt)]
        expected = reference.panoptic_from_predictions(*canvas, **options)
        np.testing.assert_array_equal(panoptic_t[i], expected[:, :24])
        np.testing.assert_array_equal(concat_next[i], expected[:, 24:])


def _pred_raw(logits, heat, offsets):
    return {
        keys.PRED_SEMANTIC_LOGITS: logits,
        keys.PRED_CENTER_HEATMAP: heat,
        keys.PRED_OFFSET_MAP: offsets,
    }


# The 4x4 example of deeplab2's model/post_processor/vip_deeplab_test.py.
CONCAT = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 2, 2, 0], [2, 2, 3, 3]]) * D + np.array(
    [[1, 1, 2, 2], [1, 0, 0, 2], [1, 1, 1, 2], [2, 2, 1, 1]]
)
NEXT = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 2, 2, 0], [2, 2, 3, 3]]) * D + np.array(
    [[2, 0, 0, 1], [2, 0, 0, 1], [2, 4, 4, 1], [5, 5, 3, 3]]
)


def test_stitch_pair_deeplab2_example():
    # Segments (label: pixels). Concat: 1 = col 0 rows 0-2 + (0, 1) [4 px], 2 = col 3 rows
    # 0-2 + (0, 2) [4 px], 1000 stuff [2], 2001 = (2, 1), (2, 2), 2002 = (3, 0), (3, 1),
    # 3001 = (3, 2), (3, 3). Next: 2 = col 0 rows 0-2 [3 px], 1 = col 3 rows 0-2 [3 px],
    # 1000 stuff [4], 2004, 2005, 3003 [2 px each].
    # Same-class candidate pairs with both instances > 0 and their IoUs:
    #   concat 1 / next 2: 3 / (4 + 3 - 3) = 0.75     concat 2 / next 1: 0.75
    #   2001 / 2004: 1.0    2002 / 2005: 1.0    3001 / 3003: 1.0
    # (concat 1 / next 1 and concat 2 / next 2 do not intersect.) All are mutual best, so
    # every next segment takes its concat label; the stuff 1000 stays.
    expected = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 2, 2, 0], [2, 2, 3, 3]]) * D + np.array(
        [[1, 0, 0, 2], [1, 0, 0, 2], [1, 1, 1, 2], [2, 2, 1, 1]]
    )
    out = two_frame.stitch_pair(CONCAT, NEXT, label_divisor=D)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, expected)


def test_stitch_pair_unmatched_become_new_and_mutuality_required():
    # Concat person 1 covers 4 px; next has persons 1 (3 px inside it) and 2 (1 px inside).
    # IoUs: 3 / 4 and 1 / 4; concat 1's best is next 1 and next 1's best is concat 1: match.
    # Next 2's best is concat 1 too, but concat 1 prefers next 1: no match, so it becomes a
    # new instance 2 + 500. The car 2001 in next has no car in concat: 2001 + 500.
    concat = np.array([[1001, 1001, 1001, 1001, 0]])
    nxt = np.array([[1001, 1001, 1001, 1002, 2001]])
    expected = [[1001, 1001, 1001, 1502, 2501]]
    np.testing.assert_array_equal(two_frame.stitch_pair(concat, nxt, label_divisor=D), expected)


def test_stitch_pair_rejects_ids_that_would_overflow():
    nxt = np.array([[1600]])  # person 600 + 500 >= 1000
    with pytest.raises(ValueError, match="label_divisor"):
        two_frame.stitch_pair(nxt, nxt, label_divisor=D)
    with pytest.raises(ValueError, match="shape"):
        two_frame.stitch_pair(nxt, np.zeros((2, 2), int), label_divisor=D)
