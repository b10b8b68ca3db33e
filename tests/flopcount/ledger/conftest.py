"""Ledger files of the older schema versions, written with hand-written SQL (the DDL below is
what flopcount wrote for schema versions 1 and 2), to test the in-place upgrades."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

APPLICATION_ID = 0x464C4F50

V2_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value NOT NULL
);
CREATE TABLE running_total (  -- one row: SUM(charges.flops), kept so the limit check is O(1)
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    spent INTEGER NOT NULL CHECK (typeof(spent) = 'integer' AND spent >= 0)
);
CREATE TABLE experiments (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    model         TEXT NOT NULL,
    convention    TEXT NOT NULL,
    flop_settings TEXT NOT NULL,  -- JSON: what the cost of a step depends on besides the model
    config        TEXT NOT NULL,  -- JSON: the caller's experiment configuration
    status        TEXT NOT NULL CHECK (status IN ('running', 'finished', 'stopped', 'failed')),
    stop_reason   TEXT,
    started_at    REAL NOT NULL,  -- Unix seconds
    ended_at      REAL
);
CREATE TABLE sessions (  -- one row per Budget.__enter__: tells first executions from re-runs
    id            INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments (id),
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL,
    started_at    REAL NOT NULL,
    ended_at      REAL,           -- NULL: still running, or killed
    exit_status   TEXT CHECK (exit_status IN ('finished', 'stopped', 'failed'))
);
CREATE TABLE charges (
    id            INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments (id),
    session_id    INTEGER NOT NULL REFERENCES sessions (id),
    phase         TEXT NOT NULL CHECK (phase IN ('train', 'validation', 'generation')),
    step          INTEGER NOT NULL CHECK (typeof(step) = 'integer' AND step >= 0),
    tokens        INTEGER NOT NULL CHECK (typeof(tokens) = 'integer' AND tokens >= 0),
    flops         INTEGER NOT NULL CHECK (typeof(flops) = 'integer' AND flops >= 0),
    is_rerun      INTEGER NOT NULL CHECK (is_rerun IN (0, 1)),
    payload       TEXT,           -- optional small JSON document from the caller
    created_at    REAL NOT NULL,
    reserved_flops INTEGER CHECK (reserved_flops IS NULL OR (typeof(reserved_flops) = 'integer' AND reserved_flops >= flops)),
    settled_at REAL CHECK (settled_at IS NULL OR reserved_flops IS NOT NULL)
);
CREATE INDEX charges_by_step ON charges (experiment_id, phase, step);
"""
# Version 1 had no reservations: the same charges table without its last two columns.
V1_SCHEMA = V2_SCHEMA.replace(
    "    created_at    REAL NOT NULL,\n"
    "    reserved_flops INTEGER CHECK (reserved_flops IS NULL OR (typeof(reserved_flops) = 'integer' AND "
    "reserved_flops >= flops)),\n"
    "    settled_at REAL CHECK (settled_at IS NULL OR reserved_flops IS NOT NULL)\n",
    "    created_at    REAL NOT NULL\n",
)
assert V1_SCHEMA != V2_SCHEMA

TOP = 2**63 - 1  # the largest value a version-1 or version-2 ledger can hold
# (experiment, session, phase, step, tokens, flops, is_rerun, payload, reserved_flops, settled_at)
_LATER_CHARGES = [
    (1, 1, "train", 1, 2048, 2**61 + 12_345, 0, None, None, None),
    (1, 1, "validation", 1, 512, 98_765_432_109_876, 0, None, None, None),
    (1, 2, "train", 1, 2048, 2**61 + 12_345, 1, None, None, None),  # re-run in session 2
    (2, 3, "generation", 0, 77, 5_000, 0, None, 9_000, 1_700_000_100.5),  # settled reservation
    (2, 3, "generation", 1, 99, 10**17, 0, None, 10**17, None),  # open reservation
]
OLD_ROOM = 1000  # FLOPs the old ledger has left: it is charged up to TOP - OLD_ROOM
OLD_CHARGES = [(1, 1, "train", 0, 2048, TOP - OLD_ROOM - sum(c[5] for c in _LATER_CHARGES), 0, '{"loss": 2.5}',
                None, None), *_LATER_CHARGES]


def write_old_ledger(path: Path, version: int, *, limit: int = TOP, charges=OLD_CHARGES,
                     spent: int | None = None) -> None:
    """A complete ledger of schema ``version`` (1 or 2) at ``path``, in WAL mode, with two
    experiments, three sessions and ``charges`` (reservation fields ignored for version 1);
    the running total is ``spent`` (default: the sum of the charges)."""
    schema = {1: V1_SCHEMA, 2: V2_SCHEMA}[version]
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {version}")
        db.executescript(f"BEGIN; {schema} COMMIT;")
        db.execute("BEGIN")
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                       [("format", "flopcount-ledger"), ("schema_version", version), ("limit_flops", limit),
                        ("created_at", 1_700_000_000.25)])
        db.execute("INSERT INTO running_total (id, spent) VALUES (0, ?)",
                   (sum(c[5] for c in charges) if spent is None else spent,))
        db.executemany(
            "INSERT INTO experiments (id, name, model, convention, flop_settings, config, status, stop_reason,"
            " started_at, ended_at) VALUES (?, ?, 'qwen2.5-0.5b', 'coursework', '{\"lora_rank\": 4}', ?, ?, ?, ?, ?)",
            [(1, "grid/r4", '{"lr": 1e-05}', "finished", None, 1_700_000_001.0, 1_700_000_050.0),
             (2, "evaluate", "{}", "stopped", "budget exhausted at generation step 1", 1_700_000_060.0, None)])
        db.executemany(
            "INSERT INTO sessions (id, experiment_id, pid, host, started_at, ended_at, exit_status)"
            " VALUES (?, ?, ?, 'node-1', ?, ?, ?)",
            [(1, 1, 4242, 1_700_000_001.0, None, None), (2, 1, 4243, 1_700_000_030.0, 1_700_000_050.0, "finished"),
             (3, 2, 4244, 1_700_000_060.0, 1_700_000_200.0, "stopped")])
        for number, charge in enumerate(charges, start=1):
            values = (number, *charge[:8], 1_700_000_000.0 + number)
            if version == 1:
                db.execute("INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            else:
                db.execute("INSERT INTO charges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, *charge[8:]))
        db.execute("COMMIT")


class OldLedgers:
    """``old_ledgers(version, **options)`` writes a ``write_old_ledger`` file under the test's
    temporary directory and returns its path; ``charges``, ``top`` and ``room`` are the data
    those files hold (conftest modules cannot be imported under ``--import-mode=importlib``)."""

    charges, top, room = OLD_CHARGES, TOP, OLD_ROOM

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, version: int, **options) -> Path:
        path = self.directory / f"v{version}.sqlite"
        write_old_ledger(path, version, **options)
        return path


@pytest.fixture
def old_ledger(tmp_path) -> OldLedgers:
    return OldLedgers(tmp_path)
