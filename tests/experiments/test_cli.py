"""``python -m experiments``: the subcommands, the offline dry run of the coursework plan, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from lvdata.exit_status import EXIT_STATUSES
from flopcount import CountSetup, training_step_flops

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ("run", "baseline", "train", "sweep", "context", "final", "evaluate", "report")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: python -m experiments {command}" in text and len(text.splitlines()) > 4


def test_coursework_dry_run_projects_every_stage_offline_without_weights(real_data_path):
    finished = run_cli("run", "--plan", "coursework", "--dry-run", "--json", HF_HUB_OFFLINE="1")
    assert finished.returncode == 0, finished.stderr
    projection = json.loads(finished.stdout)
    assert projection["limit"] == 10**17
    assert [stage["name"] for stage in projection["stages"]] == [
        "backward-forward", "baseline", "lora-default", "grid", "context", "final", "evaluate"]
    assert projection["total"] == sum(stage["flops"] for stage in projection["stages"]) <= 10**17
    grid = next(stage for stage in projection["stages"] if stage["name"] == "grid")
    assert len(grid["runs"]) == 9 and grid["flops"] <= 0.40 * 10**17
    step = training_step_flops(CountSetup.of("qwen2.5-0.5b", lora_rank=8), 4, 512)  # the grid's costliest cell
    assert all(run["steps"] >= (0.40 * 10**17 / 9) // step * 0.9 for run in grid["runs"])
    context = next(stage for stage in projection["stages"] if stage["name"] == "context")
    assert [run["settings"]["context"] for run in context["runs"]] == [128, 512, 768]
    assert context["runs"][0]["steps"] == 2000  # capped at max_steps: 128 tokens are cheap


def test_dry_run_table_is_readable(real_data_path):
    finished = run_cli("run", "--plan", "coursework", "--dry-run")
    assert finished.returncode == 0, finished.stderr
    assert "| grid | sweep | 9 |" in finished.stdout and "fits the budget" in finished.stdout


def test_a_bad_plan_is_a_clear_error_not_a_traceback(tmp_path):
    plan = tmp_path / "bad.toml"
    plan.write_text('[model]\nsource = "tiny"\nlayers = 3\n[budget]\nlimit = 1e12\n[[stages]]\nkind = "baseline"\n')
    finished = run_cli("run", "--plan", str(plan), "--dry-run")
    assert finished.returncode == 3  # bad input (2 is argparse's usage error)
    assert "unknown key(s) ['layers']" in finished.stderr and "Traceback" not in finished.stderr
    assert len(finished.stderr.strip().splitlines()) == 1


def test_run_without_out_or_dry_run_is_refused(capsys):
    assert main(["run", "--plan", "demo"]) == 3
    assert "--out is required" in capsys.readouterr().err


def test_report_of_a_directory_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path)]) == 3
    assert "no results.json" in capsys.readouterr().err


def test_set_data_and_model_override_the_plan_and_are_checked_like_the_toml(tmp_path, capsys):
    from experiments.cli import build_parser, plan_of

    data = tmp_path / "mine.h5"
    data.touch()  # a --data file must exist (its content is read when the data loads)
    args = build_parser().parse_args(["run", "--plan", "demo", "--dry-run", "--set", "training.learning_rate=2e-3",
                                      "--set", "forecast.series=2", "--data", str(data), "--model", "my/model"])
    plan = plan_of(args)
    assert (plan.training.learning_rate, plan.forecast.series) == (2e-3, 2)
    assert plan.data.path == str(data.resolve()) and plan.model.source == "my/model"
    assert "# --set training.learning_rate=2e-3" in plan.text  # another run-directory identity
    for bad, named in (("training.learnig_rate=1", "learnig_rate"), ("training.lora_rank=zero", "lora_rank"),
                       ("optimizer.lr=1", "section 'optimizer'"), ("learning_rate=1", "section.key=value")):
        assert main(["run", "--plan", "demo", "--dry-run", "--set", bad]) == 3
        assert named in capsys.readouterr().err


def test_the_data_file_comes_from_the_environment_when_no_flag_names_it(tmp_path, monkeypatch):
    from experiments.cli import build_parser, plan_of

    for name in ("env.h5", "flag.h5"):
        (tmp_path / name).touch()
    monkeypatch.setenv("LLMTIME_DATA", str(tmp_path / "env.h5"))
    assert plan_of(build_parser().parse_args(["run", "--plan", "demo"])).data.path == str(tmp_path / "env.h5")
    flag = plan_of(build_parser().parse_args(["run", "--plan", "demo", "--data", str(tmp_path / "flag.h5")]))
    assert flag.data.path == str(tmp_path / "flag.h5")


def test_a_plan_exits_4_only_when_the_budget_stopped_one_of_its_runs(tmp_path, capsys):
    """The exit status reads the runs' typed ``stopped_by_budget``, not the wording of their reason."""
    from experiments.cli import _finish
    from experiments.pipeline.plan import load_plan
    from experiments.pipeline.results import FORMAT, LEDGER_FILE, RESULTS_FILE
    from flopcount import Ledger

    plan = load_plan("demo", [])
    Ledger(tmp_path / LEDGER_FILE, 10**12).close()
    finished = {"status": "finished", "stop_reason": None, "stopped_by_budget": False}
    by_budget = {"status": "stopped", "stop_reason": "experiment cap reached", "stopped_by_budget": True}
    non_finite = {"status": "stopped", "stop_reason": "non-finite loss; budget exhausted?", "stopped_by_budget": False}
    for runs, status in (([finished], 0), ([finished, by_budget], 4), ([non_finite], 5), ([non_finite, by_budget], 4)):
        stage = {"kind": "sweep", "status": "finished", "runs": [{"experiment": f"grid/{i}", **run}
                                                                 for i, run in enumerate(runs)]}
        document = {"format": FORMAT, "plan": plan.name, "plan_text": "", "stages": {"grid": stage}}
        (tmp_path / RESULTS_FILE).write_text(json.dumps(document), encoding="utf-8")
        assert _finish(plan, tmp_path, as_json=True) == status, runs
        summary = json.loads(capsys.readouterr().out)
        assert [run["stopped_by_budget"] for run in summary["stages"][0]["runs"]] == [
            run["stopped_by_budget"] for run in runs]


def test_version_and_documented_exit_statuses(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("python -m experiments ")
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "4 stopped\nby the budget" in text or "4 stopped by the budget" in " ".join(text.split())
    with pytest.raises(SystemExit) as usage:
        main(["run", "--no-such-flag"])
    assert usage.value.code == 2


def test_the_exit_statuses_of_a_busy_directory_and_a_bug_are_documented(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "6 the run directory is in use by another process" in text and "1 an unexpected error (a bug)" in text


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_documents_the_exit_statuses_and_takes_debug(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert EXIT_STATUSES in capsys.readouterr().out
    from experiments.cli import build_parser

    required = {"run": ["--plan", "demo"], "report": ["--out", "x"],
                "train": ["--run-dir", "x", "--experiment", "e", "--budget", "1e12", "--ledger", "l", "--steps", "1"]}
    arguments = required.get(command, ["--plan", "demo", "--out", "x"])
    assert build_parser().parse_args([command, *arguments, "--debug"]).debug is True
    assert build_parser().parse_args(["--debug", command, *arguments]).debug is True
    assert build_parser().parse_args([command, *arguments]).debug is False


def test_debug_after_the_subcommand_shows_the_traceback():
    finished = run_cli("run", "--plan", "demo", "--dry-run", "--set", "training.learning_rate=nan", "--debug")
    assert finished.returncode == 3 and "Traceback" in finished.stderr and "PlanError" in finished.stderr  # same status


@pytest.mark.parametrize("origin", ["--data", "$LLMTIME_DATA"])
def test_a_mistyped_data_path_is_an_error_naming_its_origin_never_simulated(origin, tmp_path):
    missing = tmp_path / "no_such_file.h5"
    if origin == "--data":
        finished = run_cli("run", "--plan", "demo", "--dry-run", "--data", str(missing))
    else:
        finished = run_cli("run", "--plan", "demo", "--dry-run", LLMTIME_DATA=str(missing))
    assert finished.returncode == 3 and "fits" not in finished.stdout, finished.stdout
    assert finished.stderr == f"error: {missing} (from {origin}): file not found; the data file is found from " \
        "--data, then $LLMTIME_DATA, then the plan's [data] path, and a path given by --data or the variable is " \
        "never replaced by simulated data\n"


def test_a_missing_plan_data_file_names_all_three_places(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LLMTIME_DATA", raising=False)
    plan = tmp_path / "mine.toml"
    text = (ROOT / "experiments" / "plans" / "demo.toml").read_text(encoding="utf-8")
    text = text.replace('fallback = "simulate"', 'fallback = "error"')
    plan.write_text(text.replace("{shared}/data/lotka_volterra_data.h5", "gone.h5"), encoding="utf-8")
    assert main(["run", "--plan", str(plan), "--dry-run"]) == 3
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{tmp_path / 'gone.h5'} (from the plan's [data] path)" in error, error
    assert all(place in error for place in ("--data PATH", "$LLMTIME_DATA", "fallback = \"simulate\""))
    assert main(["run", "--plan", str(plan), "--dry-run", "--set", f"data.path='{tmp_path / 'also.h5'}'"]) == 3
    assert f"{tmp_path / 'also.h5'} (from --set data.path)" in capsys.readouterr().err


def test_report_of_a_truncated_results_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "results.json").write_text('{"format": "llmtime-plan-results/1", "plan": "demo", "stag')
    finished = run_cli("report", "--out", str(tmp_path))
    assert finished.returncode == 3, finished.stderr
    assert f"{tmp_path / 'results.json'}: unreadable results file (JSONDecodeError" in finished.stderr
    assert "Traceback" not in finished.stderr and finished.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["results.json"]  # no report, no figures, no lock written


def test_out_pointing_at_a_file_is_refused_and_the_file_kept(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    finished = run_cli("baseline", "--plan", "demo", "--out", str(target), "--no-progress")
    assert finished.returncode == 3 and "is a file, not a directory" in finished.stderr, finished.stderr
    assert "Traceback" not in finished.stderr and target.read_text() == "mine"


def test_a_truncated_or_misplaced_data_file_is_one_line_naming_it(tmp_path):
    from lvdata import save_trajectories, simulate

    data = tmp_path / "lv.h5"
    save_trajectories(data, *simulate(10, seed=0))
    data.write_bytes(data.read_bytes()[:3000])  # an interrupted copy
    finished = run_cli("run", "--plan", "demo", "--dry-run", "--data", str(data))
    assert finished.returncode == 3, finished.stderr
    assert f"{data}: unreadable HDF5 file" in finished.stderr and "Traceback" not in finished.stderr
    folder = tmp_path / "folder.h5"  # the demo falls back to simulating only when the file is missing
    folder.mkdir()
    finished = run_cli("run", "--plan", "demo", "--dry-run", "--data", str(folder))
    assert finished.returncode == 3 and f"{folder}: not a regular file" in finished.stderr, finished.stderr


def test_a_dry_run_refuses_a_limit_the_real_run_refuses_and_leaves_no_out(tmp_path, capsys):
    assert main(["run", "--plan", "demo", "--dry-run", "--set", "budget.limit=1e99"]) == 3
    assert "fits" not in capsys.readouterr().out
    assert main(["run", "--plan", "demo", "--out", str(tmp_path / "out"), "--set", "budget.limit=1e99"]) == 3
    assert not (tmp_path / "out").exists()
