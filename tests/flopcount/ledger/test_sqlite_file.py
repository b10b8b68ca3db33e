"""Corrupt and foreign files given as a ledger: a clear error, and the file is never touched."""

from __future__ import annotations

import random
import sqlite3

import pytest

from flopcount.ledger.ledger import Ledger, LedgerError
from flopcount.ledger.sqlite_file import APPLICATION_ID


def random_bytes(path):
    path.write_bytes(random.Random(0).randbytes(8192))


def empty_file(path):
    path.write_bytes(b"")


def text_file(path):
    path.write_text("step,flops\n1,2.5e12\n" * 50)


def foreign_sqlite(path):
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE charges (id INTEGER PRIMARY KEY, flops INTEGER)")
        connection.execute("INSERT INTO charges (flops) VALUES (42)")
    connection.close()


def sqlite_with_our_id_but_no_tables(path):
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("PRAGMA user_version = 1")
        connection.execute("CREATE TABLE notes (text TEXT)")
    connection.close()


def ledger_of_a_newer_schema(path):
    Ledger(path, 10**6).close()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()


def ledger_with_a_corrupt_schema_page(path):
    with Ledger(path, 10**6) as ledger:
        session = ledger.begin_session("a", model="m", convention="c", flop_settings={})
        for step in range(40):
            ledger.charge(session, "train", 5, step=step, tokens=1)
    data = bytearray(path.read_bytes())
    data[100:4096] = random.Random(1).randbytes(3996)  # page 1 after the header: sqlite_master
    path.write_bytes(bytes(data))


CASES = {
    "random bytes": (random_bytes, "not an SQLite database"),
    "empty file": (empty_file, "empty file"),
    "text file": (text_file, "not an SQLite database"),
    "foreign SQLite database": (foreign_sqlite, "not a flopcount ledger"),
    "our id without our tables": (sqlite_with_our_id_but_no_tables, "lacks the tables"),
    "newer schema": (ledger_of_a_newer_schema, "schema version 99"),
    "corrupt schema page": (ledger_with_a_corrupt_schema_page, "corrupt"),
}


@pytest.mark.parametrize("limit", [None, 10**6], ids=["open", "open-or-create"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_file_is_refused_with_its_path_and_left_byte_identical(tmp_path, case, limit):
    make, problem = CASES[case]
    path = tmp_path / "ledger.sqlite"
    make(path)
    before = path.read_bytes()
    with pytest.raises(LedgerError, match=problem) as refused:
        Ledger(path, limit)
    assert str(path) in str(refused.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize("case", ["random bytes", "text file", "foreign SQLite database"])
def test_a_file_refused_from_its_header_gets_no_sqlite_sidecar_files(tmp_path, case):
    make, _ = CASES[case]
    path = tmp_path / "ledger.sqlite"
    make(path)
    with pytest.raises(LedgerError):
        Ledger(path, 10**6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite"]


def test_a_foreign_database_gets_no_tables(tmp_path):
    path = tmp_path / "other.db"
    foreign_sqlite(path)
    with pytest.raises(LedgerError):
        Ledger(path, 10**6)
    with sqlite3.connect(path) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master").fetchall()
        assert tables == [("charges",)]
        assert connection.execute("SELECT flops FROM charges").fetchall() == [(42,)]
    connection.close()


def test_a_directory_or_a_missing_parent_is_refused(tmp_path):
    with pytest.raises(LedgerError, match="is a directory"):
        Ledger(tmp_path, 10**6)
    with pytest.raises(LedgerError, match="does not exist"):
        Ledger(tmp_path / "missing" / "ledger.sqlite", 10**6)
