"""The SQLite FLOP ledger in one process: limit, exact totals, refusals, re-runs, sessions."""

from __future__ import annotations

import random
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopcount.ledger.ledger import BudgetExceeded, Ledger, LedgerError
from flopcount.ledger.sqlite_file import APPLICATION_ID, MAX_FLOPS, PHASES, SCHEMA_VERSION

SETTINGS = {"lora_rank": 4}


def open_session(ledger: Ledger, name: str = "exp", settings: dict = SETTINGS):
    return ledger.begin_session(name, model="tiny", convention="coursework", flop_settings=settings)


def raw(path, sql: str) -> list[tuple]:
    """Query the ledger file with plain sqlite3, independently of ``Ledger``."""
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ledger.sqlite"


def test_a_new_ledger_identifies_itself_and_keeps_its_limit(path):
    with Ledger(path, 10**17) as ledger:
        assert ledger.limit == 10**17 and ledger.spent == 0 and ledger.remaining == 10**17
    assert raw(path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]
    assert ("format", "flopcount-ledger") in raw(path, "SELECT key, value FROM meta")
    with Ledger(path) as reopened:  # the limit is read back from the file
        assert reopened.limit == 10**17
    assert not list(path.parent.glob(".*.tmp"))


def test_float_limit_that_is_a_whole_number_is_stored_exactly(path):
    with Ledger(path, 1e17) as ledger:
        assert ledger.limit == 100_000_000_000_000_000 and isinstance(ledger.limit, int)


@pytest.mark.parametrize(
    "limit, error",
    [(0, ValueError), (-5, ValueError), (MAX_FLOPS + 1, ValueError), (1.5e3 + 0.25, ValueError),
     (float("inf"), ValueError), (True, TypeError), ("1e17", TypeError)],
)  # fmt: skip
def test_a_limit_that_is_not_a_positive_integer_up_to_max_flops_is_refused(path, limit, error):
    with pytest.raises(error, match="limit"):
        Ledger(path, limit)
    assert not path.exists()


def test_reopening_with_another_limit_names_both_and_changes_nothing(path):
    Ledger(path, 1000).close()
    before = path.read_bytes()
    with pytest.raises(LedgerError, match=r"limit of 1000 FLOPs.*asks for 2000"):
        Ledger(path, 2000)
    assert path.read_bytes() == before


def test_a_missing_ledger_is_not_created_without_a_limit(path):
    with pytest.raises(LedgerError, match="no ledger at"):
        Ledger(path)
    assert not path.exists()


def test_totals_are_exact_after_many_charges_of_huge_integers(path):
    rng = random.Random(7)
    costs = [rng.randrange(10**12, 10**15) for _ in range(300)]
    experiments = ["a", "b", "c"]
    expected = dict.fromkeys(experiments, 0)
    with Ledger(path, 10**18) as ledger:
        sessions = {name: open_session(ledger, name) for name in experiments}
        for index, flops in enumerate(costs):
            name = experiments[index % 3]
            ledger.charge(sessions[name], PHASES[index % 3], flops, step=index, tokens=index)
            expected[name] += flops
        assert ledger.spent == sum(costs) == sum(expected.values())
        assert ledger.remaining == 10**18 - sum(costs)
        assert ledger.spent_by_experiment() == expected
        ledger.check()
    assert raw(path, "SELECT SUM(flops), COUNT(*) FROM charges") == [(sum(costs), 300)]
    assert raw(path, "SELECT spent FROM running_total") == [(sum(costs),)]


@settings(max_examples=25, deadline=None)
@given(
    limit=st.integers(1, 10**6),
    charges=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(PHASES), st.integers(0, 4 * 10**5)), max_size=25),
)
def test_the_running_total_always_equals_the_sum_of_accepted_charges(limit, charges):
    """Any sequence of charges from three experiments: each is accepted iff it fits."""
    with tempfile.TemporaryDirectory() as directory, Ledger(Path(directory) / "l.sqlite", limit) as ledger:
        file = ledger.path
        sessions = [open_session(ledger, f"exp-{index}") for index in range(3)]
        expected = 0
        for step, (who, phase, flops) in enumerate(charges):
            fits = expected + flops <= limit
            try:
                ledger.charge(sessions[who], phase, flops, step=step, tokens=1)
            except BudgetExceeded:
                assert not fits
            else:
                assert fits
                expected += flops
            assert ledger.spent == expected <= limit
            assert raw(file, "SELECT COALESCE(SUM(flops), 0) FROM charges") == [(expected,)]


def test_a_charge_over_the_limit_is_refused_and_records_nothing(path):
    with Ledger(path, 1000) as ledger:
        session = open_session(ledger)
        ledger.charge(session, "train", 600, step=0, tokens=8)
        with pytest.raises(BudgetExceeded) as refused:
            ledger.charge(session, "train", 401, step=1, tokens=8)
        assert (refused.value.cost, refused.value.spent, refused.value.limit) == (401, 600, 1000)
        assert refused.value.remaining == 400 and refused.value.step == 1
        assert "400 remaining" in str(refused.value) and "'exp'" in str(refused.value)
        assert ledger.spent == 600 and len(ledger.charges()) == 1
        ledger.charge(session, "train", 400, step=1, tokens=8)  # exactly up to the limit fits
        with pytest.raises(BudgetExceeded):
            ledger.charge(session, "validation", 1, step=1, tokens=1)
        assert ledger.spent == ledger.limit == 1000
        ledger.check()


@pytest.mark.parametrize(
    "phase, flops, step, tokens, error",
    [("training", 1, 0, 0, ValueError), ("train", -1, 0, 0, ValueError),
     ("train", 2.5, 0, 0, ValueError), ("train", 1, -1, 0, ValueError),
     ("train", 1, "3", 0, TypeError), ("train", 1, 0, None, TypeError)],
)  # fmt: skip
def test_malformed_charges_are_refused(path, phase, flops, step, tokens, error):
    with Ledger(path, 1000) as ledger:
        with pytest.raises(error):
            ledger.charge(open_session(ledger), phase, flops, step=step, tokens=tokens)
        assert ledger.spent == 0 and ledger.charges() == []


def test_payload_is_kept_with_its_charge_and_size_is_bounded(path):
    with Ledger(path, 1000) as ledger:
        session = open_session(ledger)
        ledger.charge(session, "train", 5, step=3, tokens=1, payload={"loss": 1.25})
        with pytest.raises(ValueError, match="payload"):
            ledger.charge(session, "train", 5, step=4, tokens=1, payload="x" * 5000)
        (charge,) = ledger.charges("exp")
        assert (charge.payload, charge.step, charge.flops) == ({"loss": 1.25}, 3, 5)


def test_work_repeated_by_a_later_session_is_itemised_as_rerun(path):
    """Session 1 runs steps 0-9 and two validation batches at step 5, then dies; session 2
    resumes from a checkpoint at step 6 and does three validation batches at step 5."""
    with Ledger(path, 10**9) as ledger:
        first = open_session(ledger)
        for step in range(10):
            ledger.charge(first, "train", 100, step=step, tokens=1)
        for _ in range(2):
            ledger.charge(first, "validation", 10, step=5, tokens=1)
        second = open_session(ledger)  # first never ended: it was killed
        train = [ledger.charge(second, "train", 100, step=step, tokens=1) for step in range(6, 14)]
        validation = [ledger.charge(second, "validation", 10, step=5, tokens=1) for _ in range(3)]

        assert [charge.is_rerun for charge in train] == [step <= 9 for step in range(6, 14)]
        assert [charge.is_rerun for charge in validation] == [True, True, False]
        (usage,) = ledger.snapshot().experiments
        assert usage.rerun_flops == 4 * 100 + 2 * 10
        assert usage.flops == 18 * 100 + 5 * 10 and usage.train_steps == 14 and usage.sessions == 2
        third = open_session(ledger)  # a session that redoes step 12: re-run of session 2's
        assert ledger.charge(third, "train", 100, step=12, tokens=1).is_rerun


def test_within_one_session_repeated_steps_are_not_reruns(path):
    with Ledger(path, 10**9) as ledger:
        session = open_session(ledger)
        charges = [ledger.charge(session, "generation", 7, step=0, tokens=1) for _ in range(4)]
        assert not any(charge.is_rerun for charge in charges)


def test_sessions_record_exit_status_and_a_resume_reopens_the_experiment(path):
    with Ledger(path, 10**9) as ledger:
        session = open_session(ledger)
        ledger.end_session(session, "stopped", "budget exhausted at step 3")
        (usage,) = ledger.snapshot().experiments
        assert (usage.status, usage.stop_reason) == ("stopped", "budget exhausted at step 3")
        assert usage.ended_at is not None
        open_session(ledger)
        (usage,) = ledger.snapshot().experiments
        assert (usage.status, usage.stop_reason, usage.ended_at, usage.sessions) == ("running", None, None, 2)
        with pytest.raises(ValueError, match="status"):
            ledger.end_session(session, "crashed")
    assert raw(path, "SELECT exit_status FROM sessions ORDER BY id") == [("stopped",), (None,)]


def test_resuming_an_experiment_with_another_cost_model_is_refused(path):
    with Ledger(path, 10**9) as ledger:
        open_session(ledger, settings={"lora_rank": 4})
        with pytest.raises(LedgerError, match="mix cost models"):
            open_session(ledger, settings={"lora_rank": 8})
        with pytest.raises(LedgerError, match="convention"):
            ledger.begin_session("exp", model="tiny", convention="exact", flop_settings=SETTINGS)
        assert ledger.snapshot().experiments[0].sessions == 1


def test_check_detects_a_running_total_that_disagrees_with_the_charges(path):
    with Ledger(path, 10**9) as ledger:
        ledger.charge(open_session(ledger), "train", 50, step=0, tokens=1)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE running_total SET spent = 49")
    with pytest.raises(LedgerError, match="running total 49 FLOPs.*sum to 50"):
        Ledger(path)  # refused on opening now, before anything can be charged


def test_another_run_under_a_recorded_name_is_refused_not_counted_as_a_rerun(path):
    with Ledger(path, 10**6) as ledger:
        first = ledger.begin_session("exp", model="tiny", convention="coursework", flop_settings=SETTINGS,
                                     config={"lr": 1e-3, "run_dir": "runs/a"})
        ledger.charge(first, "train", 10, step=1, tokens=4)
        ledger.end_session(first, "finished")
        with pytest.raises(LedgerError, match=r"another config \(differing: lr, run_dir\)"):
            ledger.begin_session("exp", model="tiny", convention="coursework", flop_settings=SETTINGS,
                                 config={"lr": 1e-2, "run_dir": "runs/b"})
        resumed = ledger.begin_session("exp", model="tiny", convention="coursework", flop_settings=SETTINGS,
                                       config={"run_dir": "runs/a", "lr": 1e-3})  # the same run resumes
        assert ledger.charge(resumed, "train", 10, step=1, tokens=4).is_rerun
        assert ledger.spent == 20
    assert raw(path, "SELECT COUNT(*) FROM sessions") == [(2,)]


def test_an_edited_running_total_or_limit_is_refused_when_the_ledger_opens(tmp_path):
    import sqlite3

    from flopcount import Budget

    path = tmp_path / "ledger.sqlite"
    with Budget(5e12, path, "exp", "qwen2.5-0.5b") as guard:
        guard.charge("train", 4 * 10**12, step=0)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE running_total SET spent = 0")
    with pytest.raises(LedgerError, match="running total 0 FLOPs, but its charges sum to 4000000000000"):
        Budget(5e12, path, "exp", "qwen2.5-0.5b").__enter__()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE running_total SET spent = 4000000000000")
        db.execute("UPDATE meta SET value = 9000000000000 WHERE key = 'limit_flops'")
    with pytest.raises(LedgerError, match="not the one the ledger was created with"):
        Ledger(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 5000000000000 WHERE key = 'limit_flops'")
    with Ledger(path) as ledger:  # restored: accepted, nothing lost
        assert (ledger.limit, ledger.spent) == (5 * 10**12, 4 * 10**12)
