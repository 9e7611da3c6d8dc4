"""Losses against numpy references and hand-computed values (docs/training.md#losses, docs/architecture.md#known-answer-checks)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vipdl import keys, losses


def np_average_top_k(pixel: np.ndarray, top_k_percent: float) -> np.ndarray:
    """deeplab2 compute_average_top_k_loss, via a full sort."""
    flat = pixel.reshape(pixel.shape[0], -1).astype(np.float32)
    n = flat.shape[1]
    k = int(np.round(np.float32(top_k_percent) * np.float32(n)))
    out = []
    for row in flat:
        kept = np.sort(row)[::-1][:k] if top_k_percent < 1.0 else row
        nz = np.count_nonzero(kept)
        out.append(kept.sum(dtype=np.float64) / nz if nz else 0.0)
    return np.asarray(out, np.float32)


def np_cross_entropy(logits, labels, weights, ignore_label):
    logits = logits.astype(np.float64)
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    valid = (labels != ignore_label) & (labels >= 0) & (labels < logits.shape[-1])
    safe = np.where(valid, labels, 0)
    ce = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    return np.where(valid, ce * weights, 0.0)


def np_depth(pred, gt):
    out = []
    for p, g in zip(pred.reshape(len(pred), -1), gt.reshape(len(gt), -1)):
        v = g != 0
        if not v.any():
            out.append(np.nan)
            continue
        d = np.log(g[v].astype(np.float64)) - np.log(p[v])
        out.append(np.mean(d**2) - np.mean(d) ** 2 + np.sqrt(np.mean(((g[v] - p[v]) / g[v]) ** 2)))
    return np.asarray(out)


def test_spec_topk_uniform_loss_is_one():
    # docs/architecture.md#known-answer-checks: uniform per-pixel loss 1 on 10x10 with top-k 0.2 -> k = 20, normaliser 20 -> 1.0.
    got = losses.average_top_k_loss(jnp.ones((1, 10, 10)), 0.2)
    np.testing.assert_allclose(np.asarray(got), [1.0], rtol=0, atol=0)


def test_spec_half_zero_weights_mean_over_nonzero_half():
    # docs/architecture.md#known-answer-checks: weights 0 on half of the pixels and top-k 1 -> mean over the non-zero half.
    pixel = np.arange(1, 101, dtype=np.float32).reshape(1, 10, 10)
    weights = np.zeros((1, 10, 10), np.float32)
    weights[:, :5] = 1.0
    got = losses.weighted_mse(jnp.asarray(pixel), jnp.zeros_like(pixel), jnp.asarray(weights))
    expected = np.mean(np.square(pixel[:, :5]))
    np.testing.assert_allclose(np.asarray(got), [expected], rtol=1e-6)


def test_topk_counts_only_nonzero_kept_values():
    # 10 pixels, k = round(0.3 * 10) = 3: kept {5, 0, 0} -> 5 / 1 (zeros are not counted).
    pixel = jnp.asarray([[5.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_allclose(np.asarray(losses.average_top_k_loss(pixel, 0.3)), [5.0])
    # All zero -> 0, not NaN.
    np.testing.assert_array_equal(np.asarray(losses.average_top_k_loss(jnp.zeros((2, 7)), 0.5)), 0)


def test_topk_ties_at_threshold():
    # k = round(0.5 * 6) = 3; values 4, 2, 2, 2, 1, 0: kept 4, 2, 2 -> 8 / 3.
    pixel = jnp.asarray([[2.0, 4.0, 2.0, 1.0, 2.0, 0.0]])
    np.testing.assert_allclose(
        np.asarray(losses.average_top_k_loss(pixel, 0.5)), [8 / 3], rtol=1e-6
    )
    grad = jax.grad(lambda p: losses.average_top_k_loss(p, 0.5).sum())(pixel)
    # d/dx of sum/3: 1/3 for the 4; the two kept 2s share 2/3 evenly over three tied pixels.
    np.testing.assert_allclose(np.asarray(grad), [[2 / 9, 1 / 3, 2 / 9, 0, 2 / 9, 0]], rtol=1e-6)


@pytest.mark.parametrize("top_k", [0.2, 0.37, 1.0])
def test_topk_matches_sort_reference_random(top_k):
    rng = np.random.default_rng(0)
    pixel = rng.exponential(size=(3, 17, 23)).astype(np.float32)
    pixel[pixel < 0.5] = 0.0  # many exact zeros, like ignored pixels
    pixel[1] = 0.0
    pixel[2, :3] = 7.25  # ties across the threshold
    got = losses.average_top_k_loss(jnp.asarray(pixel), top_k)
    np.testing.assert_allclose(np.asarray(got), np_average_top_k(pixel, top_k), rtol=1e-5)


def test_kth_largest_handles_negative_and_special_values():
    x = np.asarray([[-3.0, -0.0, 0.0, 2.5, -1e-30, 1e30, 7.0]], np.float32)
    for k in range(1, x.shape[1] + 1):
        got = float(losses._kth_largest(jnp.asarray(x), k)[0])
        assert got == np.sort(x[0])[::-1][k - 1]


def test_cross_entropy_matches_reference_and_ignores():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 6, 9, 5)).astype(np.float32) * 3
    labels = rng.integers(0, 5, size=(2, 6, 9)).astype(np.int32)
    labels[0, :2] = 32  # ignore label (out of range, as Cityscapes-DVPS)
    weights = np.where(rng.random((2, 6, 9)) < 0.3, 3.0, 1.0).astype(np.float32)
    for top_k in (0.2, 1.0):
        got = losses.top_k_cross_entropy(
            jnp.asarray(logits),
            jnp.asarray(labels),
            jnp.asarray(weights),
            ignore_label=32,
            top_k_percent=top_k,
        )
        ref = np_average_top_k(np_cross_entropy(logits, labels, weights, 32), top_k)
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5)


def test_cross_entropy_hand_value():
    # Two classes, logits (0, 0): CE = log 2 on every valid pixel; one pixel ignored; weight 3
    # on one pixel. top-k 1: sum = log2 * (1 + 3 + 1) over 3 non-zero -> 5/3 log 2.
    logits = jnp.zeros((1, 1, 4, 2))
    labels = jnp.asarray([[[0, 1, 255, 1]]], jnp.int32)
    weights = jnp.asarray([[[1.0, 3.0, 1.0, 1.0]]])
    got = losses.top_k_cross_entropy(logits, labels, weights, ignore_label=255, top_k_percent=1.0)
    np.testing.assert_allclose(np.asarray(got), [5 / 3 * np.log(2)], rtol=1e-6)


def test_l1_averages_the_two_channels():
    pred = jnp.zeros((1, 1, 2, 2))
    target = jnp.asarray([[[[3.0, 1.0], [0.0, 0.0]]]])
    weights = jnp.asarray([[[1.0, 1.0]]])
    # Pixel 0: (3 + 1) / 2 = 2; pixel 1: 0 (not counted) -> 2.
    np.testing.assert_allclose(np.asarray(losses.weighted_l1(pred, target, weights)), [2.0])


def test_depth_loss_matches_reference_and_nan_rule():
    rng = np.random.default_rng(2)
    gt = rng.uniform(1, 80, size=(3, 5, 7)).astype(np.float32)
    gt[gt < 20] = 0.0
    gt[2] = 0.0  # no valid depth -> NaN
    pred = rng.uniform(1, 80, size=(3, 5, 7)).astype(np.float32)
    got = np.asarray(losses.depth_loss(jnp.asarray(pred), jnp.asarray(gt)))
    np.testing.assert_allclose(got, np_depth(pred, gt), rtol=1e-4)
    assert np.isnan(got[2])
    # Hand value: gt 2, pred 1 on one pixel -> silog 0 (single pixel), rel sqrt(0.25) = 0.5.
    one = losses.depth_loss(jnp.ones((1, 1, 1)), jnp.full((1, 1, 1), 2.0))
    np.testing.assert_allclose(np.asarray(one), [0.5], rtol=1e-6)
    # The batch mean is NaN -> 0, with finite (zero) gradients.
    term = lambda p: losses.batch_mean_nan_to_zero(losses.depth_loss(p, jnp.asarray(gt)))
    assert float(term(jnp.asarray(pred))) == 0.0
    grad = jax.grad(term)(jnp.asarray(pred))
    assert np.all(np.asarray(grad) == 0)
    # Without the empty sample the term is finite and so is its gradient.
    valid_term = lambda p: losses.batch_mean_nan_to_zero(losses.depth_loss(p, jnp.asarray(gt[:2])))
    grad_ok = np.asarray(jax.grad(valid_term)(jnp.asarray(pred[:2])))
    assert np.isfinite(grad_ok).all() and np.abs(grad_ok).sum() > 0


def _batch(b=2, h=6, w=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        keys.GT_SEMANTIC: rng.integers(0, 4, (b, h, w)).astype(np.int32),
        keys.GT_SEMANTIC_WEIGHTS: np.ones((b, h, w), np.float32),
        keys.GT_CENTER_HEATMAP: rng.random((b, h, w)).astype(np.float32),
        keys.GT_CENTER_WEIGHTS: np.ones((b, h, w), np.float32),
        keys.GT_OFFSET: rng.normal(size=(b, h, w, 2)).astype(np.float32),
        keys.GT_OFFSET_WEIGHTS: (rng.random((b, h, w)) < 0.5).astype(np.float32),
        keys.GT_NEXT_OFFSET: rng.normal(size=(b, h, w, 2)).astype(np.float32),
        keys.GT_NEXT_OFFSET_WEIGHTS: (rng.random((b, h, w)) < 0.5).astype(np.float32),
        keys.GT_DEPTH: rng.uniform(0, 10, (b, h, w)).astype(np.float32),
    }


def _predictions(b=2, h=6, w=8, seed=1):
    rng = np.random.default_rng(seed)
    return {
        keys.PRED_SEMANTIC_LOGITS: rng.normal(size=(b, h, w, 4)).astype(np.float32),
        keys.PRED_CENTER_HEATMAP: rng.random((b, h, w)).astype(np.float32),
        keys.PRED_OFFSET_MAP: rng.normal(size=(b, h, w, 2)).astype(np.float32),
        keys.PRED_NEXT_OFFSET_MAP: rng.normal(size=(b, h, w, 2)).astype(np.float32),
        keys.PRED_DEPTH: rng.uniform(1, 10, (b, h, w)).astype(np.float32),
    }


def test_compute_losses_weights_terms_and_total():
    batch, preds = _batch(), _predictions()
    total, terms = losses.compute_losses(preds, batch, ignore_label=255)
    assert set(terms) == {
        keys.LOSS_SEMANTIC,
        keys.LOSS_CENTER,
        keys.LOSS_OFFSET,
        keys.LOSS_NEXT_OFFSET,
        keys.LOSS_DEPTH,
    }
    assert all(v.shape == (2,) for v in terms.values())
    sem = np_average_top_k(
        np_cross_entropy(
            preds[keys.PRED_SEMANTIC_LOGITS],
            batch[keys.GT_SEMANTIC],
            batch[keys.GT_SEMANTIC_WEIGHTS],
            255,
        ),
        0.2,
    )
    center = np_average_top_k(
        (preds[keys.PRED_CENTER_HEATMAP] - batch[keys.GT_CENTER_HEATMAP]) ** 2, 1.0
    )
    offset = np_average_top_k(
        np.abs(preds[keys.PRED_OFFSET_MAP] - batch[keys.GT_OFFSET]).mean(-1)
        * batch[keys.GT_OFFSET_WEIGHTS],
        1.0,
    )
    np.testing.assert_allclose(np.asarray(terms[keys.LOSS_SEMANTIC]), sem, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(terms[keys.LOSS_CENTER]), 200 * center, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(terms[keys.LOSS_OFFSET]), 0.01 * offset, rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(terms[keys.LOSS_DEPTH]),
        0.1 * np_depth(preds[keys.PRED_DEPTH], batch[keys.GT_DEPTH]),
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        np.asarray(total), np.sum([np.asarray(v) for v in terms.values()], 0), rtol=1e-6
    )

    scalar, reduced = losses.reduce_losses(terms)
    np.testing.assert_allclose(float(scalar), float(np.asarray(total).mean()), rtol=1e-5)
    assert keys.LOSS_TOTAL in reduced


def test_compute_losses_optional_terms_absent():
    batch, preds = _batch(), _predictions()
    del preds[keys.PRED_NEXT_OFFSET_MAP], batch[keys.GT_DEPTH]
    _, terms = losses.compute_losses(preds, batch, ignore_label=255)
    assert keys.LOSS_NEXT_OFFSET not in terms and keys.LOSS_DEPTH not in terms


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="weighted_l1"):
        losses.weighted_l1(jnp.zeros((1, 2, 2, 2)), jnp.zeros((1, 2, 2, 2)), jnp.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="top_k_percent"):
        losses.average_top_k_loss(jnp.zeros((1, 4)), 0.0)
