"""ViP-DeepLab training losses, per example (docs/training.md#losses, deeplab2 `model/loss`).

Every term is reduced per sample with deeplab2's `compute_average_top_k_loss`: keep the
`round(top_k_percent * H * W)` largest weighted pixel losses (ignored pixels, whose loss is 0,
are candidates too) and divide their sum by the number of *non-zero* kept values (0 if none).
Nothing is gathered across the batch, so the functions run unchanged on a sharded batch.

Batch reduction (the trainer's job): each term is averaged over the batch and a NaN mean is
replaced by 0 (e.g. the depth term of a batch whose samples have no valid depth). That rule is
implemented by `batch_mean_nan_to_zero` / `reduce_losses` here, not inside `compute_losses`.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vipdl import keys


def _num_kept(num_elements: int, top_k_percent: float) -> int:
    if not 0.0 < top_k_percent <= 1.0:
        raise ValueError(f"top_k_percent must be in (0, 1], got {top_k_percent}")
    # deeplab2 rounds in float32 with round-half-to-even (tf.math.round).
    return int(np.round(np.float32(top_k_percent) * np.float32(num_elements)))


def _kth_largest(x: jax.Array, k: int) -> jax.Array:
    """Exact k-th largest value of each row of `x` `[b, n]` float32 -> `[b]`.

    Bisection over the order-preserving uint32 image of the float32 bit patterns: 32 passes of
    compare-and-count, no sort and no `top_k` with a huge k (both slow on TPU for k ~ 1e5).
    """
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    sign = bits >> 31
    # Negative floats: flip all bits; non-negative: set the sign bit. Monotone in the value.
    key = jnp.where(sign == 1, ~bits, bits | jnp.uint32(0x80000000))
    b = x.shape[0]
    lo = jnp.zeros((b,), jnp.uint32)
    hi = jnp.full((b,), 0xFFFFFFFF, jnp.uint32)

    def body(_, bounds):
        lo, hi = bounds
        diff = hi - lo
        mid = lo + (diff >> 1) + (diff & 1)  # ceil midpoint without uint32 overflow
        enough = jnp.sum(key >= mid[:, None], axis=1) >= k
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid - 1)

    lo, _ = jax.lax.fori_loop(0, 32, body, (lo, hi))
    # Invert the key mapping back to a float.
    bits = jnp.where(lo >> 31 == 1, lo & jnp.uint32(0x7FFFFFFF), ~lo)
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def average_top_k_loss(pixel_losses: jax.Array, top_k_percent: float = 1.0) -> jax.Array:
    """deeplab2 `compute_average_top_k_loss`: `[b, ...]` weighted pixel losses -> `[b]`.

    Returns `sum(kept) / count(kept != 0)` per sample, 0 when no kept value is non-zero.
    Ties at the k-th value contribute their exact share of the sum; the gradient is spread
    evenly over tied pixels instead of going to an arbitrary subset of them.
    """
    b = pixel_losses.shape[0]
    x = pixel_losses.reshape(b, -1).astype(jnp.float32)
    n = x.shape[1]
    k = _num_kept(n, top_k_percent)
    if k == 0:
        return jnp.zeros((b,), jnp.float32)
    if k >= n:
        total = jnp.sum(x, axis=1)
        count = jnp.sum(x != 0, axis=1).astype(jnp.float32)
    else:
        t = jax.lax.stop_gradient(_kth_largest(x, k))[:, None]
        above = x > t
        tied = x == t
        n_above = jnp.sum(above, axis=1, keepdims=True).astype(jnp.float32)
        n_tied = jnp.sum(tied, axis=1, keepdims=True).astype(jnp.float32)
        # k - n_above of the tied values are kept; weight every tie by that fraction.
        tie_weight = (k - n_above) / jnp.maximum(n_tied, 1.0)
        weight = jnp.where(above, 1.0, jnp.where(tied, tie_weight, 0.0))
        total = jnp.sum(x * weight, axis=1)
        count = jnp.sum(jnp.where(x != 0, weight, 0.0), axis=1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1e-12), 0.0)


def top_k_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    ignore_label: int,
    top_k_percent: float = 0.2,
) -> jax.Array:
    """Bootstrapped softmax cross-entropy per example.

    Args:
        logits: float `[b, h, w, num_classes]` (computed in float32).
        labels: int `[b, h, w]`; `ignore_label` (or any value outside `[0, num_classes)`)
            contributes 0 loss and 0 weight, like deeplab2's all-zero one-hot.
        weights: float32 `[b, h, w]` pixel weights (e.g. 3 for small instances).
        top_k_percent: fraction of pixels kept per sample (hardest first).

    Returns:
        float32 `[b]`.
    """
    if logits.shape[:3] != labels.shape or labels.shape != weights.shape:
        raise ValueError(
            f"top_k_cross_entropy: logits {logits.shape}, labels {labels.shape} and weights "
            f"{weights.shape} must agree on [batch, height, width]"
        )
    logits = logits.astype(jnp.float32)
    num_classes = logits.shape[-1]
    valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
    safe = jnp.where(valid, labels, 0)
    picked = jnp.take_along_axis(logits, safe[..., None], axis=-1)[..., 0]
    # Written as (max - picked) + log(sum exp) so the loss is never negative from rounding.
    peak = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
    lse = jnp.log(jnp.sum(jnp.exp(logits - peak[..., None]), axis=-1))
    pixel = (peak - picked) + lse
    pixel = jnp.where(valid, pixel * weights.astype(jnp.float32), 0.0)
    return average_top_k_loss(pixel, top_k_percent)


def weighted_mse(
    prediction: jax.Array, target: jax.Array, weights: jax.Array, *, top_k_percent: float = 1.0
) -> jax.Array:
    """Center-heatmap loss: `(pred - gt)^2 * w` reduced per example. `[b, h, w]` -> `[b]`."""
    if prediction.shape != target.shape or prediction.shape != weights.shape:
        raise ValueError(
            f"weighted_mse: prediction {prediction.shape}, target {target.shape} and weights "
            f"{weights.shape} must have the same [batch, height, width] shape"
        )
    pixel = jnp.square(prediction.astype(jnp.float32) - target.astype(jnp.float32))
    return average_top_k_loss(pixel * weights.astype(jnp.float32), top_k_percent)


def weighted_l1(
    prediction: jax.Array, target: jax.Array, weights: jax.Array, *, top_k_percent: float = 1.0
) -> jax.Array:
    """Offset loss: `(|dy| + |dx|) / 2 * w` (mean over the 2 channels) reduced per example.

    `prediction`, `target` `[b, h, w, 2]`, `weights` `[b, h, w]` -> `[b]`.
    """
    if prediction.shape != target.shape or prediction.shape[:3] != weights.shape:
        raise ValueError(
            f"weighted_l1: prediction {prediction.shape}, target {target.shape} [b, h, w, 2] and "
            f"weights {weights.shape} [b, h, w] do not match"
        )
    pixel = jnp.mean(jnp.abs(prediction.astype(jnp.float32) - target.astype(jnp.float32)), -1)
    return average_top_k_loss(pixel * weights.astype(jnp.float32), top_k_percent)


def depth_loss(prediction: jax.Array, target: jax.Array, *, ignore_depth: float = 0.0) -> jax.Array:
    """SILog + relative squared error per example, over pixels with `target != ignore_depth`.

    `L = mean(d^2) - mean(d)^2 + sqrt(mean(((gt - pred) / gt)^2))` with `d = log gt - log pred`
    (no sqrt on the SILog part, no lambda, no x100). `[b, h, w]` metres -> `[b]`.
    A sample without valid pixels gives NaN, as in deeplab2; `batch_mean_nan_to_zero` zeroes
    that term for the batch. The NaN is selected, not computed, so gradients stay finite.
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"depth_loss: prediction {prediction.shape} and target {target.shape} differ"
        )
    b = prediction.shape[0]
    pred = prediction.reshape(b, -1).astype(jnp.float32)
    gt = target.reshape(b, -1).astype(jnp.float32)
    valid = gt != ignore_depth
    count = jnp.sum(valid, axis=1).astype(jnp.float32)
    safe_gt = jnp.where(valid, gt, 1.0)
    safe_pred = jnp.where(valid, pred, 1.0)
    d = jnp.where(valid, jnp.log(safe_gt) - jnp.log(safe_pred), 0.0)
    n = jnp.maximum(count, 1.0)
    mean_d = jnp.sum(d, axis=1) / n
    silog = jnp.sum(jnp.square(d), axis=1) / n - jnp.square(mean_d)
    rel = jnp.where(valid, jnp.square((safe_gt - safe_pred) / safe_gt), 0.0)
    rel_mean = jnp.sum(rel, axis=1) / n
    # sqrt'(0) is infinite; keep the argument positive for the gradient of a perfect prediction.
    rel_sqrt = jnp.where(rel_mean > 0, jnp.sqrt(jnp.maximum(rel_mean, 1e-30)), 0.0)
    return jnp.where(count > 0, silog + rel_sqrt, jnp.nan)


def compute_losses(
    predictions: Mapping[str, jax.Array],
    batch: Mapping[str, jax.Array],
    *,
    semantic_weight: float = 1.0,
    top_k_percent: float = 0.2,
    center_weight: float = 200.0,
    offset_weight: float = 0.01,
    next_offset_weight: float = 0.01,
    depth_weight: float = 0.1,
    ignore_label: int,
    ignore_depth: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """All ViP-DeepLab loss terms, per example.

    Args:
        predictions: model outputs keyed by `keys.PRED_*` (input resolution).
        batch: targets keyed by `keys.GT_*` (see docs/architecture.md, training batch).
        *_weight: loss weights of docs/training.md#losses; `top_k_percent` applies to the semantic term only.
        ignore_label: semantic label excluded from the cross-entropy.
        ignore_depth: depth value meaning "no ground truth".

    Returns:
        `(total, terms)`: `total` float32 `[b]` is the sum of the weighted terms; `terms` maps
        `keys.LOSS_SEMANTIC`, `LOSS_CENTER`, `LOSS_OFFSET` and -- when both the prediction and
        the target are present -- `LOSS_NEXT_OFFSET`, `LOSS_DEPTH` to weighted `[b]` vectors
        (deeplab2 reports weighted terms). `total` is NaN for a sample whose depth term is NaN;
        reduce over the batch with `reduce_losses(terms)`, which applies the NaN-to-zero rule
        per term.
    """
    terms = {
        keys.LOSS_SEMANTIC: semantic_weight
        * top_k_cross_entropy(
            predictions[keys.PRED_SEMANTIC_LOGITS],
            batch[keys.GT_SEMANTIC],
            batch[keys.GT_SEMANTIC_WEIGHTS],
            ignore_label=ignore_label,
            top_k_percent=top_k_percent,
        ),
        keys.LOSS_CENTER: center_weight
        * weighted_mse(
            predictions[keys.PRED_CENTER_HEATMAP],
            batch[keys.GT_CENTER_HEATMAP],
            batch[keys.GT_CENTER_WEIGHTS],
        ),
        keys.LOSS_OFFSET: offset_weight
        * weighted_l1(
            predictions[keys.PRED_OFFSET_MAP], batch[keys.GT_OFFSET], batch[keys.GT_OFFSET_WEIGHTS]
        ),
    }
    if keys.PRED_NEXT_OFFSET_MAP in predictions and keys.GT_NEXT_OFFSET in batch:
        terms[keys.LOSS_NEXT_OFFSET] = next_offset_weight * weighted_l1(
            predictions[keys.PRED_NEXT_OFFSET_MAP],
            batch[keys.GT_NEXT_OFFSET],
            batch[keys.GT_NEXT_OFFSET_WEIGHTS],
        )
    if keys.PRED_DEPTH in predictions and keys.GT_DEPTH in batch:
        terms[keys.LOSS_DEPTH] = depth_weight * depth_loss(
            predictions[keys.PRED_DEPTH], batch[keys.GT_DEPTH], ignore_depth=ignore_depth
        )
    total = sum(terms.values())
    return total, terms


def batch_mean_nan_to_zero(per_example: jax.Array) -> jax.Array:
    """Mean of a `[b]` loss term over the batch, with a NaN mean replaced by 0 (docs/training.md#losses).

    Differentiable: when the mean is NaN the zero branch is selected and every example's
    cotangent is 0 (the NaNs are never multiplied into a gradient if the per-example values were
    produced with `jnp.where`, as `depth_loss` does).
    """
    mean = jnp.mean(per_example.astype(jnp.float32))
    return jnp.where(jnp.isnan(mean), 0.0, mean)


def reduce_losses(terms: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Batch reduction of deeplab2's trainer: per-term NaN-safe mean, then the sum.

    Returns `(total scalar, {name: scalar})`, the total also under `keys.LOSS_TOTAL`.
    Under `jit` with a sharded batch the means are global means (one jit over the global batch),
    which equals the reference's per-replica mean / num_replicas with summed gradients except
    that a NaN is zeroed for the global batch rather than per replica.
    """
    reduced = {name: batch_mean_nan_to_zero(value) for name, value in terms.items()}
    total = sum(reduced.values())
    reduced[keys.LOSS_TOTAL] = total
    return total, reduced
