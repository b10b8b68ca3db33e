"""The refusal a ledger raises when a charge would pass a limit."""

from __future__ import annotations


class BudgetExceeded(Exception):
    """A charge would take the total over the limit; it was refused and nothing was recorded.

    Attributes (FLOPs): ``cost`` of the refused charge, ``spent`` before it, ``limit``,
    ``remaining`` (= ``limit - spent``); and ``experiment``, ``phase``, ``step`` it was for.
    """

    scope = "budget"  # what ran out; ExperimentCapExceeded: one experiment's own cap

    def __init__(self, cost: int, spent: int, limit: int, experiment: str, phase: str, step: int):
        self.cost, self.spent, self.limit = cost, spent, limit
        self.remaining = limit - spent
        self.experiment, self.phase, self.step = experiment, phase, step
        super().__init__(
            f"experiment {experiment!r}, {phase} step {step}: a charge of {cost:.4g} FLOPs would "
            f"exceed the budget (spent {spent:.4g} of {limit:.4g} FLOPs, "
            f"{self.remaining:.4g} remaining); nothing was charged"
        )
