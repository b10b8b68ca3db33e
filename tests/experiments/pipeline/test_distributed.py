"""A whole plan on two CPU processes (torchrun, gloo) against the same plan on one process:
the same ledger charges, the same stage outcomes and selections, the same forecasts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.pipeline.distributed import check_batches_split, per_rank_config
from experiments.pipeline.plan import PlanError, load_plan
from experiments.training.config import TrainConfig
from flopcount import Ledger

REPO_ROOT = Path(__file__).resolve().parents[3]

# every stage kind but `final` (a `train` like the others), 3 forecast calls per pass: 2 rounds on 2 ranks
STAGES = """
[[stages]]
kind = "baseline"

[[stages]]
name = "lora"
kind = "train"
max_steps = 2
budget_share = 0.1

[[stages]]
name = "grid"
kind = "sweep"
grid = { lora_rank = [1, 2] }
max_steps = 3
budget_share = 0.3

[[stages]]
name = "context"
kind = "context"
from = "grid"
contexts = [16, 32]
max_steps = 3
budget_share = "rest"

[[stages]]
name = "evaluate"
kind = "evaluate"
from = "context"
"""


def two_ranks_plan(write_plan, path: Path, batch_size: int = 2) -> Path:
    return write_plan(path, STAGES, name="two-ranks", training={"batch_size": batch_size},
                      forecast={"series": 3, "batch_size": 1})


def start(launcher: list[str], plan: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([*launcher, "-m", "experiments", "run", "--plan", str(plan), "--out", str(out),
                             "--no-progress", "--json"], cwd=out.parent, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, f"exit {process.returncode}\n{stderr[-4000:]}"
    return stdout


@pytest.fixture(scope="module")
def runs(write_plan, tmp_path_factory) -> tuple[Path, Path, str]:
    """The plan run by one process and by two (at the same time: the 2 cores are shared)."""
    root = tmp_path_factory.mktemp("plan-ranks")
    plan = two_ranks_plan(write_plan, root / "plan.toml")
    one, two = root / "one", root / "two"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    processes = start([sys.executable], plan, one), start(torchrun, plan, two)
    outputs = [finish(process) for process in processes]
    return one, two, outputs[1]


def charges(out: Path) -> list[tuple]:
    with Ledger(out / "ledger.sqlite") as ledger:
        ledger.check()
        return [(c.experiment, c.phase, c.step, c.flops, c.tokens, c.is_rerun, c.session_id) for c in ledger.charges()]


def stages(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["stages"]


@pytest.mark.slow
def test_the_ledger_holds_exactly_the_charges_of_one_process(runs):
    one, two, _ = runs
    reference = charges(one)
    assert {experiment.split("/")[0] for experiment, *_ in reference} >= {"baseline", "lora", "grid", "context",
                                                                           "evaluate"}
    assert charges(two) == reference  # same experiments, phases, steps, FLOPs, tokens, order and sessions
    with Ledger(one / "ledger.sqlite") as ledger_one, Ledger(two / "ledger.sqlite") as ledger_two:
        assert ledger_two.spent == ledger_one.spent > 0
        assert ledger_two.spent_by_experiment() == ledger_one.spent_by_experiment()


@pytest.mark.slow
def test_every_stage_finishes_with_the_same_runs_and_selections(runs):
    one, two, _ = runs
    single, double = stages(one), stages(two)
    assert list(double) == list(single)
    assert [record["status"] for record in double.values()] == ["finished"] * len(single)
    for name, record in single.items():
        assert double[name].get("best", {}).get("experiment") == record.get("best", {}).get("experiment"), name
        for mine, theirs in zip(double[name].get("runs", []), record.get("runs", []), strict=True):
            same = ("experiment", "settings", "steps", "projected_flops", "status", "steps_done")
            assert {key: mine[key] for key in same} == {key: theirs[key] for key in same}
            assert mine["settings"]["batch_size"] == 2  # the plan's global batch, not a rank's share
            for loss in ("train_loss", "val_loss", "selection_val_loss"):  # DDP sums in another order
                expected = None if theirs.get(loss) is None else pytest.approx(theirs[loss], rel=1e-5)
                assert mine.get(loss) == expected, (mine["experiment"], loss)


@pytest.mark.slow
def test_forecast_stages_give_the_same_forecasts_and_metrics(runs):
    one, two, _ = runs
    for stage in ("baseline", "evaluate"):
        single, double = (np.load(out / "stages" / stage / "forecasts.npz") for out in (one, two))
        assert sorted(double.files) == sorted(single.files)
        for key in single.files:  # every call made on one rank or the other writes what one process writes
            np.testing.assert_array_equal(double[key], single[key], err_msg=f"{stage}: {key}")
        methods = lambda out: {m["method"]: m for m in stages(out)[stage]["methods"]}  # noqa: E731
        assert methods(two) == methods(one)
        assert len(stages(two)[stage]["methods"]) == 6  # greedy, unconstrained, sampled and three baselines


@pytest.mark.slow
def test_rank_0_alone_reports(runs):
    one, two, stdout = runs
    assert stdout.count('"plan": "two-ranks"') == 1  # one summary: the other rank prints nothing
    with Ledger(one / "ledger.sqlite") as ledger:
        assert json.loads(stdout[stdout.index("{"):])["spent"] == ledger.spent
    assert (two / "report.md").is_file() and not list(two.glob("**/*.tmp"))


def uneven_plan(write_plan, directory: Path) -> Path:
    return two_ranks_plan(write_plan, directory / "uneven.toml", batch_size=3)


def test_a_global_batch_must_split_evenly_over_the_ranks(write_plan, tmp_path):
    plan = load_plan(uneven_plan(write_plan, tmp_path))
    check_batches_split(plan, 1)
    check_batches_split(plan, 3)
    with pytest.raises(PlanError, match=r"batch_size \[3\] \(the global batch\) does not split evenly over 2"):
        check_batches_split(plan, 2)
    assert per_rank_config(TrainConfig("run", steps=1, batch_size=4), 2).batch_size == 2
    assert per_rank_config(TrainConfig("run", steps=1, batch_size=3), 1).batch_size == 3
    with pytest.raises(PlanError, match="run 'run': batch_size 3"):
        per_rank_config(TrainConfig("run", steps=1, batch_size=3), 2)


@pytest.mark.slow
def test_two_processes_refuse_an_uneven_batch_before_any_work_in_one_line(write_plan, tmp_path):
    out = tmp_path / "out"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    process = start(torchrun, uneven_plan(write_plan, tmp_path), out)
    _, stderr = process.communicate(timeout=300)  # rank 0 exits, the launcher stops the other: no hang
    assert process.returncode != 0
    assert "error: plan 'two-ranks': batch_size [3] (the global batch) does not split evenly over 2 processes" in stderr
    assert not out.exists()
