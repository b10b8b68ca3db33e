"""Selecting runs by what the user wants: the validation forecast error, scored, planned and charged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments.pipeline.plan import PlanError, load_plan
from experiments.pipeline.planner import DataShapes, plan_model, selection_forecast_flops
from experiments.pipeline.runner import LEDGER_FILE, dry_run, run_plan
from experiments.pipeline.selection import SelectionPlan, forecast_score
from flopcount import audit_report

SELECT_BY_FORECAST = {"criterion": "forecast", "trajectories": 3, "batch_size": 2}


def test_the_score_is_the_mean_over_species_of_the_median_error_relative_to_persistence():
    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 5, size=(7, 4, 2))  # (N, m, 2)
    last = rng.uniform(1, 5, size=(7, 2))
    persistence = np.repeat(last[:, None], 4, axis=1)
    assert forecast_score(truth, truth, last, "mse").error == 0
    assert forecast_score(persistence, truth, last, "mse").error == pytest.approx(1.0)
    assert forecast_score(persistence, truth, last, "mae").ratio == pytest.approx({"prey": 1.0, "predator": 1.0})
    halfway = (truth + persistence) / 2  # half the error at every step: a quarter of the MSE
    assert forecast_score(halfway, truth, last, "mse").error == pytest.approx(0.25)
    assert forecast_score(halfway, truth, last, "mae").error == pytest.approx(0.5)


def test_a_forecast_with_a_missing_step_never_scores_better_than_persistence_worst():
    rng = np.random.default_rng(1)
    truth, last = rng.uniform(1, 5, size=(5, 3, 2)), rng.uniform(1, 5, size=(5, 2))
    forecast = truth.copy()
    forecast[:3, 1, 0] = np.nan  # three prey forecasts broken at one step, otherwise perfect
    score = forecast_score(forecast, truth, last, "mse")
    worst = (((np.repeat(last[:, None], 3, axis=1) - truth) ** 2).mean(axis=1)).max(axis=0)
    assert score.malformed == 3 and score.median["prey"] == pytest.approx(worst[0]) and score.median["predator"] == 0


def test_the_selection_table_is_checked_and_names_the_stage_key():
    assert SelectionPlan().key("sweep") == "val_loss" and SelectionPlan().key("context") == "selection_val_loss"
    by_forecast = SelectionPlan(criterion="forecast")
    assert [by_forecast.key(kind) for kind in ("sweep", "context")] == ["selection_forecast_error"] * 2
    assert by_forecast.key("final") == "val_loss"  # one run: nothing to choose
    assert by_forecast.forecast_config(20, 4, load_plan("demo").data.llmtime_format()).do_sample is False
    assert SelectionPlan(criterion="forecast", samples=3).forecast_config(20, 4, None).samples == 3
    for bad in ({"criterion": "perplexity"}, {"metric": "rmse"}, {"trajectories": 0}, {"samples": True}):
        with pytest.raises(ValueError):
            SelectionPlan(**bad)


def test_a_plan_refuses_a_bad_selection_naming_the_table(write_plan, tmp_path):
    with pytest.raises(PlanError, match=r"\[selection\].*criterion"):
        load_plan(write_plan(tmp_path / "bad.toml", selection={"criterion": "vibes"}))
    with pytest.raises(PlanError, match=r"\[selection\]"):
        load_plan(write_plan(tmp_path / "bad2.toml", selection={"windows": 3}))
    plan = load_plan(write_plan(tmp_path / "ok.toml"), ["selection.criterion=forecast"])
    assert plan.selection.by_forecast


def test_the_dry_run_plans_every_runs_validation_forecast(write_plan, tmp_path):
    by_loss = dry_run(load_plan(write_plan(tmp_path / "loss.toml", forecast={})))
    plan = load_plan(write_plan(tmp_path / "forecast.toml", forecast={}, selection=SELECT_BY_FORECAST))
    by_forecast = dry_run(plan)
    grid = by_forecast.stage("grid")
    assert "forecast 3 validation trajectories per run" in grid.note
    from experiments.data import prepare_data

    shapes = DataShapes.of(plan, prepare_data(plan.data))
    assert shapes.selection_series == 3 and shapes.selection_prompt_tokens > 0
    per_run = [selection_forecast_flops(plan_model(plan), plan, shapes, run.config.lora_config()) for run in grid.runs]
    assert grid.flops == sum(run.flops for run in grid.runs) + sum(per_run) and per_run[0] < per_run[1]  # rank 1, 2
    assert "score every run at context" in by_loss.stage("context").note  # loss: a common context
    assert "validation trajectories per run" in by_forecast.stage("context").note  # forecasts compare across


@pytest.fixture(scope="module")
def forecast_selected_run(write_plan, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("select-by-forecast")
    plan = load_plan(write_plan(root / "mini.toml", forecast={}, selection=SELECT_BY_FORECAST))
    run_plan(plan, root / "run", progress=False)
    return root / "run"


def test_sweeps_select_the_lowest_validation_forecast_error_charged_within_the_plan(forecast_selected_run):
    results = json.loads((forecast_selected_run / "results.json").read_text())
    stages = results["stages"]
    for name in ("grid", "context"):
        runs = stages[name]["runs"]
        errors = [run["selection_forecast_error"] for run in runs]
        assert all(np.isfinite(errors)) and stages[name]["best"]["score"] == min(errors)
        assert stages[name]["best"]["selected_by"] == "selection_forecast_error"
        assert "validation forecast error" in stages[name]["best"]["criterion"]
        assert all("selection_val_loss" not in run for run in runs)  # no loss scoring at a common context
    rows = {row.name: row for row in audit_report(forecast_selected_run / LEDGER_FILE).rows}
    projected = {stage["name"]: stage for stage in results["projection"]["stages"]}
    for name in ("grid", "context"):
        scoring = [rows[f"{run['experiment']}/selection"] for run in stages[name]["runs"]]  # its own cost model
        assert all(row.by_phase.get("generation", 0) == row.total > 0 for row in scoring)  # forecasts only
        spent = sum(row.total for key, row in rows.items() if key.startswith(f"{name}/"))
        assert sum(row.total for row in scoring) < spent <= projected[name]["flops"]
    report = (forecast_selected_run / "report.md").read_text()
    assert "validation forecast error (÷ persistence)" in report
    assert "Both criteria pick" in report or "The criteria disagree" in report
