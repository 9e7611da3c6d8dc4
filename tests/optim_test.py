"""Tests of vipdl.optim: the poly schedule against its numpy twin, and Adam's epsilon."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vipdl import optim


@pytest.mark.parametrize("end", [0.0, 1e-5])
def test_poly_schedule_matches_reference(end):
    schedule = optim.poly_schedule(2.5e-4, 100, power=0.9, end_learning_rate=end)
    steps = np.array([0, 1, 17, 50, 99, 100, 101, 1000])
    got = np.array([float(schedule(s)) for s in steps])
    want = optim.poly_schedule_reference(steps, 2.5e-4, 100, 0.9, end)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    # Hand check: at half-way the rate is base * 0.5 ** 0.9 (+ end), and constant after N.
    assert got[3] == pytest.approx((2.5e-4 - end) * 0.5**0.9 + end, rel=1e-5)
    assert got[-1] == pytest.approx(end, abs=1e-12)


def test_poly_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        optim.poly_schedule(1e-3, 0)
    with pytest.raises(ValueError, match="learning rates"):
        optim.poly_schedule(-1.0, 10)


def test_make_optimizer_is_adam_with_keras_epsilon():
    tx, schedule = optim.make_optimizer(learning_rate=1e-3, num_steps=10)
    reference = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-7)
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grads = {"w": jnp.array([1e-7, -1e-7, 0.5])}  # Tiny gradients expose eps.
    got, _ = tx.update(grads, tx.init(params), params)
    want, _ = reference.update(grads, reference.init(params), params)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)
    loose = optax.adam(schedule, eps=1e-8)
    other, _ = loose.update(grads, loose.init(params), params)
    assert not np.allclose(got["w"][:2], other["w"][:2], rtol=1e-3)
