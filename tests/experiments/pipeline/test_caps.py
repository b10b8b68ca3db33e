"""Crashes and the plan's budget, as real processes and signals: every stage is capped, a
crash's re-runs come out of the reserve (never out of a later stage's share), a plan that can
no longer fit is refused saying what was lost, and a grid cell killed before its first
validation is completed, not dropped from the selection."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from experiments.pipeline.plan import load_plan
from experiments.pipeline.runner import LEDGER_FILE, dry_run
from experiments.training.metrics_log import read_metrics
from flopcount import audit_report

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[3]

CRASH_STAGES = """
[[stages]]
kind = "baseline"

[[stages]]
name = "lora"
kind = "train"
max_steps = 1000
budget_share = 0.1

[[stages]]
name = "final"
kind = "final"
from = "lora"
max_steps = 1000
budget_share = "rest"

[[stages]]
name = "evaluate"
kind = "evaluate"
from = "final"
"""

GRID_STAGES = """
[[stages]]
name = "grid"
kind = "sweep"
grid = { lora_rank = [1, 2] }
steps = 4
"""


def crash_plan(write_plan, path: Path, reserve: float | None = None) -> Path:
    """A baseline, a training stage and a final that takes the rest, on 4e11 FLOPs."""
    return write_plan(path, CRASH_STAGES, name="crash", limit=4e11, reserve=reserve,
                      forecast={"series": 4, "plot_series": 0})


def command(plan: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "experiments", "run", "--plan", str(plan), "--out", str(out), "--no-progress"]


def environment() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def charges_of(ledger: Path, experiment: str) -> int:
    """Charges of ``experiment`` in the ledger (0 while there is none), read-only."""
    if not ledger.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as connection:
            (count,) = connection.execute("SELECT COUNT(*) FROM charges c JOIN experiments e ON e.id = "
                                          "c.experiment_id WHERE e.name = ?", (experiment,)).fetchone()
        return count
    except sqlite3.Error:
        return 0


def kill_when(child: subprocess.Popen, ready, timeout: float = 240) -> None:
    """SIGKILL ``child`` as soon as ``ready()`` is true; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if ready():
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL, f"it ended before the kill:\n{child.stderr.read()[-2000:]}"


def kill_during_baseline(plan: Path, out: Path) -> None:
    """Start the plan and SIGKILL it once the baseline has charged a new forecast batch."""
    before = charges_of(out / LEDGER_FILE, "baseline")
    child = subprocess.Popen(command(plan, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=environment())
    kill_when(child, lambda: charges_of(out / LEDGER_FILE, "baseline") > before)


def test_a_crashed_baseline_is_redone_from_the_reserve_and_no_later_stage_loses_steps(write_plan, tmp_path):
    plan_path = crash_plan(write_plan, tmp_path / "crash.toml", reserve=0.25)
    projection = dry_run(load_plan(plan_path))
    assert projection.fits and projection.reserve == 10**11
    out = tmp_path / "run"
    for _ in range(2):
        kill_during_baseline(plan_path, out)
    lost = audit_report(out / LEDGER_FILE).rows
    assert [row.name for row in lost] == ["backward-forward", "baseline"]

    finished = subprocess.run(command(plan_path, out), capture_output=True, text=True, env=environment())
    assert finished.returncode == 0, finished.stderr[-3000:]
    stages = json.loads((out / "results.json").read_text())["stages"]
    assert all(record["status"] == "finished" for record in stages.values())
    for name in ("lora", "final"):  # the steps the dry run printed: no share paid for the baseline's re-runs
        assert [entry["steps"] for entry in stages[name]["runs"]] == [r.steps for r in projection.stage(name).runs]
        assert [entry["steps_done"] for entry in stages[name]["runs"]] == [r.steps for r in projection.stage(name).runs]
    rows = {row.name: row for row in audit_report(out / LEDGER_FILE).rows}
    assert rows["baseline"].sessions == 3 and rows["baseline"].lost > 0
    assert rows["lora"].total == stages["lora"]["runs"][0]["projected_flops"]
    spent = sum(row.total for row in rows.values())
    assert spent <= projection.limit and spent > projection.total  # the re-runs were paid from the reserve


def test_a_plan_whose_reruns_no_longer_fit_is_refused_saying_what_was_lost(write_plan, tmp_path):
    """No reserve, and the final stage takes all the rest: one crash in the baseline leaves the
    plan unable to finish. The re-run is refused before any charge, naming the lost FLOPs."""
    plan_path = crash_plan(write_plan, tmp_path / "crash.toml")
    projection = dry_run(load_plan(plan_path))
    assert projection.fits
    out = tmp_path / "run"
    kill_during_baseline(plan_path, out)
    before = audit_report(out / LEDGER_FILE)
    lost = next(row.total for row in before.rows if row.name == "baseline")
    assert lost > projection.limit - projection.total  # more than the final (the rest) leaves unspent

    refused = subprocess.run(command(plan_path, out), capture_output=True, text=True, env=environment())
    assert refused.returncode == 4, refused.stderr[-3000:]  # stopped by the budget
    assert "Traceback" not in refused.stderr
    message = refused.stderr.strip().splitlines()[-1]
    assert "can no longer fit its budget" in message and "lost to interruptions" in message
    assert "baseline" in message and "new --out directory" in message and "reserve" in message
    after = audit_report(out / LEDGER_FILE)
    assert after.total == before.total and [r.sessions for r in after.rows] == [r.sessions for r in before.rows]


def test_a_grid_cell_killed_before_its_first_validation_is_completed_and_selected(write_plan, tmp_path):
    # cells that validate only after their last step
    plan_path = write_plan(tmp_path / "grid.toml", GRID_STAGES, name="grid-crash", limit=1e12,
                           training={"eval_every": 4})
    out = tmp_path / "run"
    metrics = out / "stages" / "grid__r-1" / "metrics.jsonl"
    child = subprocess.Popen(command(plan_path, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=environment())
    kill_when(child, lambda: metrics.is_file() and any(r["step"] >= 3 for r in read_metrics(metrics, kind="train")))
    assert not read_metrics(metrics, kind="validation")  # killed after its checkpoint at 2, before validating at 4

    finished = subprocess.run(command(plan_path, out), capture_output=True, text=True, env=environment())
    assert finished.returncode == 0, finished.stderr[-3000:]
    grid = json.loads((out / "results.json").read_text())["stages"]["grid"]
    assert [(e["status"], e["steps_done"]) for e in grid["runs"]] == [("finished", 4), ("finished", 4)]
    assert all(e["val_loss"] is not None for e in grid["runs"])
    assert grid["best"]["missing"] == []
    assert grid["best"]["val_loss"] == min(e["val_loss"] for e in grid["runs"])
    rows = {row.name: row for row in audit_report(out / LEDGER_FILE).rows}
    assert rows["grid/r=1"].lost > 0 and rows["grid/r=1"].steps == 4  # step 3's first charge, thrown away


def test_a_stage_the_ledger_can_no_longer_pay_is_refused_never_shrunk(write_plan, tmp_path):
    from experiments.pipeline.caps import unfinished_needs
    from experiments.pipeline.planner import project
    from experiments.pipeline.runner import PlanOverBudget, _decide_runs, open_run
    from flopcount import Ledger

    plan_path = crash_plan(write_plan, tmp_path / "crash.toml")
    plan = load_plan(plan_path)
    run = open_run(plan, tmp_path / "run", progress=False)
    planned = [entry["steps"] for entry in _decide_runs(run, plan.stage("lora"))]
    needs = unfinished_needs(run, project(plan, run.shapes))
    lost = plan.budget.limit - (sum(needs.values()) - needs["lora"] // 2)  # half of lora's share left
    with Ledger(run.ledger_path, plan.budget.limit) as ledger:
        session = ledger.begin_session("baseline", model="tiny", convention="coursework", flop_settings={})
        ledger.charge(session, "generation", lost, step=1, tokens=8)
        ledger.end_session(session, "failed")
    assert planned[0] > 1  # half the share would still pay for some steps: it is not shrunk to them
    with pytest.raises(PlanOverBudget, match="can no longer fit its budget"):
        _decide_runs(run, plan.stage("lora"))
