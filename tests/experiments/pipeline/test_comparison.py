"""The comparison table and the trajectory-972 spotlight, built from forecast-stage records made
by the real metric path (``evaluate_forecasts(...).to_dict()``) on worked arrays."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.forecasting.metrics import ForecastSet, evaluate_forecasts
from experiments.pipeline.comparison import (
    HEADER, comparison_rows, comparison_section, comparison_table, llm_label, spotlight_section,
)

IDS = np.array([5, 972, 7])


def scored(method: str, truth: np.ndarray, offset: float, samples: np.ndarray | None = None,
           extras: dict | None = None) -> dict:
    """A ``methods`` entry: ``truth + offset`` (or the median of ``samples``) scored against ``truth``."""
    forecast = truth + offset if samples is None else np.median(samples, axis=1)
    band = {} if samples is None else dict(zip(("lower", "upper"), np.quantile(samples, [0.05, 0.95], axis=1)))
    forecast_set = ForecastSet(truth, forecast, IDS, samples=samples, **band)
    return evaluate_forecasts(method, forecast_set, n_bootstrap=100, extras=extras).to_dict()


@pytest.fixture(scope="module")
def stages() -> dict:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.5, 3.0, size=(3, 4, 2))  # (N, m, 2)
    samples = truth[:, None] + rng.normal(scale=0.1, size=(3, 5, 4, 2))  # (N, S, m, 2)
    sampled_extras = {"band_low": 0.05, "band_high": 0.95, "samples_per_trajectory": 5,
                      "malformed_sample_fraction": 0.04}
    baselines = [scored("persistence", truth, 1.0), scored("linear_extrapolation", truth, 0.5),
                 scored("physics_fit", truth, 0.25)]
    untrained = [scored("llm-greedy", truth, 2.0), scored("llm-sampled-5", truth, 0, samples * 2, sampled_extras)]
    tuned = [scored("llm-greedy", truth, 0.1), scored("llm-greedy-unconstrained", truth, 0.3),
             scored("llm-sampled-5", truth, 0, samples, sampled_extras)]
    return {
        "grid": {"kind": "sweep", "runs": []},
        "baseline": {"kind": "baseline", "methods": untrained + baselines},
        "evaluate": {"kind": "evaluate", "methods": tuned + baselines},
    }


def cells(table: str) -> dict[tuple[str, str], dict[str, str]]:
    """``(method label, species) -> {column: cell}`` of a comparison table."""
    lines = table.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return {(row[0], row[1]): dict(zip(header, row)) for row in rows}


def test_labels_name_the_decoding():
    assert llm_label("llm-greedy") == "greedy"
    assert llm_label("llm-sampled-20") == "sampled median (20 samples)"
    assert llm_label("llm-greedy-unconstrained") == "greedy, no grammar"


def test_rows_are_untrained_then_fine_tuned_then_the_baselines_once(stages):
    labels = [row.label for row in comparison_rows(stages)]
    assert labels == ["untrained, greedy", "untrained, sampled median (5 samples)", "fine-tuned, greedy",
                      "fine-tuned, greedy, no grammar", "fine-tuned, sampled median (5 samples)", "persistence",
                      "linear extrapolation", "physics fit"]


def test_the_table_shows_the_stored_numbers(stages):
    table = cells(comparison_table(comparison_rows(stages)))
    assert list(next(iter(table.values()))) == list(HEADER)
    tuned = stages["evaluate"]["methods"]
    greedy, sampled, persistence = tuned[0], tuned[2], tuned[3]
    for species in ("prey", "predator"):
        row = table[("fine-tuned, greedy", species)]
        mse = greedy["species"][species]["mse"]
        assert float(row["MSE median"]) == pytest.approx(mse["median"], rel=5e-4)
        assert row["MSE mean [95% CI]"].startswith(f"{mse['mean']:.4g} [{mse['ci_low']:.4g}, ")
        assert float(row["R² median"]) == pytest.approx(greedy["species"][species]["r2"]["median"], rel=5e-4)
        skill = 1 - mse["median"] / persistence["species"][species]["mse"]["median"]
        assert float(row["skill vs persistence"]) == pytest.approx(skill, rel=2e-3) and skill > 0.9
        assert row["CRPS median"] == "-" and row["band coverage"] == "-" and row["malformed"] == "0%"
        ensemble = table[("fine-tuned, sampled median (5 samples)", species)]
        crps = sampled["species"][species]["crps"]
        assert float(ensemble["CRPS median"]) == pytest.approx(crps["median"], rel=5e-4)
        coverage = sampled["species"][species]["band_coverage"]
        assert 0 < coverage <= 1 and ensemble["band coverage"].endswith(" (90%)")  # the nominal 5-95 % band
        assert float(ensemble["band coverage"].split("%")[0]) == pytest.approx(100 * coverage, abs=0.5)
        assert ensemble["malformed"] == "0% (samples 4.0%)"
        assert table[("persistence", species)]["skill vs persistence"] == "0 (reference)"
        assert float(table[("untrained, greedy", species)]["skill vs persistence"]) < 0  # off by 2 vs persistence's 1


def test_the_section_explains_the_columns_and_is_empty_without_forecasts(stages):
    section = comparison_section(stages)
    assert section.startswith("## Comparison: untrained vs fine-tuned vs baselines")
    assert "3 trajectories, 4 steps ahead" in section and "(medians, not means)" in section
    assert comparison_section({"grid": {"kind": "sweep", "runs": []}}) == ""
    assert spotlight_section({"grid": {"kind": "sweep", "runs": []}}) == ""


def test_the_spotlight_shows_trajectory_972_beside_the_seed_report(stages):
    section = spotlight_section(stages)
    rows = cells("\n".join(line for line in section.splitlines() if line.startswith("|")))
    assert rows[("untrained", "seed report")]["prey MSE"] == "0.1770"
    assert rows[("fine-tuned", "seed report")]["predator MSE"] == "0.0125"
    greedy = stages["evaluate"]["methods"][0]["species"]
    tuned = rows[("fine-tuned", "this run, greedy")]
    for species in ("prey", "predator"):
        for column, metric in (("MSE", "mse"), ("MAE", "mae"), ("R²", "r2")):
            value = greedy[species]["per_trajectory"][metric][1]  # 972 is the second id
            assert float(tuned[f"{species} {column}"]) == pytest.approx(value, abs=5e-5, rel=5e-4)
    assert list(rows) == [("untrained", "seed report"), ("untrained", "this run, greedy"),
                          ("untrained", "this run, sampled median (5 samples)"), ("fine-tuned", "seed report"),
                          ("fine-tuned", "this run, greedy"), ("fine-tuned", "this run, greedy, no grammar"),
                          ("fine-tuned", "this run, sampled median (5 samples)")]


def test_the_spotlight_says_so_in_one_line_when_972_was_not_forecast(stages):
    section = spotlight_section(stages, trajectory=973)
    assert section.splitlines()[2] == ("Trajectory 973 is not among the 3 test trajectories this run forecast, "
                                       "so there is no per-trajectory comparison with the seed report (the plan's "
                                       "`[data] test_ids` sets the test split).")
    assert "|" not in section
