"""BudgetExceeded: the refusal carries the figures it names."""

from __future__ import annotations

import pytest

from flopcount.ledger.errors import BudgetExceeded


def test_the_refusal_names_the_experiment_the_step_and_what_remains():
    refusal = BudgetExceeded(cost=3 * 10**15, spent=9 * 10**16, limit=10**17, experiment="grid/r=8", phase="train",
                             step=41)
    assert (refusal.cost, refusal.spent, refusal.limit, refusal.remaining) == (3 * 10**15, 9 * 10**16, 10**17, 10**16)
    assert (refusal.experiment, refusal.phase, refusal.step, refusal.scope) == ("grid/r=8", "train", 41, "budget")
    assert str(refusal) == ("experiment 'grid/r=8', train step 41: a charge of 3e+15 FLOPs would exceed the budget "
                            "(spent 9e+16 of 1e+17 FLOPs, 1e+16 remaining); nothing was charged")
    with pytest.raises(BudgetExceeded):
        raise refusal
