"""Forecast metrics against values worked out by hand, NaN handling, bootstrap, reporting."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments.forecasting.metrics import (
    ForecastSet, ValidationMetrics, evaluate_forecasts, horizon_errors, per_trajectory_metrics,
    perplexity, pooled_r2, results_document, results_table, save_results, bootstrap_summary,
)

NAN = math.nan


def stack(prey, predator) -> np.ndarray:
    """(N, m) prey and predator lists -> (N, m, 2)."""
    return np.stack([np.asarray(prey, float), np.asarray(predator, float)], axis=-1)


@pytest.fixture
def worked_example():
    """Two trajectories, three steps; the second's middle step is malformed (NaN row).

    Trajectory 0: prey truth 1,2,3 vs 1,2,5 -> errors 0,0,2: MSE 4/3, MAE 2/3,
    SST 2 (mean 2), SSE 4 -> R² -1. Predator truth 2,2,2 (flat) vs 1,2,3: MSE 2/3, MAE 2/3, R² NaN.
    Trajectory 1 (steps 0 and 2 only): prey truth 0,2 vs 0.5,2 -> MSE 0.125, MAE 0.25,
    SST 2 (mean 1), SSE 0.25 -> R² 0.875. Predator truth 1,3 vs 1,1 -> MSE 2, MAE 1, SST 2, SSE 4 -> R² -1.
    """
    truth = stack([[1, 2, 3], [0, 1, 2]], [[2, 2, 2], [1, 2, 3]])
    forecast = stack([[1, 2, 5], [0.5, NAN, 2]], [[1, 2, 3], [1, NAN, 1]])
    return truth, forecast


def test_per_trajectory_metrics_match_hand_computed_values(worked_example):
    metrics = per_trajectory_metrics(*worked_example)
    np.testing.assert_allclose(metrics["prey"]["mse"], [4 / 3, 0.125])
    np.testing.assert_allclose(metrics["prey"]["mae"], [2 / 3, 0.25])
    np.testing.assert_allclose(metrics["prey"]["r2"], [-1.0, 0.875])
    np.testing.assert_allclose(metrics["predator"]["mse"], [2 / 3, 2.0])
    np.testing.assert_allclose(metrics["predator"]["mae"], [2 / 3, 1.0])
    assert math.isnan(metrics["predator"]["r2"][0]) and metrics["predator"]["r2"][1] == pytest.approx(-1.0)


def test_perfect_forecast_has_zero_error_and_unit_r2():
    truth = stack([[1, 4, 2]], [[0.5, 0.2, 0.9]])
    metrics = per_trajectory_metrics(truth, truth.copy())
    for species in ("prey", "predator"):
        assert metrics[species]["mse"][0] == 0 and metrics[species]["mae"][0] == 0
        assert metrics[species]["r2"][0] == 1


def test_pooled_r2_treats_the_split_as_one_series():
    # prey: mean 2.5, SST 2.25+0.25+0.25+2.25 = 5, SSE 1 -> 0.8 (trajectory 1 alone has R² -1)
    truth = stack([[1, 2], [3, 4]], [[1, 1], [1, 1]])
    forecast = stack([[1, 2], [3, 5]], [[1, 1], [1, 1]])
    pooled = pooled_r2(truth, forecast)
    assert pooled[0] == pytest.approx(0.8)
    assert math.isnan(pooled[1])  # predator truth is flat over the whole split


def test_horizon_errors_average_valid_steps_only(worked_example):
    errors = horizon_errors(*worked_example)
    # step 0: prey |0|,|0.5| -> 0.25; predator |1|,|0| -> 0.5. step 1: only trajectory 0 valid.
    np.testing.assert_allclose(errors, [[0.25, 0.5], [0.0, 0.0], [1.0, 1.5]])
    assert np.isnan(horizon_errors(np.ones((2, 1, 2)), np.full((2, 1, 2), NAN))).all()


def test_evaluate_counts_malformed_steps_and_excluded_r2(worked_example):
    truth, forecast = worked_example
    result = evaluate_forecasts("hand", ForecastSet(truth, forecast, ids=[7, 9], repaired=[True, False]))
    assert result.malformed_fraction == 0.5  # one of two trajectories has a malformed step
    assert result.malformed_step_fraction == pytest.approx(1 / 6)
    assert result.repaired_fraction == 0.5
    np.testing.assert_array_equal(result.n_valid_steps, [3, 2])
    prey, predator = result.species["prey"], result.species["predator"]
    assert prey.mse.mean == pytest.approx((4 / 3 + 0.125) / 2)
    assert prey.mae.median == pytest.approx((2 / 3 + 0.25) / 2)
    assert (predator.r2.n_used, predator.r2.n_excluded) == (1, 1)
    assert predator.r2.mean == pytest.approx(-1.0) and math.isnan(predator.r2.ci_low)


def test_fully_malformed_trajectory_is_excluded_not_filled():
    truth = stack([[1, 2, 3], [1, 2, 3]], [[1, 2, 3], [1, 2, 3]])
    forecast = truth.copy()
    forecast[1] = NAN
    result = evaluate_forecasts("m", ForecastSet(truth, forecast, ids=[0, 1]))
    assert result.malformed_fraction == 1 / 2 and result.malformed_step_fraction == 1 / 2
    assert result.species["prey"].mse.n_used == 1 and result.species["prey"].mse.n_excluded == 1
    assert result.species["prey"].mse.mean == 0.0


def test_band_coverage_counts_truth_inside_the_band():
    truth = stack([[1, 2, 3, 4]], [[1, 1, 1, 2]])
    lower, upper = truth - 0.5, truth + 0.5
    lower[0, :2, 0] = 10.0  # two prey steps miss the band
    result = evaluate_forecasts("band", ForecastSet(truth, truth, ids=[0], lower=lower, upper=upper))
    assert result.species["prey"].band_coverage == 0.5
    assert result.species["predator"].band_coverage == 1.0


def test_bootstrap_interval_contains_mean_is_seeded_and_matches_normal_theory():
    values = np.random.default_rng(1).gamma(2.0, 1.5, size=400)
    first, again = bootstrap_summary(values, seed=3), bootstrap_summary(values, seed=3)
    other = bootstrap_summary(values, seed=4)
    assert first == again and (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.ci_low < first.mean < first.ci_high
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert (first.ci_high - first.ci_low) / 2 == pytest.approx(half_width, rel=0.15)


def test_summarize_excludes_nan_and_handles_empty():
    summary = bootstrap_summary(np.array([1.0, NAN, 3.0, 5.0]))
    assert (summary.mean, summary.median, summary.n_used, summary.n_excluded) == (3.0, 3.0, 3, 1)
    empty = bootstrap_summary(np.array([NAN, NAN]))
    assert math.isnan(empty.mean) and empty.n_excluded == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"forecast": np.zeros((2, 3, 2))}, "forecast has shape"),
        ({"truth": np.zeros((2, 4))}, "truth must have shape"),
        ({"ids": [0, 1, 2]}, "ids must have shape"),
        ({"lower": np.zeros((2, 4, 2))}, "both lower and upper"),
        ({"repaired": [True]}, "repaired must have shape"),
    ],
)
def test_forecast_set_rejects_bad_input_with_a_clear_message(kwargs, message):
    arguments = {"truth": np.ones((2, 4, 2)), "forecast": np.ones((2, 4, 2)), "ids": [0, 1]} | kwargs
    with pytest.raises(ValueError, match=message):
        ForecastSet(**arguments)


def test_truth_must_be_finite():
    truth = np.ones((1, 2, 2))
    truth[0, 1, 0] = NAN
    with pytest.raises(ValueError, match="truth contains non-finite"):
        ForecastSet(truth, np.ones((1, 2, 2)), ids=[0])


def test_perplexity_and_validation_metrics():
    assert perplexity(math.log(4.0)) == pytest.approx(4.0)
    validation = ValidationMetrics(cross_entropy_nats=math.log(2.0), n_tokens=10)
    expected = {"cross_entropy_nats": math.log(2.0), "perplexity": pytest.approx(2.0), "n_tokens": 10}
    assert validation.to_dict() == expected
    with pytest.raises(ValueError, match="cross-entropy"):
        perplexity(NAN)
    with pytest.raises(ValueError, match="n_tokens"):
        ValidationMetrics(cross_entropy_nats=1.0, n_tokens=0)


def test_table_and_results_file_report_every_method(worked_example, tmp_path):
    truth, forecast = worked_example
    methods = [evaluate_forecasts(name, ForecastSet(truth, f, ids=[0, 1])) for name, f in
               (("hand", forecast), ("oracle", truth))]
    table = results_table(methods).splitlines()
    assert len(table) == 2 + 2 * 2  # header, rule, (method x species) rows
    assert table[2].startswith("| hand | prey | 0.7292") and "| 50.0% |" in table[2]
    assert "| -1 (1 excl.) |" in table[3]  # one usable predator R², so no interval, and the count
    assert "| -2 |" in table[3]  # pooled predator R²: truth 2,2,2,1,3, SSE 6, SST 2
    path = save_results(tmp_path / "results.json", methods, validation=ValidationMetrics(0.5, 100))
    document = json.loads(path.read_text())
    assert [m["method"] for m in document["methods"]] == ["hand", "oracle"]
    assert document["validation"]["perplexity"] == pytest.approx(math.exp(0.5))
    assert document["methods"][0]["species"]["predator"]["per_trajectory"]["r2"][0] is None  # NaN -> null
    assert document == results_document(methods, ValidationMetrics(0.5, 100))
    with pytest.raises(FileExistsError, match="results.json exists"):
        save_results(path, methods)
