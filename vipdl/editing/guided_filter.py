"""The colour guided filter (He, Sun and Tang, ECCV 2010 / TPAMI 2013) in jnp.

For an input map p (a segment's soft score) and a colour guide image I, the guided filter fits,
in every (2r + 1) x (2r + 1) window, the linear model q = a . I + b that best reproduces p
(ridge regression with regulariser `eps`), and averages the models of all windows covering a
pixel. Where p changes across an edge of I, q follows the edge of I; where I is flat, q is a
smoothed p. Fitted on a coarse grid and applied with the fine image, the same coefficients
upsample p along the edges of the fine image (the "fast guided filter", He and Sun 2015): only
the final `q = mean_a . I + mean_b` runs at full resolution. See docs/editing.md#upsampling.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _box_sum(x: jax.Array, r: int, axis: int) -> jax.Array:
    window = [1] * x.ndim
    window[axis] = 2 * r + 1
    padding = [(0, 0)] * x.ndim
    padding[axis] = (r, r)
    return lax.reduce_window(x, 0.0, lax.add, tuple(window), (1,) * x.ndim, padding)


def _window_counts(n: int, r: int) -> jax.Array:
    i = jnp.arange(n)
    return (jnp.minimum(i + r, n - 1) - jnp.maximum(i - r, 0) + 1).astype(jnp.float32)


def box_mean(x: jax.Array, r: int, axes: tuple[int, int] = (0, 1)) -> jax.Array:
    """Mean over the (2r + 1)^2 window around each pixel, cut at the borders.

    Each window is summed on its own (no running sums), so a pixel's value does not depend on
    where the array starts: filtering a crop gives the same numbers as filtering the whole.

    Args:
      x: float array; `axes` are the (height, width) axes.
      r: radius in pixels (0 = identity).
    """
    if r == 0:
        return x
    ay, ax = axes
    out = _box_sum(_box_sum(x, r, ay), r, ax)
    shape = [1] * x.ndim
    shape[ay] = x.shape[ay]
    cy = _window_counts(x.shape[ay], r).reshape(shape)
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    cx = _window_counts(x.shape[ax], r).reshape(shape)
    return out / (cy * cx)


def guide_statistics(guide: jax.Array, r: int, eps: float) -> tuple[jax.Array, jax.Array]:
    """Per-pixel window statistics of the guide, shared by all filtered maps.

    Args:
      guide: float32 [h, w, 3] colour image in [0, 1].
      r: window radius.
      eps: ridge regulariser added to the colour covariance.

    Returns:
      (mean float32 [h, w, 3], inverse regularised covariance float32 [h, w, 6] as the
      symmetric entries (00, 01, 02, 11, 12, 22)).
    """
    mean = box_mean(guide, r)
    i = (0, 0, 0, 1, 1, 2)
    j = (0, 1, 2, 1, 2, 2)
    prods = jnp.stack([guide[..., a] * guide[..., b] for a, b in zip(i, j)], -1)
    cov = box_mean(prods, r) - jnp.stack([mean[..., a] * mean[..., b] for a, b in zip(i, j)], -1)
    cov = cov + eps * jnp.asarray([1, 0, 0, 1, 0, 1], jnp.float32)
    a, b, c, d, e, f = (cov[..., k] for k in range(6))
    inv_00, inv_01, inv_02 = d * f - e * e, c * e - b * f, b * e - c * d
    inv_11, inv_12, inv_22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * inv_00 + b * inv_01 + c * inv_02
    inv = jnp.stack([inv_00, inv_01, inv_02, inv_11, inv_12, inv_22], -1) / det[..., None]
    return mean, inv


def guided_coefficients(
    guide: jax.Array, mean_i: jax.Array, inv_cov: jax.Array, p: jax.Array, r: int
) -> tuple[jax.Array, jax.Array]:
    """Window-averaged linear coefficients of one filtered map.

    Args:
      guide: float32 [h, w, 3].
      mean_i, inv_cov: `guide_statistics(guide, r, eps)`.
      p: float32 [h, w], the map to filter.
      r: window radius.

    Returns:
      (mean_a float32 [h, w, 3], mean_b float32 [h, w]); the filtered map is
      `sum(mean_a * guide, -1) + mean_b`, at any resolution the coefficients are resampled to.
    """
    mean_p = box_mean(p, r)
    cov_ip = box_mean(guide * p[..., None], r) - mean_i * mean_p[..., None]
    m00, m01, m02, m11, m12, m22 = (inv_cov[..., k] for k in range(6))
    c0, c1, c2 = cov_ip[..., 0], cov_ip[..., 1], cov_ip[..., 2]
    a = jnp.stack(
        [m00 * c0 + m01 * c1 + m02 * c2, m01 * c0 + m11 * c1 + m12 * c2,
         m02 * c0 + m12 * c1 + m22 * c2], -1)
    b = mean_p - jnp.sum(a * mean_i, -1)
    return box_mean(a, r), box_mean(b, r)


def guided_filter(guide: jax.Array, p: jax.Array, r: int, eps: float) -> jax.Array:
    """The colour guided filter at one resolution: float32 [h, w] from guide [h, w, 3], p [h, w]."""
    mean_i, inv = guide_statistics(guide, r, eps)
    a, b = guided_coefficients(guide, mean_i, inv, p, r)
    return jnp.sum(a * guide, -1) + b
