"""A fresh start over an experiment that already trained to an end is refused; a restart after a
crash and a resume from a checkpoint are not."""

from __future__ import annotations

import pytest

from flopcount import Budget
from flopcount.integrations import ExperimentAlreadyRun
from flopcount.integrations.trainer_run import refuse_fresh_start_over_finished_run


def trained(path, status: str) -> Budget:
    budget = Budget(10**12, path, "run", "qwen2.5-0.5b")
    with budget:
        budget.charge("train", 10, step=1)
        budget.finish(status, "why")
    return budget


@pytest.mark.parametrize("status", ["finished", "stopped"])
def test_a_fresh_start_over_a_run_that_ended_is_refused(tmp_path, status):
    budget = trained(tmp_path / "ledger.sqlite", status)
    with pytest.raises(ExperimentAlreadyRun, match=f"already trained 1 steps and {status}"):
        refuse_fresh_start_over_finished_run(budget, global_step=0)


def test_a_restart_after_a_crash_and_a_resume_are_allowed(tmp_path):
    refuse_fresh_start_over_finished_run(trained(tmp_path / "failed.sqlite", "failed"), global_step=0)
    refuse_fresh_start_over_finished_run(trained(tmp_path / "stopped.sqlite", "stopped"), global_step=1)
    refuse_fresh_start_over_finished_run(Budget(10**12, tmp_path / "new.sqlite", "run", "qwen2.5-0.5b"), 0)
