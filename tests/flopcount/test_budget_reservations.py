"""Generation reservations: committed at the maximum before the work, settled to the exact cost,
never past the limit; an unsettled one (a killed process) stays at its maximum in the audit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import flopcount
from flopcount.audit.table import audit_report
from flopcount.budget import Budget
from flopcount.ledger.ledger import BudgetExceeded, Ledger, LedgerError
from flopcount.ledger.sqlite_file import SCHEMA_VERSION

MODEL = "qwen2.5-0.5b"
REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPT, MAX_NEW, SAMPLES, BATCH = 300, 120, 3, 2


def generation(new_tokens: int) -> int:
    """FLOPs of the test's generation shapes with ``new_tokens`` new tokens, from the analytic model."""
    return flopcount.generation_flops(MODEL, PROMPT, new_tokens, SAMPLES, BATCH).total


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ledger.sqlite"


def test_a_reservation_holds_the_maximum_and_settles_to_the_exact_cost(path):
    with Budget(10**16, path, "forecast", MODEL) as budget:
        reservation = budget.reserve_generation(prompt_len=PROMPT, max_new_tokens=MAX_NEW, samples=SAMPLES,
                                                batch=BATCH, step=7)
        assert reservation.charge.flops == generation(MAX_NEW) and not reservation.settled
        assert budget.spent == generation(MAX_NEW)  # held while the work runs
        settled = reservation.settle(83)
        assert reservation.settled and settled.id == reservation.charge.id
        assert settled.flops == generation(83) < settled.reserved_flops == generation(MAX_NEW)
        assert settled.tokens == SAMPLES * BATCH * (PROMPT + 83 - 1)
        assert budget.spent == generation(83)
    with Ledger(path) as ledger:
        ledger.check()  # the running total still equals the sum of the charges
        (charge,) = ledger.charges()
        assert (charge.phase, charge.step, charge.flops, charge.is_open_reservation) == (
            "generation", 7, generation(83), False)
    assert audit_report(path).rows[0].unsettled_reservations == 0


def test_a_reservation_that_does_not_fit_is_refused_even_if_the_exact_cost_would(path):
    limit = generation(MAX_NEW) - 1  # the exact cost of a shorter generation would fit
    with pytest.raises(BudgetExceeded), Budget(limit, path, "forecast", MODEL) as budget:
        budget.reserve_generation(prompt_len=PROMPT, max_new_tokens=MAX_NEW, samples=SAMPLES, batch=BATCH)
    with Ledger(path) as ledger:
        assert ledger.spent == 0 and ledger.charges() == []


def test_settling_gives_back_what_a_later_reservation_can_use(path):
    limit = generation(MAX_NEW) + generation(1)
    with Budget(limit, path, "forecast", MODEL) as budget:
        first = budget.reserve_generation(prompt_len=PROMPT, max_new_tokens=MAX_NEW, samples=SAMPLES, batch=BATCH)
        with pytest.raises(BudgetExceeded):
            budget.reserve_generation(prompt_len=PROMPT, max_new_tokens=MAX_NEW, samples=SAMPLES, batch=BATCH)
        first.settle(1)
        budget.reserve_generation(prompt_len=PROMPT, max_new_tokens=MAX_NEW, samples=SAMPLES, batch=BATCH)
        assert budget.spent == generation(1) + generation(MAX_NEW) <= limit


def test_settling_is_checked(path):
    with Budget(10**16, path, "forecast", MODEL) as budget:
        reservation = budget.reserve_generation(prompt_len=PROMPT, max_new_tokens=MAX_NEW)
        ordinary = budget.charge("generation", budget.generation_cost(PROMPT, 5), step=0)
        for bad in (0, MAX_NEW + 1):
            with pytest.raises(ValueError, match=f"1..{MAX_NEW}"):
                reservation.settle(bad)
        with Ledger(path) as ledger:  # a second connection to the same file
            with pytest.raises(ValueError, match="never guarded"):
                ledger.settle(reservation.charge.id, reservation.charge.flops + 1, tokens=1)
            with pytest.raises(LedgerError, match="not a reservation"):
                ledger.settle(ordinary.id, 1, tokens=1)
        reservation.settle(10)
        with pytest.raises(LedgerError, match="already settled"):
            reservation.settle(10)
        assert budget.spent == ordinary.flops + flopcount.generation_flops(MODEL, PROMPT, 10).total


RESERVE_THEN_HANG = """
import sys, time
from flopcount.budget import Budget
with Budget(10**16, sys.argv[1], "forecast", "qwen2.5-0.5b") as budget:
    budget.reserve_generation(prompt_len=300, max_new_tokens=120, samples=3, batch=2)
    print("reserved", flush=True)
    time.sleep(60)  # the generation, killed before it can settle
"""


def test_a_process_killed_before_settling_leaves_the_maximum_charged_and_the_audit_says_so(path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    victim = subprocess.Popen([sys.executable, "-c", RESERVE_THEN_HANG, str(path)], stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert victim.stdout.readline().strip() == "reserved"
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    report = audit_report(path)  # checks integrity and the running total first
    (row,) = report.rows
    assert row.unsettled_reservations == 1 and row.total == generation(MAX_NEW)
    assert "1 unsettled reservations" in report.to_markdown()
    header, first = (line.split(",") for line in report.to_csv().splitlines()[:2])
    assert dict(zip(header, first))["unsettled_reservations"] == "1"


def test_a_version_1_ledger_is_upgraded_in_place_and_keeps_its_charges(path):
    with Ledger(path, 10**16) as ledger:
        session = ledger.begin_session("old", model="m", convention="coursework", flop_settings={})
        ledger.charge(session, "train", 12345, step=0, tokens=7)
    with closing(sqlite3.connect(path)) as connection:  # rewrite it as schema version 1 had it
        connection.execute("ALTER TABLE charges DROP COLUMN settled_at")
        connection.execute("ALTER TABLE charges DROP COLUMN reserved_flops")
        connection.execute("ALTER TABLE sessions DROP COLUMN checkpoint_step")  # added by version 4
        connection.execute("PRAGMA user_version = 1")
        connection.commit()
    with Ledger(path) as ledger:
        (old,) = ledger.charges()
        assert (old.flops, old.tokens, old.reserved_flops) == (12345, 7, None)
        session = ledger.begin_session("new", model="m", convention="coursework", flop_settings={})
        reserved = ledger.reserve(session, "generation", 1000, step=0, tokens=10)
        assert ledger.settle(reserved.id, 600, tokens=6).flops == 600
        assert ledger.spent == 12345 + 600
        ledger.check()
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
