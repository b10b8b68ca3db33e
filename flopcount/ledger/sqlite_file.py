"""The ledger's on-disk format: schema, identification, creation and validation of the file.

A ledger is an SQLite database in WAL mode that identifies itself three ways: the header's
``application_id`` (``b"FLOP"``), its ``user_version`` (the schema version) and a ``meta`` row
``format = flopcount-ledger``. A file is only ever created whole (built under a temporary
name, then hard-linked into place), so no process can see a half-initialised ledger, and an
existing file is checked from its raw header bytes before SQLite opens it: a foreign or
corrupt file is refused without being touched.

Schema history: version 2 added the reservation columns of ``charges`` (``reserved_flops``,
``settled_at``); version 3 stores FLOP counts of any size exactly (INTEGER while they fit in
64 bits, canonical decimal TEXT beyond: see :mod:`flopcount.ledger.exact`). A ledger of an
older version is upgraded in place, in one transaction, when opened (:func:`upgrade_schema`),
every value kept as it is. Version 4 added ``sessions.checkpoint_step``: the step of the newest
checkpoint a session saved (or resumed from), so the audit can tell work kept in a checkpoint
from work a crash threw away.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from flopcount.ledger.exact import (
    MAX_FLOPS,
    SQLITE_INTEGER_MAX,
    at_least,
    decode_flops,
    encode_flops,
    exact_count_check,
)

__all__ = ["MAX_FLOPS", "SQLITE_INTEGER_MAX"]  # re-exported: the value checks (values.py) import them from here

APPLICATION_ID = 0x464C4F50  # b"FLOP", at byte 68 of the SQLite header
SCHEMA_VERSION = 4  # PRAGMA user_version, at byte 60 of the SQLite header
UPGRADABLE_VERSIONS = (1, 2, 3)  # older schema versions upgrade_schema() brings up to date
FORMAT_NAME = "flopcount-ledger"
PHASES = ("train", "validation", "generation")
END_STATUSES = ("finished", "stopped", "failed")
STATUSES = ("running", *END_STATUSES)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100
_TABLES = frozenset({"meta", "running_total", "experiments", "sessions", "charges"})


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


# FLOP columns have no declared type (no affinity: SQLite stores INTEGER and TEXT as given)
# and hold exact counts in the encoding of flopcount.ledger.exact.
RUNNING_TOTAL_TABLE = f"""
CREATE TABLE {{name}} (  -- one row: the exact sum of charges.flops, kept so the limit check is O(1)
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    spent NOT NULL CHECK ({exact_count_check("spent")})
)"""
# A *reservation* (schema version 2) is a charge committed at the most its work can cost, then
# settled to the exact cost (see ``Ledger.reserve``).
CHARGES_TABLE = f"""
CREATE TABLE {{name}} (
    id             INTEGER PRIMARY KEY,
    experiment_id  INTEGER NOT NULL REFERENCES experiments (id),
    session_id     INTEGER NOT NULL REFERENCES sessions (id),
    phase          TEXT NOT NULL CHECK (phase IN ({_sql_list(PHASES)})),
    step           INTEGER NOT NULL CHECK (typeof(step) = 'integer' AND step >= 0),
    tokens         INTEGER NOT NULL CHECK (typeof(tokens) = 'integer' AND tokens >= 0),
    flops          NOT NULL CHECK ({exact_count_check("flops")}),
    is_rerun       INTEGER NOT NULL CHECK (is_rerun IN (0, 1)),
    payload        TEXT,           -- optional small JSON document from the caller
    created_at     REAL NOT NULL,
    reserved_flops CHECK (reserved_flops IS NULL  -- NULL: ordinary charge
                          OR (({exact_count_check("reserved_flops")}) AND {at_least("reserved_flops", "flops")})),
    settled_at     REAL CHECK (settled_at IS NULL OR reserved_flops IS NOT NULL)  -- NULL: not settled
)"""
CHARGE_COLUMNS = ("id, experiment_id, session_id, phase, step, tokens, flops, is_rerun, payload, created_at,"
                  " reserved_flops, settled_at")
CHARGES_INDEX = "CREATE INDEX charges_by_step ON charges (experiment_id, phase, step)"
# Columns of ``charges`` added by schema version 2 (how upgrade_schema() extends a version-1 table).
V2_RESERVATION_COLUMNS = (
    "reserved_flops INTEGER CHECK (reserved_flops IS NULL"
    " OR (typeof(reserved_flops) = 'integer' AND reserved_flops >= flops))",
    "settled_at REAL CHECK (settled_at IS NULL OR reserved_flops IS NOT NULL)",
)

# Schema version 4: the newest checkpoint of a session (NULL: the session keeps no checkpoints).
V4_CHECKPOINT_COLUMN = "checkpoint_step INTEGER CHECK (checkpoint_step IS NULL OR checkpoint_step >= 0)"

SCHEMA = f"""
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value NOT NULL  -- no affinity; limit_flops is a count encoded as in flopcount.ledger.exact
);
{RUNNING_TOTAL_TABLE.format(name="running_total")};
CREATE TABLE experiments (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    model         TEXT NOT NULL,
    convention    TEXT NOT NULL,
    flop_settings TEXT NOT NULL,  -- JSON: what the cost of a step depends on besides the model
    config        TEXT NOT NULL,  -- JSON: the caller's experiment configuration
    status        TEXT NOT NULL CHECK (status IN ({_sql_list(STATUSES)})),
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
    exit_status   TEXT CHECK (exit_status IN ({_sql_list(END_STATUSES)})),
    {V4_CHECKPOINT_COLUMN}
);
{CHARGES_TABLE.format(name="charges")};
{CHARGES_INDEX};
"""


class LedgerError(Exception):
    """The ledger file is missing, foreign, corrupt, inconsistent or disagrees with the caller."""


def create_ledger_file(path: Path, limit: int) -> None:
    """Create a ledger at ``path`` with budget ``limit`` FLOPs, unless a file is already there.

    The database is built under a temporary name in the same directory and hard-linked to
    ``path``; the link fails if anything exists there, so a concurrent creator's file (or a
    user's) is never replaced. The caller validates whatever file ends up at ``path``.
    """
    if not path.parent.is_dir():
        raise LedgerError(f"cannot create ledger {path}: directory {path.parent} does not exist")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    created_at = time.time()
    try:
        with closing(sqlite3.connect(temporary, isolation_level=None)) as connection:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.executescript(f"BEGIN; {SCHEMA} COMMIT;")
            connection.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", FORMAT_NAME),
                    ("schema_version", SCHEMA_VERSION),
                    ("limit_flops", encode_flops(limit)),
                    ("created_at", created_at),
                    ("limit_record", limit_record(limit, created_at)),
                ],
            )
            connection.execute("INSERT INTO running_total (id, spent) VALUES (0, 0)")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process (or the user) got there first
    except OSError as error:
        raise LedgerError(f"cannot create ledger {path}: {error}") from error
    finally:
        for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
            leftover.unlink(missing_ok=True)


def check_header(path: Path) -> None:
    """Refuse ``path`` unless its raw header is an SQLite header carrying our identification.

    Reads 100 bytes with plain file I/O, so a foreign file is refused before SQLite opens it
    (SQLite could create ``-wal``/``-shm`` files beside it or roll back a journal into it).
    """
    if path.is_dir():
        raise LedgerError(f"ledger path {path} is a directory, not a ledger file")
    try:
        with open(path, "rb") as file:
            header = file.read(_HEADER_SIZE)
    except OSError as error:
        raise LedgerError(f"cannot read ledger {path}: {error}") from error
    if not header:
        raise LedgerError(f"{path} is an empty file, not a flopcount ledger")
    if not header.startswith(_SQLITE_MAGIC) or len(header) < _HEADER_SIZE:
        raise LedgerError(f"{path} is not an SQLite database, so not a flopcount ledger")
    application_id = int.from_bytes(header[68:72], "big")
    if application_id != APPLICATION_ID:
        raise LedgerError(
            f"{path} is an SQLite database but not a flopcount ledger "
            f"(application_id {application_id:#x}, expected {APPLICATION_ID:#x})"
        )
    schema_version = int.from_bytes(header[60:64], "big")
    if schema_version != SCHEMA_VERSION and schema_version not in UPGRADABLE_VERSIONS:
        raise LedgerError(
            f"{path} is a flopcount ledger of schema version {schema_version}; "
            f"this flopcount reads version {SCHEMA_VERSION}"
        )


def read_limit(connection: sqlite3.Connection, path: Path) -> int:
    """Check the tables and ``meta`` rows of an opened ledger; return its limit in FLOPs."""
    try:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
        if not _TABLES <= tables:
            missing = ", ".join(sorted(_TABLES - tables))
            raise LedgerError(f"{path} carries a ledger's id but lacks the tables: {missing}")
        meta = dict(connection.execute("SELECT key, value FROM meta"))
    except sqlite3.DatabaseError as error:
        raise LedgerError(f"{path} is corrupt: {error}") from error
    if meta.get("format") != FORMAT_NAME:
        raise LedgerError(f"{path}: meta row 'format' is {meta.get('format')!r}, not {FORMAT_NAME!r}")
    stored = meta.get("limit_flops")
    try:
        limit = decode_flops(stored)
        valid = limit is not None and 0 < limit <= MAX_FLOPS and encode_flops(limit) == stored
    except ValueError:
        valid = False
    if not valid:
        raise LedgerError(f"{path}: meta row 'limit_flops' is {stored!r}, not a positive integer "
                          f"of at most {MAX_FLOPS}")
    record = meta.get("limit_record")
    if record is not None and record != limit_record(limit, meta.get("created_at")):
        raise LedgerError(f"{path}: the limit {limit} FLOPs ({limit:.4g}) is not the one the ledger was created "
                          "with (meta row 'limit_flops' was edited); refusing to charge it. Restore the file from "
                          "a backup, or start a new ledger")
    return limit


def limit_record(limit: int, created_at: object) -> str:
    """The record of how a ledger's limit was set: a digest of the limit and the creation time,
    written once at creation, so an edited ``limit_flops`` is caught when the ledger opens."""
    return hashlib.sha256(f"{FORMAT_NAME}:{encode_flops(limit)}:{created_at!r}".encode()).hexdigest()


def upgrade_schema(connection: sqlite3.Connection, path: Path) -> None:
    """Bring an opened ledger of an older schema version up to :data:`SCHEMA_VERSION`.

    One ``BEGIN IMMEDIATE`` transaction that re-reads the version under the write lock, so
    concurrent openers upgrade once, and a crash leaves the old version whole. Version 1 gets
    the reservation columns (its charges become ordinary charges); versions 1 and 2 then get
    ``charges`` and ``running_total`` rebuilt with the exact-count columns, every row copied
    as it is (64-bit INTEGERs are already valid exact counts) and counted before and after;
    versions 1 to 3 then get ``sessions.checkpoint_step`` (NULL: no checkpoint recorded).
    """
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version == 1:
                for column in V2_RESERVATION_COLUMNS:
                    connection.execute(f"ALTER TABLE charges ADD COLUMN {column}")
            if version in (1, 2):
                for table, definition, columns in (("charges", CHARGES_TABLE, CHARGE_COLUMNS),
                                                   ("running_total", RUNNING_TOTAL_TABLE, "id, spent")):
                    _rebuild_table(connection, table, definition, columns)
                connection.execute(CHARGES_INDEX)
            if version in UPGRADABLE_VERSIONS:
                connection.execute(f"ALTER TABLE sessions ADD COLUMN {V4_CHECKPOINT_COLUMN}")
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    except sqlite3.Error as error:
        raise LedgerError(f"cannot upgrade ledger {path} to schema version {SCHEMA_VERSION}: {error}") from error


def _rebuild_table(connection: sqlite3.Connection, table: str, definition: str, columns: str) -> None:
    """Replace ``table`` by one created from ``definition`` holding the same rows (SQLite
    cannot change a column's type or CHECK in place). Runs inside the caller's transaction."""
    (rows,) = connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    connection.execute(definition.format(name=f"{table}_v{SCHEMA_VERSION}"))
    connection.execute(f"INSERT INTO {table}_v{SCHEMA_VERSION} ({columns}) SELECT {columns} FROM {table}")
    connection.execute(f"DROP TABLE {table}")  # also drops its indexes
    connection.execute(f"ALTER TABLE {table}_v{SCHEMA_VERSION} RENAME TO {table}")
    (copied,) = connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    if copied != rows:
        raise sqlite3.DatabaseError(f"table {table}: {rows} rows before the upgrade, {copied} after")
