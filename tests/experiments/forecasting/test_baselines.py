"""Baselines: exact on constructed inputs, the physics-fit baseline forecasts simulated systems (and
falls back to persistence), and every method goes through the same metric code."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.forecasting.baselines import BASELINES, linear_extrapolation, persistence, physics_fit
from experiments.forecasting.metrics import results_table
from experiments.forecasting.physics_fit import FitConfig


def test_persistence_repeats_the_last_context_value():
    context = np.arange(2 * 4 * 2, dtype=float).reshape(2, 4, 2)  # (N=2, k=4, 2)
    result = persistence(context, np.arange(4.0), np.arange(4.0, 7.0))
    assert result.forecast.shape == (2, 3, 2)
    np.testing.assert_array_equal(result.forecast[0], [[6, 7]] * 3)
    np.testing.assert_array_equal(result.forecast[1], [[14, 15]] * 3)
    assert result.total_flops == 0 and not result.repaired.any()


def test_linear_extrapolation_continues_the_line_through_the_window():
    time = np.arange(8.0)
    context_time, horizon_time = time[:6], time[6:]
    prey = np.array([9.0, -3.0, 2.0, 2.5, 3.0, 3.5])  # a line (2 + 0.5·(t − 2)) over the last 4 steps only
    predator = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    context = np.stack([prey, predator], axis=-1)[None]  # (1, 6, 2)
    result = linear_extrapolation(context, context_time, horizon_time, window=4)
    np.testing.assert_allclose(result.forecast[0], [[4.0, 5.0], [4.5, 5.0]])
    assert not result.repaired[0] and result.diagnostics["clipped_steps"][0] == 0


def test_linear_extrapolation_clips_negative_values_and_counts_the_repair():
    context_time, horizon_time = np.arange(3.0), np.arange(3.0, 7.0)
    falling = np.stack([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]], axis=-1)  # prey falls 1 per step
    rising = np.stack([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], axis=-1)
    result = linear_extrapolation(np.stack([falling, rising]), context_time, horizon_time, window=3)
    np.testing.assert_allclose(result.forecast[0, :, 0], [0.0, 0.0, 0.0, 0.0])  # 0, -1, -2, -3 clipped
    np.testing.assert_allclose(result.forecast[1, :, 0], [4.0, 5.0, 6.0, 7.0])
    np.testing.assert_array_equal(result.repaired, [True, False])
    np.testing.assert_array_equal(result.diagnostics["clipped_steps"], [3, 0])  # exact 0 is not clipped


@pytest.mark.parametrize(
    ("context", "context_time", "horizon_time", "message"),
    [
        (np.ones((4, 2)), np.arange(4.0), np.arange(4.0, 6.0), r"context must have shape \(N, k, 2\)"),
        (np.ones((1, 4, 2)), np.arange(3.0), np.arange(4.0, 6.0), r"context_time must have shape \(4,\)"),
        (np.ones((1, 4, 2)), np.arange(4.0), np.arange(2.0, 4.0), "strictly increasing"),
        (np.ones((1, 4, 2)), np.arange(4.0), np.array([]), "non-empty"),
        (np.full((1, 4, 2), np.nan), np.arange(4.0), np.arange(4.0, 6.0), "non-finite"),
    ],
)
@pytest.mark.parametrize("baseline", list(BASELINES.values()), ids=list(BASELINES))
def test_baselines_reject_bad_input(baseline, context, context_time, horizon_time, message):
    with pytest.raises(ValueError, match=message):
        baseline(context, context_time, horizon_time)


def test_linear_extrapolation_rejects_a_window_longer_than_the_context():
    with pytest.raises(ValueError, match="window must be between 2 and the 3 context steps"):
        linear_extrapolation(np.ones((1, 3, 2)), np.arange(3.0), np.arange(3.0, 5.0), window=4)


def test_physics_fit_forecasts_simulated_trajectories_with_small_error(lv_simulated):
    context, context_time, horizon_time, truth = lv_simulated.split()
    result = physics_fit(context, context_time, horizon_time, progress=False)
    assert result.diagnostics["fit_success"].all() and not result.repaired.any()
    relative_error = np.abs(result.forecast - truth) / truth.mean(axis=1, keepdims=True)
    assert relative_error.max() < 1e-3


def test_physics_fit_falls_back_to_persistence_and_says_so(lv_simulated):
    context, context_time, horizon_time, _ = lv_simulated.split(slice(0, 1))
    result = physics_fit(context, context_time, horizon_time, config=FitConfig(max_nfev=1), progress=False)
    assert not result.diagnostics["fit_success"][0] and result.repaired[0]
    np.testing.assert_array_equal(result.forecast[0], np.repeat(context[0, -1:], len(horizon_time), axis=0))


def test_every_baseline_goes_through_the_same_metrics(lv_simulated):
    context, context_time, horizon_time, truth = lv_simulated.split()
    ids = np.array([11, 12, 13])
    quiet = {"physics_fit": {"progress": False}}
    metrics = [BASELINES[name](context, context_time, horizon_time, **quiet.get(name, {}))
               .evaluate(truth, ids, n_bootstrap=200) for name in BASELINES]
    by_name = {m.method: m for m in metrics}
    assert list(by_name) == list(BASELINES)
    physics = by_name["physics_fit"]
    for species in ("prey", "predator"):
        assert physics.species[species].r2.median > 0.999
        assert physics.species[species].mse.mean < by_name["persistence"].species[species].mse.mean
    flops = [by_name[name].extras["rough_flops"] for name in ("persistence", "linear_extrapolation", "physics_fit")]
    assert flops[0] == 0 < flops[1] < flops[2]
    np.testing.assert_array_equal(physics.ids, ids)
    table = results_table(metrics)
    assert all(f"| {name} | prey |" in table for name in BASELINES)
