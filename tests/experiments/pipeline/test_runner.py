"""The plan runner end to end on a miniature plan: every stage, the report against the ledger,
refusal of a plan that cannot fit, and resuming without charging finished stages twice."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.pipeline.plan import PlanError, load_plan
from experiments.pipeline.runner import LEDGER_FILE, PlanOverBudget, dry_run, run_plan
from experiments.models.loading import tiny_config
from experiments.training.errors import EXIT_STOPPED, NothingToSelect, exit_status_of
from experiments.training.metrics_log import read_metrics
from experiments.training.run_dir import ConfigMismatch
from flopcount import CountSetup, Ledger, audit_report, forward_flops, training_step_flops

@pytest.fixture(scope="module")
def finished_run(write_mini_plan, tmp_path_factory) -> Path:
    """The miniature plan run to the end once; tests read its run directory."""
    root = tmp_path_factory.mktemp("mini-run")
    out = root / "run"
    run_plan(load_plan(write_mini_plan(root)), out, progress=False)
    return out


def ledger_rows(out: Path) -> dict[str, object]:
    return {row.name: row for row in audit_report(out / LEDGER_FILE).rows}


def table_after(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading``."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2:end]]


def test_every_stage_finishes_and_selections_feed_the_next_stage(finished_run):
    results = json.loads((finished_run / "results.json").read_text())
    stages = results["stages"]
    assert {name: record["status"] for name, record in stages.items()} == dict.fromkeys(
        ["backward-forward", "baseline", "grid", "context", "final", "evaluate"], "finished")
    best_grid = stages["grid"]["best"]
    assert best_grid["val_loss"] == min(run["val_loss"] for run in stages["grid"]["runs"])
    assert {run["settings"]["lora_rank"] for run in stages["context"]["runs"]} == {best_grid["settings"]["lora_rank"]}
    assert stages["final"]["runs"][0]["settings"]["context"] == stages["context"]["best"]["settings"]["context"]
    context_runs = stages["context"]["runs"]  # compared at one context, not each at its own
    assert {run["selection_context"] for run in context_runs} == {32}
    assert stages["context"]["best"]["val_loss"] == min(run["selection_val_loss"] for run in context_runs)
    assert stages["evaluate"]["experiment"] == "final"
    assert {run["steps_done"] for run in stages["grid"]["runs"]} == {3}
    measured = stages["backward-forward"]
    assert measured["ratio"] == measured["backward"] / measured["forward"] > 0


def test_report_audit_table_equals_the_ledger(finished_run):
    report = (finished_run / "report.md").read_text()
    audit = audit_report(finished_run / LEDGER_FILE)
    rows = table_after(report, "## FLOP audit: every experiment")
    by_name = {cells[1]: cells for cells in rows if cells[1] and not cells[1].startswith("**")}
    assert set(by_name) == {row.name for row in audit.rows}
    for row in audit.rows:
        cells = by_name[row.name]
        assert float(cells[9]) == pytest.approx(row.total, rel=5e-4)  # total FLOPs, 4 significant digits
        assert int(cells[3].replace(",", "")) == row.steps
    exact = re.search(r"spent (\d+) \(", report)
    assert exact is not None and int(exact.group(1)) == audit.total
    with Ledger(finished_run / LEDGER_FILE) as ledger:
        assert ledger.spent == audit.total


def test_report_sweep_and_stage_tables_equal_the_ledger(finished_run):
    report = (finished_run / "report.md").read_text()
    flops = {row.name: row.total for row in audit_report(finished_run / LEDGER_FILE).rows}
    grid = table_after(report, "## Learning rate x LoRA rank grid (stage `grid`)")
    assert [float(cells[2]) for cells in grid] == pytest.approx([flops["grid/r=1"], flops["grid/r=2"]], rel=5e-4)
    context = table_after(report, "## Context length (stage `context`)")
    assert [cells[0] for cells in context] == ["16", "32"]
    assert [float(cells[2]) for cells in context] == pytest.approx(
        [flops["context/context=16"], flops["context/context=32"]], rel=5e-4)
    spent = {cells[0]: float(cells[3]) for cells in table_after(report, "### Projected against spent, per stage")}
    assert spent["grid"] == pytest.approx(flops["grid/r=1"] + flops["grid/r=2"], rel=5e-4)
    assert spent["evaluate"] == pytest.approx(flops["evaluate"] + flops["evaluate/base-validation"], rel=5e-4)


def test_report_has_forecast_tables_figures_and_the_tiny_model_warning(finished_run):
    report = (finished_run / "report.md").read_text()
    assert "randomly initialised" in report and "--plan coursework" in report
    for method in ("llm-greedy", "llm-greedy-unconstrained", "llm-sampled-2", "persistence", "linear_extrapolation",
                   "physics_fit"):
        assert f"| {method} | prey |" in report
    for figure in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert (finished_run / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    assert "backward / forward" in report


def test_generation_and_training_were_charged_to_the_right_experiments(finished_run):
    rows = ledger_rows(finished_run)
    best = json.loads((finished_run / "results.json").read_text())["stages"]["grid"]["best"]["settings"]
    scoring = forward_flops(CountSetup.of(tiny_config(), lora_rank=best["lora_rank"]), 32, batch=4)  # 4 eval windows at 32
    assert rows["context/selection"].by_phase == {"train": 0, "validation": 2 * scoring.total, "generation": 0}
    stages = json.loads((finished_run / "results.json").read_text())["stages"]
    for entry in [*stages["grid"]["runs"], *stages["context"]["runs"], *stages["final"]["runs"]]:
        assert rows[entry["experiment"]].total == entry["projected_flops"]  # the planner's figure, exactly
    measured = training_step_flops(CountSetup.of(tiny_config(), lora_rank=2), 1, 64)  # the backward/forward check
    assert rows["backward-forward"].by_phase == {"train": measured, "validation": 0, "generation": 0}
    assert rows["baseline"].by_phase["generation"] > 0 and rows["baseline"].by_phase["train"] == 0
    assert rows["evaluate"].by_phase["generation"] > 0
    assert rows["final"].steps == 4 and rows["final"].by_phase["validation"] > 0
    assert all(row.rerun == 0 for row in rows.values())


def test_report_names_the_step_of_the_adapter_it_evaluates(finished_run):
    stages = json.loads((finished_run / "results.json").read_text())["stages"]
    evaluate, final = stages["evaluate"], stages["final"]["runs"][0]
    assert (evaluate["adapter_step"], evaluate["planned_steps"]) == (final["steps_done"], final["steps"]) == (4, 4)
    assert "step-00000004" in evaluate["adapter"]
    report = (finished_run / "report.md").read_text()
    assert "adapter of `final` (run `final`, step 4 of 4)" in report
    assert "adapter of run `final` at step 4 of 4" in evaluate["description"]
    step = max(r["step"] for r in read_metrics(finished_run / final["metrics"], kind="validation") if r["step"] <= 4)
    assert evaluate["validation"]["step"] == step and f"that adapter's run at step {step}: " in report
    assert f"(run `final`, step 4 of 4) **{evaluate['validation']['cross_entropy_nats']:.4f}** (validation at step " \
           f"{step}; " in report
    assert "per step" not in report.split("## Training curves")[1].split("\n\n")[1]  # the figure's x axis is FLOPs
    assert "against the FLOPs the plan had spent, one panel per stage" in report


def test_a_run_without_a_validation_loss_is_reported_missing_never_skipped_silently(finished_run, tmp_path, caplog):
    import logging

    from experiments.pipeline.report import write_report
    from experiments.pipeline.runner import select_best

    out = tmp_path / "copy"
    shutil.copytree(finished_run, out)
    document = json.loads((out / "results.json").read_text())
    grid = document["stages"]["grid"]
    killed = grid["runs"][0]  # as a cell left by a crash whose re-runs used up its cap before it validated
    killed.update(status="stopped", val_loss=None, steps_done=1, stop_reason="experiment cap exhausted at train step 2")
    with caplog.at_level(logging.WARNING, logger="experiments.pipeline.runner"):
        grid["best"] = select_best("grid", grid["runs"], "val_loss", "lowest validation loss")
    assert grid["best"]["experiment"] == grid["runs"][1]["experiment"]
    assert grid["best"]["missing"] == [{"experiment": killed["experiment"], "status": "stopped", "steps_done": 1,
                                        "stop_reason": "experiment cap exhausted at train step 2"}]
    assert any(killed["experiment"] in record.getMessage() and "missing from the selection" in record.getMessage()
               for record in caplog.records if record.levelno == logging.WARNING)
    (out / "results.json").write_text(json.dumps(document))
    report = write_report(out).read_text()
    assert f"**Missing from the selection: `{killed['experiment']}`** has no validation loss (stopped after 1 steps" \
        in report
    assert "(no validation loss: missing from the selection)" in report
    with pytest.raises(NothingToSelect, match="no run has a validation loss"):
        select_best("grid", [killed], "val_loss", "lowest validation loss")


def test_a_stage_where_no_run_validated_is_a_stopped_error_naming_the_runs_not_a_bug():
    from experiments.pipeline.runner import select_best

    runs = [{"experiment": "grid/lr1e-3", "status": "stopped", "steps_done": 1, "val_loss": None,
             "stop_reason": "experiment cap exhausted at train step 2"},
            {"experiment": "grid/lr3e-3", "status": "stopped", "steps_done": 0, "val_loss": None,
             "stop_reason": "non-finite loss at step 1"}]
    with pytest.raises(NothingToSelect) as caught:
        select_best("grid", runs, "val_loss", "lowest validation loss")
    status, line = exit_status_of(caught.value)
    assert status == EXIT_STOPPED and "\n" not in line and "bug" not in line, line
    assert "grid/lr1e-3 stopped after 1 steps (experiment cap exhausted at train step 2)" in line
    assert "grid/lr3e-3 stopped after 0 steps (non-finite loss at step 1)" in line
    assert "new --out directory" in line


def test_rerunning_a_finished_plan_charges_nothing(finished_run):
    before = audit_report(finished_run / LEDGER_FILE)
    run_plan(load_plan(finished_run.parent / "mini.toml"), finished_run, progress=False)
    after = audit_report(finished_run / LEDGER_FILE)
    assert after.total == before.total
    assert [row.sessions for row in after.rows] == [row.sessions for row in before.rows]


def test_a_plan_that_cannot_fit_is_refused_before_any_work(write_mini_plan, tmp_path):
    plan = load_plan(write_mini_plan(tmp_path, limit=5e10))
    assert not dry_run(plan).fits
    with pytest.raises(PlanOverBudget, match="cannot fit its budget"):
        run_plan(plan, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / LEDGER_FILE).exists()
    assert not (tmp_path / "run" / "stages").exists()


def test_a_stage_whose_source_has_not_run_is_refused(write_mini_plan, tmp_path):
    plan = load_plan(write_mini_plan(tmp_path))
    with pytest.raises(PlanError, match="uses the best setting of 'grid', which has not finished"):
        run_plan(plan, tmp_path / "run", only=["context"], progress=False)
    assert not (tmp_path / "run" / LEDGER_FILE).exists()  # refused before the measurement was charged


def test_another_plan_is_refused_in_a_used_run_directory(finished_run, write_mini_plan, tmp_path):
    edited = write_mini_plan(tmp_path, limit=3e12)
    before = ledger_rows(finished_run)
    with pytest.raises(ConfigMismatch, match="holds a run of plan .* with other settings"):
        run_plan(load_plan(edited), finished_run, progress=False)
    assert {name: row.total for name, row in ledger_rows(finished_run).items()} == {
        name: row.total for name, row in before.items()}  # refused before a charge


@pytest.mark.slow
def test_a_plan_killed_mid_sweep_resumes_without_recharging_finished_stages(write_mini_plan, tmp_path):
    plan_path = write_mini_plan(tmp_path)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "experiments", "run", "--plan", str(plan_path), "--out", str(out),
               "--no-progress"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:  # kill once the sweep's first run is done
        results = out / "results.json"
        runs = json.loads(results.read_text())["stages"].get("grid", {}).get("runs", []) if results.exists() else []
        if runs and runs[0].get("status") == "finished":
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    before = ledger_rows(out)
    assert before["baseline"].status == "finished" and before["grid/r=1"].status == "finished"

    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    after = ledger_rows(out)
    for name in ("baseline", "grid/r=1"):  # finished before the kill: not re-entered, not recharged
        assert (after[name].sessions, after[name].total) == (before[name].sessions, before[name].total)
    stages = json.loads((out / "results.json").read_text())["stages"]
    assert all(record["status"] == "finished" for record in stages.values())
    assert all(row.rerun == 0 for name, row in after.items() if name != "grid/r=2")  # only the killed run re-ran
    for entry in [run for record in stages.values() for run in record.get("runs", [])]:
        row = after[entry["experiment"]]
        assert row.total <= entry["flops_cap"] and entry["steps_done"] == entry["steps"]  # capped, and completed
        assert row.total - row.lost == entry["projected_flops"]  # its own share paid the work kept; the reserve the rest


def test_a_stage_command_runs_that_stage_alone(write_mini_plan, tmp_path):
    from experiments.cli import main

    plan = write_mini_plan(tmp_path)
    assert main(["baseline", "--plan", str(plan), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    stages = json.loads((tmp_path / "run" / "results.json").read_text())["stages"]
    assert list(stages) == ["backward-forward", "baseline"] and stages["baseline"]["status"] == "finished"
    assert set(ledger_rows(tmp_path / "run")) == {"backward-forward", "baseline"}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| grid | pending |" in report and "| baseline | finished |" in report


def test_runs_get_the_steps_the_dry_run_projects(real_data_path, tmp_path):
    """On a fresh ledger every training stage decides the steps the dry run printed."""
    from experiments.pipeline.runner import _decide_runs, open_run

    plan = load_plan("coursework")
    projection = dry_run(plan)
    run = open_run(plan, tmp_path / "run", progress=False)
    for name in ("lora-default", "grid"):
        decided = [entry["steps"] for entry in _decide_runs(run, plan.stage(name))]
        assert decided == [r.steps for r in projection.stage(name).runs]
    # independently: 40 % of 1e17 over 9 runs; a step and a validation of 32 windows every 100 steps at 512 tokens
    step = training_step_flops(CountSetup.of("qwen2.5-0.5b", lora_rank=8), 4, 512)
    validation = forward_flops(CountSetup.of("qwen2.5-0.5b", lora_rank=8), 512, batch=32).total
    share = int(0.40 * 10**17) // 9
    affordable = max(s for s in range(1, 2000) if s * step + -(-s // 100) * validation <= share)
    assert min(decided) == affordable


def test_report_opens_with_the_comparison_table(finished_run):
    report = (finished_run / "report.md").read_text()
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Comparison: untrained vs fine-tuned vs baselines"
    rows = {(cells[0], cells[1]): cells for cells in table_after(report, "## Comparison")}
    labels = [label for label, species in rows if species == "prey"]
    assert labels == ["untrained, greedy", "untrained, greedy, no grammar", "untrained, sampled median (2 samples)",
                      "fine-tuned, greedy", "fine-tuned, greedy, no grammar", "fine-tuned, sampled median (2 samples)",
                      "persistence", "linear extrapolation", "physics fit"]
    stages = json.loads((finished_run / "results.json").read_text())["stages"]
    sampled = next(m for m in stages["evaluate"]["methods"] if m["method"] == "llm-sampled-2")
    crps = sampled["species"]["predator"]["crps"]["median"]
    assert float(rows[("fine-tuned, sampled median (2 samples)", "predator")][6]) == pytest.approx(crps, rel=5e-4)
    assert "Trajectory 972 is not among the 2 test trajectories this run forecast" in report  # simulated data


def test_stored_crps_is_the_crps_of_the_stored_samples(finished_run):
    import numpy as np

    from experiments.forecasting.crps import per_trajectory_crps

    arrays = np.load(finished_run / "stages" / "evaluate" / "forecasts.npz")
    expected = per_trajectory_crps(arrays["llm-sampled-2/samples"], arrays["truth"])  # (N, 2)
    stages = json.loads((finished_run / "results.json").read_text())["stages"]
    sampled = next(m for m in stages["evaluate"]["methods"] if m["method"] == "llm-sampled-2")
    assert sampled["ids"] == arrays["ids"].tolist()
    for column, species in enumerate(("prey", "predator")):
        np.testing.assert_allclose(sampled["species"][species]["per_trajectory"]["crps"], expected[:, column])


def test_every_figure_of_the_report_is_a_png_and_a_pdf(finished_run, figure_check):
    report = (finished_run / "report.md").read_text()
    linked = {finished_run / figure for figure in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)}
    written = set(finished_run.rglob("*.png"))
    assert linked <= written and finished_run / "figures" / "audit.png" in linked
    assert {path.with_suffix(".png") for path in finished_run.rglob("*.pdf")} == written
    for png in sorted(written):
        figure_check(png)


def killed_in_evaluate(finished_run: Path, out: Path) -> dict:
    """A copy of the finished run at ``out`` as if killed in evaluate; returns the final stage's run entry."""
    shutil.copytree(finished_run, out)
    results = json.loads((out / "results.json").read_text())
    results["stages"]["evaluate"]["status"] = "running"
    (out / "results.json").write_text(json.dumps(results))
    return results["stages"]["final"]["runs"][0]


@pytest.mark.parametrize("damage", ["removed", "truncated"])
def test_evaluate_with_a_missing_or_corrupted_adapter_is_refused_in_one_line_before_a_charge(finished_run, tmp_path,
                                                                                              damage):
    out = tmp_path / "copy"
    checkpoint = out / killed_in_evaluate(finished_run, out)["checkpoint"]
    weights = next((checkpoint / "adapter").glob("*.safetensors"))
    shutil.rmtree(checkpoint) if damage == "removed" else weights.write_bytes(weights.read_bytes()[:40])
    before = {name: row.total for name, row in ledger_rows(out).items()}
    with pytest.raises(PlanError, match=r"forecasts with the adapter of run 'final', but .* cannot be used \(") as error:
        run_plan(load_plan(finished_run.parent / "mini.toml"), out, only=["evaluate"], progress=False)
    assert "\n" not in str(error.value) and str(error.value).endswith("nothing was charged")
    assert damage != "removed" or "no adapter config at" in str(error.value)
    assert {name: row.total for name, row in ledger_rows(out).items()} == before


def test_evaluate_killed_after_its_source_finished_resumes_with_the_intact_adapter(finished_run, tmp_path):
    killed_in_evaluate(finished_run, out := tmp_path / "copy")
    run_plan(load_plan(finished_run.parent / "mini.toml"), out, only=["evaluate"], progress=False)
    assert json.loads((out / "results.json").read_text())["stages"]["evaluate"]["status"] == "finished"

