"""The one check a Trainer run makes against the ledger before its first forward: a fresh start
(``global_step`` 0) under an experiment name that already trained and ended (finished or stopped)
would be a second run recorded as re-runs of the first, its work "lost to interruptions"."""

from __future__ import annotations

from flopcount.budget import Budget
from flopcount.ledger.ledger import Ledger


class ExperimentAlreadyRun(ValueError):
    """A fresh run under the name of an experiment that already trained to an end."""


def refuse_fresh_start_over_finished_run(budget: Budget, global_step: int) -> None:
    """Raise :class:`ExperimentAlreadyRun` when a run starting at ``global_step`` 0 would train
    again under ``budget.experiment``, which already charged training steps and ended finished
    or stopped. A restart after a crash (the experiment still ``running`` or ``failed``) and a
    resume from a checkpoint (``global_step`` > 0) are allowed."""
    if global_step > 0 or not budget.ledger_path.exists():
        return
    with Ledger(budget.ledger_path) as ledger:
        usage = next((u for u in ledger.snapshot().experiments if u.name == budget.experiment), None)
    if usage is None or not usage.train_steps or usage.status not in ("finished", "stopped"):
        return
    raise ExperimentAlreadyRun(
        f"experiment {budget.experiment!r} in {budget.ledger_path} already trained {usage.train_steps} steps and "
        f"{usage.status}; this run starts again at step 0, so its steps would be recorded as re-runs of the "
        "first run's. Resume it (train(resume_from_checkpoint=...)) or name a new experiment")
