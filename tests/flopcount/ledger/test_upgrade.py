"""Ledgers of schema versions 1 and 2 are upgraded in place to version 4, every value kept.

The old files are written with hand-written SQL (``conftest.write_old_ledger``: the DDL those
versions had), full to within ``old_ledger.room`` FLOPs of the 64-bit maximum.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from flopcount.audit.table import audit_report
from flopcount.ledger.ledger import BudgetExceeded, Ledger, LedgerError
from flopcount.ledger.sqlite_file import SCHEMA_VERSION

TOP = 2**63 - 1  # the largest count of a version-1 or -2 ledger
TABLES = ("meta", "running_total", "experiments", "sessions", "charges")


def dump(path) -> dict[str, list[tuple]]:
    """Every row of every table, each value with its SQLite storage class."""
    with closing(sqlite3.connect(path)) as connection:
        dumped = {}
        for table in TABLES:
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            selected = ", ".join(f"{c}, typeof({c})" for c in columns)
            dumped[table] = connection.execute(f"SELECT {selected} FROM {table} ORDER BY rowid").fetchall()
        return dumped


def version_of(path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as connection:
        (header,) = connection.execute("PRAGMA user_version").fetchone()
        (meta,) = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return header, meta


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_ledger_is_upgraded_in_place_and_no_value_changes(old_ledger, version):
    path = old_ledger(version)
    before = dump(path)
    with Ledger(path) as ledger:
        assert ledger.limit == TOP and ledger.spent == TOP - old_ledger.room
        charges = ledger.charges()
    after = dump(path)
    assert version_of(path) == (SCHEMA_VERSION, SCHEMA_VERSION) == (4, 4)
    for table in ("running_total", "experiments"):
        assert after[table] == before[table], table
    # version 4: every old session gains checkpoint_step NULL (no checkpoint recorded: lost work = re-runs)
    assert after["sessions"] == [(*row, None, "null") for row in before["sessions"]]
    assert [row for row in after["meta"] if row[0] != "schema_version"] == \
           [row for row in before["meta"] if row[0] != "schema_version"]
    if version == 2:
        assert after["charges"] == before["charges"]
    else:  # version 1 gains the reservation columns, NULL: every old charge is an ordinary charge
        null = (None, "null")
        assert after["charges"] == [(*row, *null, *null) for row in before["charges"]]
    assert [c.flops for c in charges] == [c[5] for c in old_ledger.charges]
    assert all(type(c.flops) is int for c in charges)
    expected_reserved = [c[8] for c in old_ledger.charges] if version == 2 else [None] * len(old_ledger.charges)
    assert [c.reserved_flops for c in charges] == expected_reserved


@pytest.mark.parametrize("version", [1, 2])
def test_an_upgraded_ledger_audits_as_before_and_charges_up_to_its_limit(old_ledger, version):
    path = old_ledger(version)
    report = audit_report(path)  # opens (so upgrades) and checks the running total first
    grid, evaluate = report.rows
    assert (grid.name, grid.total, grid.rerun, grid.steps, grid.sessions) == (
        "grid/r4", sum(c[5] for c in old_ledger.charges if c[0] == 1), 2**61 + 12_345, 2, 2)
    assert evaluate.by_phase["generation"] == 5_000 + 10**17
    assert evaluate.unsettled_reservations == (1 if version == 2 else 0)
    assert report.total == TOP - old_ledger.room and report.remaining == old_ledger.room
    with Ledger(path) as ledger:
        session = ledger.begin_session("final", model="m", convention="coursework", flop_settings={})
        with pytest.raises(BudgetExceeded):
            ledger.charge(session, "train", old_ledger.room + 1, step=0, tokens=1)
        reservation = ledger.reserve(session, "generation", old_ledger.room, step=0, tokens=1)
        ledger.settle(reservation.id, old_ledger.room - 1, tokens=1)
        ledger.charge(session, "train", 1, step=1, tokens=1)
        assert ledger.spent == TOP  # the total is exactly the 64-bit maximum, then nothing fits
        with pytest.raises(BudgetExceeded):
            ledger.charge(session, "train", 1, step=2, tokens=1)
        ledger.check()


def test_a_reopened_upgraded_ledger_is_not_upgraded_again(old_ledger):
    path = old_ledger(2)
    Ledger(path).close()
    upgraded = path.read_bytes(), dump(path)
    with Ledger(path) as ledger:
        assert ledger.spent == TOP - old_ledger.room
    assert dump(path) == upgraded[1]
    with closing(sqlite3.connect(path)) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        indexes = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    assert sorted(tables) == sorted(TABLES) and "charges_by_step" in indexes


def test_an_upgraded_ledger_has_the_columns_and_checks_of_a_new_one(old_ledger, tmp_path):
    upgraded = old_ledger(1)
    Ledger(upgraded).close()
    fresh = tmp_path / "fresh.sqlite"
    Ledger(fresh, TOP).close()
    with closing(sqlite3.connect(upgraded)) as old, closing(sqlite3.connect(fresh)) as new:
        for table in TABLES:
            assert old.execute(f"PRAGMA table_info({table})").fetchall() == \
                   new.execute(f"PRAGMA table_info({table})").fetchall(), table
        assert old.execute("PRAGMA index_info(charges_by_step)").fetchall() == \
               new.execute("PRAGMA index_info(charges_by_step)").fetchall()
        for connection in (old, new):  # the new CHECKs are in force in both
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                connection.execute("UPDATE running_total SET spent = '0123456789012345678901'")


def test_a_failing_upgrade_leaves_the_old_ledger_exactly_as_it_was(old_ledger):
    path = old_ledger(2)
    with closing(sqlite3.connect(path)) as connection:  # a value the version-3 checks refuse
        connection.execute("PRAGMA ignore_check_constraints = ON")
        connection.execute("UPDATE charges SET flops = -5 WHERE id = 2")
        connection.commit()
    before = dump(path)
    with pytest.raises(LedgerError, match="cannot upgrade ledger .* to schema version 4.*CHECK constraint failed"):
        Ledger(path)
    assert dump(path) == before and version_of(path) == (2, 2)
