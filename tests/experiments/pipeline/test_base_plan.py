"""A plan whose model is ``llmtime-base``: resolved through the base cache, the untrained base's
validation charged and projected, and a report that says what the model is and whether
fine-tuning learned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.basemodel import cache as base_cache
from experiments.basemodel.recipe import TEST_RECIPE
from experiments.models.loading import tiny_config
from experiments.pipeline.plan import load_plan
from experiments.pipeline.runner import LEDGER_FILE, dry_run, run_plan
from flopcount import audit_report, forward_flops

BASE_PLAN = """
name = "base-mini"
description = "the stages in miniature on the pretrained base"

[model]
source = "llmtime-base"

[data]
path = "{data}"
prompt_steps = 20
forecast_steps = 4

[budget]
limit = 5e12

[training]
batch_size = 2
context = 64
learning_rate = 2e-3
lora_rank = 4
eval_every = 3
eval_windows = 4
checkpoint_every = 3

[forecast]
series = 3
samples = 0
batch_size = 3
max_int_digits = 2
plot_series = 1

[[stages]]
kind = "baseline"

[[stages]]
name = "final"
kind = "train"
max_steps = 6
budget_share = 0.5

[[stages]]
name = "evaluate"
kind = "evaluate"
from = "final"
"""


@pytest.fixture(scope="module")
def base_run(learned_base, real_data_path, tmp_path_factory) -> Path:
    """The plan run once, its ``llmtime-base`` the session's small base (``TEST_RECIPE``)."""
    root = tmp_path_factory.mktemp("base-plan")
    (root / "plan.toml").write_text(BASE_PLAN.format(data=real_data_path))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(base_cache, "DEMO_RECIPE", TEST_RECIPE)
        patch.setenv(base_cache.ENV_VAR, str(learned_base))
        run_plan(load_plan(root / "plan.toml"), root / "run", progress=False)
    return root / "run"


def test_the_report_says_what_the_model_is_and_whether_it_learned(base_run, learned_base):
    report = (base_run / "report.md").read_text()
    assert "randomly initialised" not in report
    assert "a small base pretrained here on general numeric sequences" in report and str(learned_base) in report
    learning = report.split("## Did fine-tuning learn?", 1)[1].split("\n## ", 1)[0]
    assert "untrained base" in learning and "fine-tuned adapter (run `final`, step 6 of 6)" in learning
    assert "the comparison table at the top of this report" in learning  # the errors are tabled once, there
    comparison = report.split("## Comparison", 1)[1].split("\n## ", 1)[0]
    for row in ("| untrained, greedy |", "| fine-tuned, greedy |", "| persistence |", "| linear extrapolation |",
                "| physics fit |"):
        assert row in comparison, row
    assert "fine-tuning lowers the validation loss: **" in learning
    assert learning.count("below persistence for") == 2
    assert "breaks the LLMTIME format on" in learning
    summary = json.loads((base_run / "results.json").read_text())["plan_summary"]["base"]
    assert summary["recipe_hash"] == json.loads((learned_base / "llmtime-base.json").read_text())["recipe_hash"]


def test_the_untrained_base_is_scored_on_the_adapters_windows_and_charged(base_run):
    results = json.loads((base_run / "results.json").read_text())
    stages = results["stages"]
    base, tuned = stages["evaluate"]["base_validation"], stages["evaluate"]["validation"]
    assert (base["context"], base["windows"]) == (64, 4)
    assert base["n_tokens"] == tuned["n_tokens"]  # the same windows as the run's own last validation
    assert tuned["cross_entropy_nats"] < base["cross_entropy_nats"]
    rows = {row.name: row for row in audit_report(base_run / LEDGER_FILE).rows}
    scoring = forward_flops(tiny_config(), 64, batch=4).total  # no adapter: the untrained base
    assert rows["evaluate/base-validation"].by_phase == {"train": 0, "validation": scoring, "generation": 0}
    projected = next(stage["flops"] for stage in results["projection"]["stages"] if stage["name"] == "evaluate")
    assert rows["evaluate"].total + rows["evaluate/base-validation"].total <= projected


def test_projecting_a_plan_on_the_base_builds_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(base_cache.ENV_VAR, str(tmp_path / "base"))
    projection = dry_run(load_plan("demo"))
    assert projection.fits and not (tmp_path / "base").exists()
