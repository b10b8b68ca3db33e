"""FLOP counts beyond 64 bits: stored, compared and summed exactly (ledger schema version 3)."""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopcount.ledger.exact import MAX_FLOPS, SQLITE_INTEGER_MAX, encode_flops
from flopcount.ledger.ledger import BudgetExceeded, Ledger, LedgerError

E26, E27 = 10**26, 10**27


def open_session(ledger: Ledger, name: str = "exp"):
    return ledger.begin_session(name, model="m", convention="coursework", flop_settings={})


def raw(path, sql: str, parameters=()) -> list[tuple]:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql, parameters).fetchall()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ledger.sqlite"


@pytest.mark.parametrize("limit, charge", [(E27, E26), (1e27, 1e26)], ids=["ints", "floats"])
def test_a_ledger_with_limit_1e27_accepts_charges_of_1e26_and_reports_exact_integer_totals(path, limit, charge):
    with Ledger(path, limit) as ledger:
        assert ledger.limit == E27
        session = open_session(ledger)
        for step in range(9):
            assert ledger.charge(session, "train", charge, step=step, tokens=4).flops == E26
        ledger.charge(session, "validation", E26 - 7, step=9, tokens=1)  # not a round number: floats would lose it
        assert ledger.spent == E27 - 7 and ledger.remaining == 7
        with pytest.raises(BudgetExceeded) as refused:
            ledger.charge(session, "train", 8, step=10, tokens=1)
        assert (refused.value.spent, refused.value.remaining, refused.value.limit) == (E27 - 7, 7, E27)
        ledger.charge(session, "train", 7, step=10, tokens=1)  # exactly up to the limit fits
        assert ledger.spent == ledger.limit == E27 and type(ledger.spent) is int
        assert ledger.spent_by_experiment() == {"exp": E27}
        (usage,) = ledger.snapshot().experiments
        assert usage.flops_by_phase == {"train": 9 * E26 + 7, "validation": E26 - 7, "generation": 0}
        assert usage.flops == E27 and usage.train_steps == 10
        assert [c.flops for c in ledger.charges()] == [E26] * 9 + [E26 - 7, 7]
        ledger.check()
    with Ledger(path) as reopened:  # the limit and the totals are read back exactly
        assert (reopened.limit, reopened.spent) == (E27, E27)


def test_counts_beyond_64_bits_are_canonical_decimal_text_and_the_rest_stays_integer(path):
    with Ledger(path, E27) as ledger:
        session = open_session(ledger)
        for step, flops in enumerate([SQLITE_INTEGER_MAX, SQLITE_INTEGER_MAX + 1, 5, E26]):
            ledger.charge(session, "train", flops, step=step, tokens=1)
    assert raw(path, "SELECT typeof(flops), flops FROM charges ORDER BY id") == [
        ("integer", SQLITE_INTEGER_MAX), ("text", str(SQLITE_INTEGER_MAX + 1)), ("integer", 5), ("text", str(E26))]
    assert raw(path, "SELECT typeof(spent), spent FROM running_total") == [("text", str(2**64 + 4 + E26))]
    assert raw(path, "SELECT typeof(value), value FROM meta WHERE key = 'limit_flops'") == [("text", str(E27))]


@pytest.mark.parametrize(
    "bad",
    ["0" + "1" * 20, "12a4567890123456789012", "-100000000000000000000", "5", "9223372036854775807", "1" * 39, "", 1e27, -1,
     b"100000000000000000000"],
    ids=["leading zero", "not digits", "negative", "small as text", "2**63-1 as text", "39 digits", "empty", "real",
         "negative int", "blob"],
)  # fmt: skip
def test_the_file_itself_refuses_a_count_in_any_other_form(path, bad):
    with Ledger(path, E27) as ledger:
        ledger.charge(open_session(ledger), "train", 10, step=0, tokens=1)
    with closing(sqlite3.connect(path)) as connection:
        for sql in ("UPDATE charges SET flops = ?", "UPDATE running_total SET spent = ?",
                    "UPDATE charges SET reserved_flops = ?"):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                connection.execute(sql, (bad,))
    assert raw(path, "SELECT flops, reserved_flops FROM charges") == [(10, None)]


@pytest.mark.parametrize(
    "reserved, charged, accepted",
    [(E26, E26, True), (E26 + 1, E26, True), (E26, E26 + 1, False), (10**20, 9 * 10**19, True),
     (9 * 10**19, 10**20, False), (10**20, 5, True), (5, 10**20, False), (7, 5, True), (5, 7, False)],
)  # fmt: skip
def test_the_file_refuses_a_reservation_below_its_charge_at_any_size(path, reserved, charged, accepted):
    with Ledger(path, E27) as ledger:
        ledger.reserve(open_session(ledger), "generation", 10, step=0, tokens=1)
    update = "UPDATE charges SET flops = ?, reserved_flops = ?"
    values = (encode_flops(charged), encode_flops(reserved))
    with closing(sqlite3.connect(path)) as connection:
        if accepted:
            connection.execute(update, values)
        else:
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                connection.execute(update, values)


def test_a_reservation_of_1e26_settles_exactly(path):
    with Ledger(path, E27) as ledger:
        session = open_session(ledger)
        ledger.charge(session, "train", 3 * E26 + 1, step=0, tokens=1)
        reservation = ledger.reserve(session, "generation", 5 * E26, step=0, tokens=100)
        assert ledger.spent == 8 * E26 + 1
        with pytest.raises(BudgetExceeded):
            ledger.reserve(session, "generation", 2 * E26, step=1, tokens=1)  # 1 FLOP too much
        with pytest.raises(ValueError, match="reserved 500000000000000000000000000 FLOPs"):
            ledger.settle(reservation.id, 5 * E26 + 1, tokens=100)
        settled = ledger.settle(reservation.id, 123_456_789_012_345_678_901_234_567, tokens=60)
        assert (settled.flops, settled.reserved_flops) == (123_456_789_012_345_678_901_234_567, 5 * E26)
        assert ledger.spent == 3 * E26 + 1 + 123_456_789_012_345_678_901_234_567
        ledger.check()


def test_the_largest_count_is_max_flops_and_beyond_it_is_refused(path):
    assert MAX_FLOPS == 10**38 - 1
    with Ledger(path, MAX_FLOPS) as ledger:
        session = open_session(ledger)
        ledger.charge(session, "train", MAX_FLOPS - 1, step=0, tokens=1)
        ledger.charge(session, "train", 1, step=1, tokens=1)
        assert ledger.spent == MAX_FLOPS
        with pytest.raises(ValueError, match=f"charge \\(FLOPs\\) must be between 0 and {MAX_FLOPS}"):
            ledger.charge(session, "train", MAX_FLOPS + 1, step=2, tokens=1)
        ledger.check()


def test_steps_and_tokens_stay_64_bit_and_are_refused_beyond(path):
    with Ledger(path, E27) as ledger:
        session = open_session(ledger)
        ledger.charge(session, "train", 1, step=SQLITE_INTEGER_MAX, tokens=SQLITE_INTEGER_MAX)
        for step, tokens, what in ((2**63, 0, "step"), (0, 2**63, "tokens")):
            with pytest.raises(ValueError, match=f"{what} must be between 0 and {SQLITE_INTEGER_MAX}, got {2**63}"):
                ledger.charge(session, "train", 1, step=step, tokens=tokens)
        assert ledger.spent == 1 and len(ledger.charges()) == 1


def test_check_finds_a_running_total_off_by_one_flop_at_1e27(path):
    with Ledger(path, E27) as ledger:
        ledger.charge(open_session(ledger), "train", E26 + 1, step=0, tokens=1)
    raw_update = "UPDATE running_total SET spent = ?"
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(raw_update, (str(E26 + 2),))
        connection.commit()
    with pytest.raises(LedgerError, match=f"running total {E26 + 2} FLOPs.*sum to {E26 + 1}"):
        Ledger(path)  # refused on opening


def test_a_corrupt_stored_limit_is_refused(path):
    Ledger(path, E27).close()
    for bad in ("1e27", 1e27, "0", 0, str(MAX_FLOPS + 1)):
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("UPDATE meta SET value = ? WHERE key = 'limit_flops'", (bad,))
            connection.commit()
        with pytest.raises(LedgerError, match="meta row 'limit_flops' is .*not a positive integer"):
            Ledger(path)


@settings(max_examples=25, deadline=None)
@given(limit=st.integers(1, MAX_FLOPS),
       charges=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**37)), max_size=20))
def test_any_charges_of_any_size_are_accepted_iff_they_fit_and_sum_exactly(limit, charges):
    with tempfile.TemporaryDirectory() as directory, Ledger(Path(directory) / "l.sqlite", limit) as ledger:
        sessions = [open_session(ledger, f"exp-{index}") for index in range(3)]
        expected, by_experiment = 0, {f"exp-{index}": 0 for index in range(3)}
        for step, (who, flops) in enumerate(charges):
            fits = expected + flops <= limit
            try:
                ledger.charge(sessions[who], "train", flops, step=step, tokens=1)
            except BudgetExceeded:
                assert not fits
            else:
                assert fits
                expected += flops
                by_experiment[f"exp-{who}"] += flops
            assert ledger.spent == expected <= limit
        assert ledger.spent_by_experiment() == by_experiment
        assert sum(usage.flops for usage in ledger.snapshot().experiments) == expected
        ledger.check()
