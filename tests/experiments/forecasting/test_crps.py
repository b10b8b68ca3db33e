"""The empirical CRPS of an ensemble against hand-computed cases, the integral it is defined by,
the Gaussian closed form, and its handling of malformed (NaN) samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from experiments.forecasting.crps import crps_ensemble, per_trajectory_crps
from experiments.forecasting.metrics import ForecastSet, evaluate_forecasts

NAN = math.nan


def crps_by_integral(members: np.ndarray, observation: float) -> float:
    """``∫ (F(z) - 1{z >= y})² dz`` for the ensemble's step CDF ``F``, exactly: the integrand is
    constant between consecutive breakpoints (the members and the observation)."""
    points = np.sort(np.append(members, observation))
    middles = (points[:-1] + points[1:]) / 2
    cdf = (members[None, :] <= middles[:, None]).mean(axis=1)
    step = (middles >= observation).astype(float)
    return float(((cdf - step) ** 2 * np.diff(points)).sum())


def test_hand_computed_ensembles():
    # {0, 1} at 0: mean |x - y| = 1/2, sum |xi - xj| = 2 over 4 pairs -> 1/2 - 2/8 = 1/4
    # {1, 2, 4} at 3: 4/3 - 12/18 = 2/3
    np.testing.assert_allclose(crps_ensemble(np.array([0.0, 1.0]), np.array(0.0)), 0.25)
    np.testing.assert_allclose(crps_ensemble(np.array([1.0, 4.0, 2.0]), np.array(3.0)), 2 / 3)


def test_a_single_member_scores_its_absolute_error():
    np.testing.assert_allclose(crps_ensemble(np.array([[2.5], [-1.0]]), np.array([1.0, 1.0])), [1.5, 2.0])


def test_random_ensembles_match_the_integral_definition():
    rng = np.random.default_rng(3)
    members = rng.normal(size=(50, 7)) * rng.uniform(0.1, 3, size=(50, 1))
    observations = rng.normal(size=50) * 2
    expected = [crps_by_integral(m, y) for m, y in zip(members, observations)]
    np.testing.assert_allclose(crps_ensemble(members, observations), expected, rtol=1e-12)


def test_a_large_gaussian_ensemble_reaches_the_gaussian_closed_form():
    mu, sigma, y = 1.0, 0.5, 1.8
    members = stats.norm.ppf((np.arange(20000) + 0.5) / 20000, mu, sigma)  # an evenly spread N(mu, sigma²)
    z = (y - mu) / sigma
    closed = sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi))
    assert crps_ensemble(members, np.array(y)) == pytest.approx(closed, rel=1e-4)


def test_malformed_members_are_dropped_and_an_empty_ensemble_is_nan():
    scores = crps_ensemble(np.array([[1.0, NAN, 4.0, 2.0], [NAN, NAN, NAN, NAN]]), np.array([3.0, 3.0]))
    assert scores[0] == pytest.approx(2 / 3) and math.isnan(scores[1])


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="sample axis"):
        crps_ensemble(np.zeros((3, 4)), np.zeros(4))
    with pytest.raises(ValueError, match=r"\(N, S, m, 2\)"):
        per_trajectory_crps(np.zeros((2, 3, 4, 2)), np.zeros((2, 5, 2)))


def test_per_trajectory_crps_averages_scorable_steps():
    truth = np.array([[[1.0, 2.0], [1.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])  # (N=2, m=2, 2)
    samples = np.zeros((2, 2, 2, 2))  # (N, S=2, m, 2)
    samples[0, :, 0] = [[0.0, 2.0], [1.0, 2.0]]  # step 0: prey {0, 1} at 1 -> 1/4; predator exact -> 0
    samples[0, :, 1] = [[1.0, 2.0], [1.0, NAN]]  # step 1: sample 1 is malformed -> prey 0, predator 0
    samples[1] = NAN  # nothing scorable
    scores = per_trajectory_crps(samples, truth)
    np.testing.assert_allclose(scores[0], [0.125, 0.0])
    assert np.isnan(scores[1]).all()


def test_evaluate_forecasts_scores_an_ensemble_and_not_a_point_forecast():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.5, 3, size=(4, 5, 2))
    samples = truth[:, None] + rng.normal(scale=0.3, size=(4, 6, 5, 2))
    median = np.median(samples, axis=1)
    sampled = evaluate_forecasts("llm-sampled-6", ForecastSet(truth, median, np.arange(4), samples=samples),
                                 n_bootstrap=50)
    expected = per_trajectory_crps(samples, truth)
    for s, name in enumerate(("prey", "predator")):
        np.testing.assert_allclose(sampled.species[name].per_trajectory["crps"], expected[:, s])
        assert sampled.species[name].crps.median == pytest.approx(np.median(expected[:, s]))
        assert sampled.to_dict()["species"][name]["crps"]["mean"] == pytest.approx(expected[:, s].mean())
    point = evaluate_forecasts("persistence", ForecastSet(truth, median, np.arange(4)), n_bootstrap=50)
    assert point.species["prey"].crps is None and point.to_dict()["species"]["prey"]["crps"] is None
    with pytest.raises(ValueError, match="samples must have shape"):
        ForecastSet(truth, median, np.arange(4), samples=samples[:, :, :3])
