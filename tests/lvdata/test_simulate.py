"""The simulator: exact solutions, determinism, and the character of the real data."""

from __future__ import annotations

import numpy as np
import pytest

from lvdata import LVParams, lv_rhs, sample_params, simulate, simulate_system, simulate_systems
from lvdata.simulate import INITIAL_RANGE, PARAM_RANGES

PARAMS = LVParams(prey_growth=0.2, predation=0.3, predator_death=0.1, conversion=0.08, carrying_capacity=20.0)


def test_prey_alone_follows_the_logistic_curve():
    time = np.linspace(0.0, 200.0, 100)
    x0, a, k = 0.9, PARAMS.prey_growth, PARAMS.carrying_capacity
    logistic = k / (1.0 + (k / x0 - 1.0) * np.exp(-a * time))
    result = simulate_system(PARAMS, np.array([x0, 0.0]), time)
    np.testing.assert_allclose(result[:, 0], logistic, rtol=1e-7)
    assert np.all(result[:, 1] == 0.0)


def test_coexistence_equilibrium_stays_put():
    p = PARAMS
    prey = p.predator_death / p.conversion
    predator = p.prey_growth / p.predation * (1.0 - prey / p.carrying_capacity)
    np.testing.assert_allclose(lv_rhs(0.0, np.array([prey, predator]), p), 0.0, atol=1e-15)
    result = simulate_system(p, np.array([prey, predator]), np.linspace(0.0, 200.0, 50))
    np.testing.assert_allclose(result, np.tile([prey, predator], (50, 1)), rtol=1e-8)


def test_lv_rhs_signs_follow_the_model():
    growth_only = lv_rhs(0.0, np.array([1.0, 0.0]), PARAMS)  # no predators: prey grows, predators stay 0
    assert growth_only[0] > 0 and growth_only[1] == 0
    starving = lv_rhs(0.0, np.array([0.0, 1.0]), PARAMS)  # no prey: predators die at rate c
    np.testing.assert_allclose(starving, [0.0, -PARAMS.predator_death])


def test_batched_integration_agrees_with_one_system_at_a_time():
    rng = np.random.default_rng(5)
    params = sample_params(25, rng)
    initial = rng.uniform(*INITIAL_RANGE, size=(25, 2))
    time = np.linspace(0.0, 200.0, 100)
    batch = simulate_systems(params, initial, time)  # (25, 100, 2)
    one_by_one = np.stack([simulate_system(p, x0, time) for p, x0 in zip(params, initial)])
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-6, atol=1e-10)


def test_simulate_is_deterministic_for_a_seed_and_varies_with_it():
    first, time = simulate(n_systems=8, n_steps=30, seed=3)
    again, _ = simulate(n_systems=8, n_steps=30, seed=3)
    other, _ = simulate(n_systems=8, n_steps=30, seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.shape == (8, 30, 2) and first.dtype == np.float32
    np.testing.assert_allclose(time, np.linspace(0.0, 200.0, 30))


def test_simulated_data_has_the_character_of_the_real_data():
    trajectories, time = simulate(n_systems=1000, n_steps=100, seed=0)
    prey, predator = trajectories[..., 0], trajectories[..., 1]
    assert time[0] == 0.0 and time[-1] == 200.0
    assert np.all(trajectories > 0) and np.all(np.isfinite(trajectories))
    assert np.all((trajectories[:, 0] >= 0.8) & (trajectories[:, 0] <= 1.2))  # initial populations ~1
    assert 0.7 < np.median(prey) < 2.0 and 0.3 < np.median(predator) < 1.0  # real: 1.31, 0.52
    assert 2.5 < np.percentile(prey, 95) < 7.0 and np.percentile(predator, 95) < 2.5  # real: 4.6, 1.2
    assert prey.max() < 40.0 and predator.max() < 10.0  # real: 13.7, 4.8
    early, late = trajectories[:, :30].std(axis=1), trajectories[:, -30:].std(axis=1)
    assert np.mean(late < early) > 0.6  # most oscillations damp


def test_sample_params_stay_in_the_documented_ranges():
    params = sample_params(500, np.random.default_rng(0))
    values = np.array([[getattr(p, name) for name in PARAM_RANGES] for p in params])  # (500, 5)
    low, high = np.array(list(PARAM_RANGES.values())).T
    assert np.all(values >= low) and np.all(values <= high)
    assert np.all(values.min(axis=0) < low + 0.1 * (high - low))  # the ranges are actually used


@pytest.mark.parametrize("field", list(PARAM_RANGES))
def test_lvparams_reject_non_positive_values(field):
    values = dict(prey_growth=0.2, predation=0.3, predator_death=0.1, conversion=0.08, carrying_capacity=20.0)
    values[field] = 0.0
    with pytest.raises(ValueError, match=f"LVParams.{field} must be a positive"):
        LVParams(**values)


def test_simulate_system_rejects_bad_inputs():
    with pytest.raises(ValueError, match="initial must be two non-negative"):
        simulate_system(PARAMS, np.array([1.0, -1.0]), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="strictly increasing"):
        simulate_system(PARAMS, np.array([1.0, 1.0]), np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"initial must be \(2, 2\) non-negative"):
        simulate_systems([PARAMS, PARAMS], np.ones((3, 2)), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="n_systems >= 1"):
        simulate(n_systems=0)
