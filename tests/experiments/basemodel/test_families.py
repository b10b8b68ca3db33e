"""The base's pretraining families: general sequences, never the task's dynamics."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.basemodel.families import (
    FAMILIES,
    far_parameters,
    general_sequences,
    lotka_volterra_far,
    rk4,
    shift_positive,
)
from lvdata.simulate import PARAM_RANGES

TIME = np.linspace(0.0, 200.0, 100)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_gives_finite_non_negative_sequences_that_move(name):
    values = FAMILIES[name](np.random.default_rng(7), 64, TIME)
    assert values.shape == (64, 100, 2) and np.isfinite(values).all() and (values >= 0).all()
    spread = values.max(axis=1) - values.min(axis=1)  # (64, 2)
    assert np.median(spread) > 0.05 * np.median(values)  # not flat lines


def test_the_families_are_mixed_in_turn_and_reproducible():
    first, family = general_sequences(40, seed=3, time=TIME)
    again, _ = general_sequences(40, seed=3, time=TIME)
    other, _ = general_sequences(40, seed=3, time=TIME, stream=1)
    assert first.dtype == np.float32 and np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.array_equal(family, np.arange(40) % len(FAMILIES))


def test_rk4_matches_the_exact_solution_of_a_harmonic_oscillator():
    omega = np.array([0.1, 0.5])
    path = rk4(lambda s: np.stack([s[:, 1], -(omega**2) * s[:, 0]], axis=1),
               np.stack([np.ones(2), np.zeros(2)], axis=1), TIME)
    assert np.allclose(path[:, :, 0], np.cos(omega[:, None] * TIME), atol=1e-6)


def test_shift_positive_keeps_the_shape_and_moves_the_minimum_above_zero():
    x = np.random.default_rng(0).normal(size=(8, 50, 2)) - 5
    shifted = shift_positive(x, np.random.default_rng(1))
    assert (shifted > 0).all() and np.allclose(np.diff(shifted, axis=1), np.diff(x, axis=1))


def test_lotka_volterra_is_only_far_outside_the_real_ranges():
    """The base must not already know the real systems: every parameter of every far system is
    1.5-4x above the real range or 0.1-0.5x below it, and both sides occur."""
    params = far_parameters(np.random.default_rng(5), 2000)  # (2000, 5)
    low, high = np.array(list(PARAM_RANGES.values())).T
    above, below = params >= 1.5 * high, params <= 0.5 * low
    assert (above | below).all() and above.any(axis=0).all() and below.any(axis=0).all()
    assert (params <= 4 * high).all() and (params >= 0.1 * low).all()
    values = lotka_volterra_far(np.random.default_rng(5), 6, TIME)
    assert values.shape == (6, 100, 2) and np.isfinite(values).all() and (values >= 0).all()
