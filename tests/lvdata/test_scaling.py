"""The two α rules and the Scaler record."""

from __future__ import annotations

import numpy as np
import pytest

from lvdata import Scaler, fit_global_alpha, per_trajectory_alpha


def test_per_trajectory_alpha_is_the_larger_species_p95_over_ten():
    constant = np.stack([np.full(20, 20.0), np.full(20, 5.0)], axis=-1)  # prey dominates: alpha 2
    predator_heavy = np.stack([np.full(20, 1.0), np.full(20, 30.0)], axis=-1)  # predator: alpha 3
    np.testing.assert_allclose(per_trajectory_alpha(np.stack([constant, predator_heavy])), [2.0, 3.0])


def test_per_trajectory_alpha_ignores_the_top_five_percent():
    prey = np.ones(100)
    prey[-3:] = 1000.0  # 3% outliers are above the 95th percentile
    trajectory = np.stack([prey, np.ones(100)], axis=-1)[None]
    np.testing.assert_allclose(per_trajectory_alpha(trajectory), [0.1])


def test_scaled_p95_is_ten_under_each_rule():
    rng = np.random.default_rng(0)
    trajectories = rng.lognormal(0.0, 1.0, size=(50, 100, 2))
    scaled = trajectories / per_trajectory_alpha(trajectories)[:, None, None]
    np.testing.assert_allclose(np.percentile(scaled, 95, axis=1).max(axis=1), 10.0)
    global_scaled = trajectories / fit_global_alpha(trajectories)
    np.testing.assert_allclose(np.percentile(global_scaled.reshape(-1, 2), 95, axis=0).max(), 10.0)


def test_global_alpha_depends_only_on_the_training_split():
    rng = np.random.default_rng(1)
    trajectories = rng.uniform(0.0, 5.0, size=(10, 30, 2))
    train = np.array([0, 2, 4, 6])
    before = Scaler.fit("global", trajectories, train_ids=train)
    trajectories[[1, 3, 5]] *= 100.0  # change only non-training trajectories
    after = Scaler.fit("global", trajectories, train_ids=train)
    assert before.alpha == after.alpha
    np.testing.assert_array_equal(after.alphas([1, 3]), [after.alpha, after.alpha])


def test_scaler_records_rule_and_alphas():
    trajectories = np.random.default_rng(2).uniform(0.1, 3.0, size=(4, 10, 2))
    scaler = Scaler.fit("per_trajectory", trajectories)
    np.testing.assert_array_equal(scaler.alphas([3, 0]), per_trajectory_alpha(trajectories)[[3, 0]])
    expected = {"rule": "per_trajectory", "alpha": per_trajectory_alpha(trajectories).tolist()}
    assert scaler.as_dict() == expected
    assert Scaler.fit("global", trajectories, train_ids=[0, 1]).as_dict()["rule"] == "global"


def test_the_per_trajectory_rule_can_see_only_the_first_steps():
    """Scaled by its first steps, a trajectory that grows later keeps the scale its prompt has:
    the later values are not squeezed below 10 (no scale prior from the future)."""
    growing = np.linspace(1.0, 20.0, 40)[None, :, None].repeat(2, axis=2)  # (1, 40, 2)
    first = Scaler.fit("per_trajectory", growing, steps=10)
    np.testing.assert_allclose(first.alpha, per_trajectory_alpha(growing[:, :10]))
    assert first.alpha[0] < Scaler.fit("per_trajectory", growing).alpha[0]
    assert (growing[0, -1, 0] / first.alpha[0]) > 10  # the future shows its true growth
    with pytest.raises(ValueError, match="steps must be >= 1"):
        Scaler.fit("per_trajectory", growing, steps=0)


def test_scaler_fit_rejects_misuse():
    trajectories = np.ones((3, 4, 2))
    with pytest.raises(ValueError, match="training split"):
        Scaler.fit("global", trajectories)
    with pytest.raises(ValueError, match="unknown scaling rule 'max'"):
        Scaler.fit("max", trajectories)


def test_alpha_of_an_all_zero_trajectory_is_an_error():
    trajectories = np.ones((3, 4, 2))
    trajectories[1] = 0.0
    with pytest.raises(ValueError, match=r"not positive/finite for trajectories \[1\]"):
        per_trajectory_alpha(trajectories)
    with pytest.raises(ValueError, match="all zero"):
        fit_global_alpha(np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match=r"shape \(N, T, 2\)"):
        per_trajectory_alpha(np.ones((4, 2)))
