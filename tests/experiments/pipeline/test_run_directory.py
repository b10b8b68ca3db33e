"""A plan's run directory as real processes: nothing of the user's is lost, two runs never
share a directory, a resume on changed data is refused, and every refusal comes before the
first FLOP is charged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.pipeline.runner import LEDGER_FILE
from flopcount import audit_report
from lvdata import save_trajectories, simulate

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def command(plan: Path, out: Path, *extra: str, kind: str = "run") -> list[str]:
    return [sys.executable, "-m", "experiments", kind, "--plan", str(plan), "--out", str(out), "--no-progress", *extra]


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=ENV, timeout=timeout)


def charges(out: Path) -> dict[str, tuple[int, int]]:
    """``{experiment: (sessions, FLOPs)}`` of the run directory's ledger ({} without one)."""
    if not (out / LEDGER_FILE).exists():
        return {}
    return {row.name: (row.sessions, row.total) for row in audit_report(out / LEDGER_FILE).rows}


def wait_for(condition, child: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert child.poll() is None, f"the run ended early: {child.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def stage_status(out: Path, stage: str) -> str | None:
    try:
        return json.loads((out / "results.json").read_text())["stages"].get(stage, {}).get("status")
    except (OSError, ValueError):
        return None


def test_run_refuses_a_directory_of_the_users_files_and_touches_none(write_mini_plan, tmp_path):
    plan, out = write_mini_plan(tmp_path), tmp_path / "U"
    users = {"report.md": "my notes", "figures/audit.png": "my figure", "stages/baseline/results.md": "my table",
             "results.json.tmp": "my draft"}
    for name, text in users.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    finished = cli(*command(plan, out))
    assert finished.returncode == 3, finished.stderr
    assert "is not empty" in finished.stderr and "holds no results.json" in finished.stderr
    assert "Traceback" not in finished.stderr and finished.stderr.count("\n") == 1
    assert {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()} == users  # nothing added


@pytest.mark.slow
def test_a_directory_holding_another_plans_ledger_is_refused_before_a_charge(write_mini_plan, tmp_path):
    plan, out = write_mini_plan(tmp_path), tmp_path / "run"
    assert cli(*command(plan, out, kind="baseline")).returncode == 0
    before = charges(out)
    other = tmp_path / "other"
    other.mkdir()
    (other / LEDGER_FILE).write_bytes((out / LEDGER_FILE).read_bytes())  # a ledger without its results.json
    ledger_bytes = (other / LEDGER_FILE).read_bytes()
    refused = cli(*command(plan, other, kind="baseline"))
    assert refused.returncode == 3 and "holds no results.json" in refused.stderr, refused.stderr
    assert (other / LEDGER_FILE).read_bytes() == ledger_bytes and sorted(os.listdir(other)) == [LEDGER_FILE]
    (tmp_path / "edited").mkdir()
    edited = write_mini_plan(tmp_path / "edited", limit=3e12)
    refused = cli(*command(edited, out, kind="baseline"))  # another plan in this plan's directory
    assert refused.returncode == 3 and "with other settings" in refused.stderr, refused.stderr
    assert charges(out) == before  # the measurement was not charged again


def test_a_stage_run_before_its_source_is_refused_with_no_charge(write_mini_plan, tmp_path):
    plan, out = write_mini_plan(tmp_path), tmp_path / "new"
    finished = cli(*command(plan, out, kind="final"))
    assert finished.returncode == 3, finished.stderr
    assert "stage 'final' uses the best setting of 'context', which has not finished" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert charges(out) == {}  # no ledger was even opened: zero FLOPs charged


@pytest.mark.slow
def test_a_second_run_into_a_busy_directory_exits_6_naming_the_holders_pid(write_mini_plan, tmp_path):
    plan, out = write_mini_plan(tmp_path), tmp_path / "run"
    first = subprocess.Popen(command(plan, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        wait_for(lambda: stage_status(out, "baseline") is not None, first)
        second = cli(*command(plan, out))
        assert second.returncode == 6, second.stderr
        assert f"in use by another run (pid {first.pid}" in second.stderr and second.stderr.count("\n") == 1
        assert first.poll() is None  # the holder runs on, untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert {name: sessions for name, (sessions, _) in charges(out).items()}["backward-forward"] == 1  # charged once


@pytest.mark.slow
def test_a_resume_on_changed_data_is_refused_before_a_charge(write_mini_plan, tmp_path):
    plan, out, data = write_mini_plan(tmp_path), tmp_path / "run", tmp_path / "lv.h5"
    trajectories, times = simulate(30, seed=0)
    save_trajectories(data, trajectories, times)
    child = subprocess.Popen(command(plan, out, "--data", str(data)), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for(lambda: stage_status(out, "baseline") == "running", child)
    child.send_signal(signal.SIGKILL)  # killed in a forecast stage, then the file is changed
    child.wait()
    recorded = json.loads((out / "results.json").read_text())["data"]
    assert recorded["source"] == str(data.resolve()) and len(recorded["values_sha256"]) == 64
    save_trajectories(data, trajectories * np.float32(1.5), times, overwrite=True)
    before = charges(out)
    resumed = cli(*command(plan, out, "--data", str(data)))
    assert resumed.returncode == 3, resumed.stderr
    assert "the data changed since this run started" in resumed.stderr and "Traceback" not in resumed.stderr
    assert charges(out) == before
    save_trajectories(data, trajectories, times, overwrite=True)  # the original data again: the run resumes
    assert stage_status(out, "baseline") == "running"
    resumed = cli(*command(plan, out, "--data", str(data), kind="baseline"))
    assert resumed.returncode == 0, resumed.stderr
    assert stage_status(out, "baseline") == "finished"


@pytest.mark.parametrize(("setting", "message"), [
    ("data.simulate_systems=2", "leave the validation and test split(s) empty; this needs at least 6 systems"),
    ("data.simulate_systems=1", "leave the validation and test split(s) empty"),
    ("data.test_ids=[999]", "test_ids out of range [0, 30): [999]"),
])
def test_data_a_plan_cannot_use_is_one_line_before_any_charge(write_mini_plan, tmp_path, setting, message):
    plan, out = write_mini_plan(tmp_path), tmp_path / "run"
    for args in (command(plan, out, "--set", setting), [*command(plan, out, "--set", setting), "--dry-run"]):
        finished = cli(*args)
        assert finished.returncode == 3 and message in finished.stderr, finished.stderr
        assert "Traceback" not in finished.stderr and finished.stderr.count("\n") == 1
    assert charges(out) == {}


def test_prompts_longer_than_the_models_positions_are_refused_before_any_charge(write_mini_plan, tmp_path):
    plan, out = write_mini_plan(tmp_path), tmp_path / "run"
    finished = cli(*command(plan, out, "--set", "data.prompt_steps=90", "--set", "data.precision=8", kind="baseline"))
    assert finished.returncode == 3, finished.stderr
    assert "exceed the model's 2048 positions" in finished.stderr and "Traceback" not in finished.stderr
    assert charges(out) == {}


@pytest.mark.slow
def test_ctrl_c_in_a_forecast_stage_exits_130_with_one_line_and_records_the_interruption(write_mini_plan, tmp_path):
    plan, out = write_mini_plan(tmp_path), tmp_path / "run"
    child = subprocess.Popen(command(plan, out, kind="baseline"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=ENV)
    wait_for(lambda: "baseline" in charges(out), child)  # generating: the first batch is charged
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert err.splitlines()[-1].startswith("interrupted") and "run the same command again" in err
    assert "Traceback" not in err
    row = next(row for row in audit_report(out / LEDGER_FILE).rows if row.name == "baseline")
    assert (row.status, row.stop_reason) == ("stopped", "interrupted (Ctrl-C)")  # not "failed: KeyboardInterrupt"
    assert cli(*command(plan, out, kind="baseline")).returncode == 0  # the same command resumes
    assert stage_status(out, "baseline") == "finished"


def test_a_resume_on_other_base_weights_is_refused_before_a_charge(qwen_assets, write_mini_plan, tmp_path):
    from experiments.models.loading import save_tiny_model
    from experiments.pipeline.plan import load_plan
    from experiments.pipeline.runner import ModelChanged, check_preconditions, open_run

    model_dir = save_tiny_model(tmp_path / "base", qwen_assets, seed=0)
    plan_path = write_mini_plan(tmp_path)
    plan_path.write_text(plan_path.read_text().replace('source = "tiny"', f'source = "{model_dir}"'))
    plan, out = load_plan(plan_path), tmp_path / "out"
    check_preconditions(open_run(plan, out, progress=False), [])  # the first run records the weights' digest
    recorded = json.loads((out / "results.json").read_text())["model"]
    assert recorded["source"] == str(model_dir) and len(recorded["sha256"]) == 64
    check_preconditions(open_run(plan, out, progress=False), [])  # the same weights: resumes
    save_tiny_model(model_dir, qwen_assets, seed=1, overwrite=True)  # the base retrained, same architecture
    with pytest.raises(ModelChanged, match=r"the base model changed since this run started .* restore them"):
        check_preconditions(open_run(plan, out, progress=False), [])
    assert not (out / LEDGER_FILE).exists()  # nothing was charged
