"""Optimizer and learning-rate schedule of the deeplab2 recipes (docs/training.md#hyper-parameters).

deeplab2 trains with Keras Adam (beta1 0.9, beta2 0.999, eps 1e-7 — optax's default eps is 1e-8)
under a polynomial decay `lr(step) = (base - end) * (1 - min(step, N) / N) ** power + end`, with
no warm-up, no weight decay and no gradient clipping. Gradient accumulation is not an optimizer
wrapper here: `vipdl.trainer` splits the global batch into micro-batches inside one jitted step,
so one optimizer step always sees the whole global batch.
"""

from __future__ import annotations

import numpy as np
import optax


def poly_schedule(
    learning_rate: float, num_steps: int, *, power: float = 0.9, end_learning_rate: float = 0.0
) -> optax.Schedule:
    """Polynomial decay from `learning_rate` at step 0 to `end_learning_rate` at `num_steps`.

    Args:
      learning_rate: base learning rate (step 0).
      num_steps: decay length N; later steps keep `end_learning_rate`.
      power: decay exponent (0.9 in every deeplab2 config).
      end_learning_rate: value reached at step N.

    Returns:
      A function from the int step count (the optimizer iteration, starting at 0) to a float32
      scalar learning rate.
    """
    if num_steps <= 0:
        raise ValueError(f"optim: num_steps must be positive, got {num_steps}")
    if learning_rate < 0 or end_learning_rate < 0:
        raise ValueError(
            f"optim: learning rates must be >= 0, got {learning_rate} and {end_learning_rate}"
        )
    return optax.polynomial_schedule(
        init_value=learning_rate,
        end_value=end_learning_rate,
        power=power,
        transition_steps=num_steps,
    )


def poly_schedule_reference(
    step: np.ndarray, learning_rate: float, num_steps: int, power: float, end_learning_rate: float
) -> np.ndarray:
    """Numpy twin of `poly_schedule` (float64), written from the formula in docs/training.md#hyper-parameters."""
    frac = 1.0 - np.minimum(np.asarray(step, np.float64), num_steps) / num_steps
    return (learning_rate - end_learning_rate) * frac**power + end_learning_rate


def make_optimizer(
    *,
    learning_rate: float,
    num_steps: int,
    power: float = 0.9,
    end_learning_rate: float = 0.0,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps: float = 1e-7,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam under the poly schedule, as in deeplab2's trainer defaults.

    Returns:
      `(tx, schedule)`; the schedule is returned too so the trainer can log the learning rate of
      the step it just took.
    """
    schedule = poly_schedule(
        learning_rate, num_steps, power=power, end_learning_rate=end_learning_rate
    )
    tx = optax.adam(schedule, b1=adam_b1, b2=adam_b2, eps=adam_eps)
    return tx, schedule
