"""What every experiment of a ledger spent (``flopcount.ledger.queries.experiment_usage``): lost work is the work
no checkpoint kept, or, without checkpoints, the re-runs."""

from __future__ import annotations

import pytest

from flopcount.ledger.ledger import Ledger


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ledger.sqlite"


def open_session(ledger: Ledger, name: str = "exp"):
    return ledger.begin_session(name, model="tiny", convention="coursework", flop_settings={"lora_rank": 4})


def test_work_past_a_sessions_last_checkpoint_is_lost_even_when_it_is_never_redone(path):
    """Session 1 checkpoints at step 3, charges steps 4-6 and dies; session 2 resumes from
    step 3, redoes 4-5 and stops at step 5 (its checkpoint). Lost: session 1's 4-6, which no
    checkpoint kept (the re-runs alone would say 4-5); session 2's re-runs are kept work."""
    with Ledger(path, 10**9) as ledger:
        first = open_session(ledger)
        ledger.mark_checkpoint(first, 0)
        for step in range(1, 7):
            ledger.charge(first, "train", 100, step=step, tokens=1)
            if step == 3:
                ledger.charge(first, "validation", 10, step=3, tokens=1)
                ledger.mark_checkpoint(first, 3)
        second = open_session(ledger)
        ledger.mark_checkpoint(second, 3)
        for step in (4, 5):
            ledger.charge(second, "train", 100, step=step, tokens=1)
        ledger.mark_checkpoint(second, 5)
        ledger.end_session(second, "stopped", "experiment cap exhausted at train step 6")
        (usage,) = ledger.snapshot().experiments
        assert usage.rerun_flops == 2 * 100
        assert usage.lost_flops == 3 * 100  # steps 4, 5, 6 of session 1
        assert usage.flops == 8 * 100 + 10


def test_without_checkpoints_the_lost_work_is_the_reruns(path):
    with Ledger(path, 10**9) as ledger:
        first = open_session(ledger)
        for step in (1, 2, 3):
            ledger.charge(first, "generation", 50, step=step, tokens=1)
        second = open_session(ledger)
        for step in (1, 2, 3, 4):
            ledger.charge(second, "generation", 50, step=step, tokens=1)
        (usage,) = ledger.snapshot().experiments
        assert usage.lost_flops == usage.rerun_flops == 3 * 50
