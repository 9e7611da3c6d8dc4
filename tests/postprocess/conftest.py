"""Shared fixtures of the post-processing tests: random model-like predictions."""

import numpy as np
import pytest


def make_model_like(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_classes: int,
    num_peaks: int,
    *,
    quantize: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Semantic logits, center heatmap and offsets that look like a trained model's.

    The heatmap is a max of Gaussian bumps (sigma 2) plus noise; offsets point to the nearest
    bump's rounded center plus Gaussian noise; logits are blob-like so classes form regions.
    With `quantize`, heatmap values are rounded to 0.05 and offsets to 0.5 px, which creates
    NMS plateaus, equal center scores and exact distance ties.

    Returns:
      float32 logits [h, w, c], heatmap [h, w], offsets [h, w, 2].
    """
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    cy = rng.uniform(0, height - 1, num_peaks)
    cx = rng.uniform(0, width - 1, num_peaks)
    dist2 = (ys[None] - cy[:, None, None]) ** 2 + (xs[None] - cx[:, None, None]) ** 2
    amplitude = rng.uniform(0.05, 1.0, num_peaks)[:, None, None]
    heat = (np.exp(-dist2 / (2 * 2.0**2)) * amplitude).max(axis=0, initial=0.0)
    heat = heat + rng.normal(0, 0.03, heat.shape)
    if num_peaks:
        nearest = dist2.argmin(axis=0)
        offsets = np.stack([np.round(cy)[nearest] - ys, np.round(cx)[nearest] - xs], axis=-1)
    else:
        offsets = np.zeros((height, width, 2))
    offsets = offsets + rng.normal(0, 1.0, offsets.shape)
    # Smooth class fields: each class scores a few random blobs.
    logits = rng.normal(0, 0.3, (height, width, num_classes))
    for c in range(num_classes):
        for _ in range(2):
            by, bx = rng.uniform(0, height), rng.uniform(0, width)
            scale = rng.uniform(2, max(3, height / 2))
            logits[..., c] += np.exp(-((ys - by) ** 2 + (xs - bx) ** 2) / (2 * scale**2)) * 3
    if quantize:
        heat = np.round(heat / 0.05) * 0.05
        offsets = np.round(offsets * 2) / 2
        logits = np.round(logits)  # ties in the semantic argmax too
    return logits.astype(np.float32), heat.astype(np.float32), offsets.astype(np.float32)


@pytest.fixture(scope="session")
def model_like():
    return make_model_like
