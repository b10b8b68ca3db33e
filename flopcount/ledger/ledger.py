"""Persistent FLOP ledger: every FLOP charged against a budget, in one SQLite file.

Units: FLOPs and tokens are exact Python ints; times are Unix seconds. FLOP counts (limit,
charges, totals) may be of any size up to :data:`~flopcount.ledger.exact.MAX_FLOPS` (10**38 - 1)
and are stored and summed exactly, never as floats (see :mod:`flopcount.ledger.exact`); steps
and tokens are 64-bit. The file layout lives in :mod:`flopcount.ledger.sqlite_file`.

Guarantees:

- **No overspend, across processes.** A charge is one ``BEGIN IMMEDIATE`` transaction that
  reads the running total, refuses with :class:`BudgetExceeded` if ``spent + cost > limit``,
  else inserts the charge and bumps the running total. Writers queue on SQLite's lock
  (``busy_timeout``), so several processes can charge one ledger and no charge is lost.
- **Crash consistency.** WAL mode: a process killed at any point leaves every committed
  charge in place and no half-written one. ``synchronous=FULL`` (the default) also survives
  power loss; ``NORMAL`` is still safe against process crashes (see the benchmark).
- **Re-runs.** Each ``Budget.__enter__`` is a session. A charge is a *re-run* when earlier
  sessions of its experiment charged that ``(phase, step)`` more often than this session
  has so far: the work was done before and lost in an interruption. Re-runs are spent
  compute like any other, but the audit reports them apart from useful FLOPs.
- **Lost work.** A session that keeps checkpoints records the step of its newest one
  (:meth:`Ledger.mark_checkpoint`; the step it resumed from, first). Its charges for later
  steps paid for work no checkpoint kept: a crash threw it away (or, while the session runs,
  would). The audit shows those charges as lost; for sessions without checkpoints, the re-runs.
- **Reservations.** Work whose exact cost is only known afterwards (a ``generate`` call that
  stops when every row is done) is paid by :meth:`Ledger.reserve`: a charge of the most it
  can cost, committed before the work under the same no-overspend rule, then rewritten to
  the exact cost by :meth:`Ledger.settle` (never upwards) in one transaction. A reservation
  that is never settled (a crash) stays charged at its maximum, and the audit lists it as
  unsettled.

A ``Ledger`` holds one SQLite connection: use it from the thread (and process) that opened
it. Under DDP only rank 0 opens the ledger.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flopcount.ledger import queries
from flopcount.ledger.errors import BudgetExceeded
from flopcount.ledger.exact import SQLITE_INTEGER_MAX, decode_flops, encode_flops, register_functions
from flopcount.ledger.records import Charge, LedgerSnapshot, Session
from flopcount.ledger.sqlite_file import (
    END_STATUSES,
    PHASES,
    SCHEMA_VERSION,
    LedgerError,
    check_header,
    create_ledger_file,
    read_limit,
    upgrade_schema,
)
from flopcount.ledger.values import as_count, as_limit

MAX_PAYLOAD_CHARS = 4096


class LedgerNeedsUpgrade(LedgerError):
    """A ledger of an older schema opened read-only: it must be opened writable once to upgrade."""


class Ledger:
    """An open ledger file; create it by giving ``limit`` (FLOPs) for a path with no file.

    Opening an existing ledger with a ``limit`` that differs from the recorded one raises
    :class:`LedgerError`: the budget is fixed when the ledger is created. ``synchronous`` is
    SQLite's ``PRAGMA synchronous`` (``"FULL"`` or ``"NORMAL"``); ``timeout`` is how long, in
    seconds, a writer waits for another process's transaction before failing. ``read_only``
    opens it for reading only (an audit): nothing is written, not even beside the file, so a
    ledger in a read-only directory can be read.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        limit: int | float | None = None,
        *,
        synchronous: str = "FULL",
        timeout: float = 60.0,
        read_only: bool = False,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.path = Path(path)
        if limit is not None:
            limit = as_limit(limit)
        if not self.path.exists():
            if limit is None:
                raise LedgerError(f"no ledger at {self.path} (to create one, give its limit)")
            create_ledger_file(self.path, limit)
        check_header(self.path)
        self.read_only = read_only
        self._connection = self._connect(timeout)
        try:
            register_functions(self._connection)
            self.limit = read_limit(self._connection, self.path)
            if limit is not None and limit != self.limit:
                raise LedgerError(
                    f"ledger {self.path} was created with a limit of {self.limit} FLOPs "
                    f"({self.limit:.4g}); this budget asks for {limit} ({limit:.4g}). The limit "
                    "is fixed when a ledger is created: use that limit or a new ledger file."
                )
            self._connection.execute(f"PRAGMA synchronous = {synchronous}")
            self._connection.execute("PRAGMA foreign_keys = ON")
            with self._reading() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                if read_only:
                    raise LedgerNeedsUpgrade(f"ledger {self.path} has the older schema version {version}: open it "
                                             "writable once to upgrade it")
                upgrade_schema(self._connection, self.path)
            self._check_running_total()
        except BaseException:
            self._connection.close()
            raise

    def _connect(self, timeout: float) -> sqlite3.Connection:
        """The connection: read-write, or for ``read_only`` a read-only one that writes nothing
        beside the file either (SQLite's ``immutable`` when even the WAL index cannot be
        created, as in a read-only directory)."""
        uri = self.path.resolve().as_uri()
        options = ("?mode=ro", "?mode=ro&immutable=1") if self.read_only else ("?mode=rw",)
        error: sqlite3.Error | None = None
        for option in options:
            try:
                connection = sqlite3.connect(uri + option, uri=True, timeout=timeout, isolation_level=None,
                                             check_same_thread=False)  # callers serialise access
                if self.read_only:
                    connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return connection
            except sqlite3.Error as failed:
                error = failed
        raise LedgerError(f"cannot open ledger {self.path}: {error}") from error

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction; ``IMMEDIATE`` takes the write lock up front (waiting for it)."""
        try:
            self._connection.execute(f"BEGIN {mode}")
        except sqlite3.Error as error:
            raise LedgerError(f"ledger {self.path}: cannot begin a transaction: {error}") from error
        try:
            yield self._connection
            self._connection.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            raise LedgerError(f"ledger {self.path}: {error}") from error
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._connection.in_transaction:
            try:
                self._connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite has already rolled back (e.g. after an I/O error)

    # -- sessions --------------------------------------------------------------------------

    def begin_session(
        self,
        experiment: str,
        *,
        model: str,
        convention: str,
        flop_settings: dict[str, Any],
        config: dict[str, Any] | None = None,
    ) -> Session:
        """Open ``experiment`` (creating it, or resuming it as ``running``) in a new session.

        ``model`` is a label for reports. A resumed experiment must keep its ``convention``
        and ``flop_settings`` (everything the cost of a step depends on, model shape
        included): mixing cost models in one experiment is refused. So is a ``config`` other
        than the recorded one: two different runs under one name would pass for re-runs.
        """
        if not isinstance(experiment, str) or not experiment.strip():
            raise ValueError(f"experiment name must be a non-empty string, got {experiment!r}")
        settings_json = json.dumps(flop_settings, sort_keys=True)
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, convention, flop_settings, config FROM experiments WHERE name = ?",
                (experiment,),
            ).fetchone()
            if row is None:
                experiment_id = db.execute(
                    "INSERT INTO experiments (name, model, convention, flop_settings, config,"
                    " status, started_at) VALUES (?, ?, ?, ?, ?, 'running', ?)",
                    (experiment, model, convention, settings_json, json.dumps(config or {}), now),
                ).lastrowid
            else:
                experiment_id = row[0]
                recorded = {"convention": row[1], "flop settings": row[2]}
                asked = {"convention": convention, "flop settings": settings_json}
                for key, value in recorded.items():
                    if value != asked[key]:
                        raise LedgerError(
                            f"experiment {experiment!r} in {self.path} was charged with {key} "
                            f"{value}; resuming it with {key} {asked[key]} would mix cost models"
                        )
                if config is not None and json.loads(row[3]) != json.loads(json.dumps(config)):
                    recorded_config, asked_config = json.loads(row[3]), json.loads(json.dumps(config))
                    differing = sorted(k for k in {*recorded_config, *asked_config}
                                       if recorded_config.get(k) != asked_config.get(k))
                    raise LedgerError(
                        f"experiment {experiment!r} in {self.path} was recorded with another config "
                        f"(differing: {', '.join(map(str, differing))}); name a new experiment for a new run"
                    )
                db.execute(
                    "UPDATE experiments SET status = 'running', stop_reason = NULL,"
                    " ended_at = NULL WHERE id = ?",
                    (experiment_id,),
                )
            session_id = db.execute(
                "INSERT INTO sessions (experiment_id, pid, host, started_at) VALUES (?, ?, ?, ?)",
                (experiment_id, os.getpid(), socket.gethostname(), now),
            ).lastrowid
        return Session(session_id, experiment_id, experiment)

    def end_session(self, session: Session, status: str, reason: str | None = None) -> None:
        """Close ``session`` and set its experiment's status (finished / stopped / failed)."""
        if status not in END_STATUSES:
            raise ValueError(f"status must be one of {END_STATUSES}, got {status!r}")
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE sessions SET ended_at = ?, exit_status = ? WHERE id = ?",
                (now, status, session.id),
            )
            db.execute(
                "UPDATE experiments SET status = ?, stop_reason = ?, ended_at = ? WHERE id = ?",
                (status, reason, now, session.experiment_id),
            )

    def mark_checkpoint(self, session: Session, step: int) -> None:
        """Record that ``session``'s work up to ``step`` is saved in a checkpoint (call it after
        the checkpoint is on disk, and once on entry with the step resumed from, 0 if none)."""
        step = as_count(step, "checkpoint step", SQLITE_INTEGER_MAX)
        with self._transaction() as db:
            db.execute("UPDATE sessions SET checkpoint_step = ? WHERE id = ?", (step, session.id))

    # -- charging --------------------------------------------------------------------------

    def charge(self, session: Session, phase: str, flops: int, *, step: int, tokens: int,
               payload: Any = None) -> Charge:
        """Record ``flops`` spent in ``phase`` at ``step``, or raise :class:`BudgetExceeded`.

        Atomic: either the charge and the new running total are both committed, or nothing
        is. ``payload`` is an optional small JSON-serialisable value stored with the charge.
        """
        return self._commit(session, phase, flops, step=step, tokens=tokens, payload=payload, reservation=False)

    def reserve(self, session: Session, phase: str, flops: int, *, step: int, tokens: int,
                payload: Any = None) -> Charge:
        """Like :meth:`charge`, for work whose exact cost is known only afterwards: ``flops``
        is the most it can cost (committed now, refused whole if it does not fit), to be
        lowered to the exact cost with :meth:`settle` once the work has run."""
        return self._commit(session, phase, flops, step=step, tokens=tokens, payload=payload, reservation=True)

    def settle(self, charge_id: int, flops: int, *, tokens: int) -> Charge:
        """Rewrite the open reservation ``charge_id`` to its exact cost ``flops`` (at most the
        reserved FLOPs) and ``tokens``, and give the difference back to the running total, in
        one transaction. Raises ``LedgerError`` for a charge that is not an open reservation
        and ``ValueError`` for a cost above the reservation (that work was never guarded)."""
        flops = as_count(flops, "settled cost (FLOPs)")
        tokens = as_count(tokens, "tokens", SQLITE_INTEGER_MAX)
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT flops, reserved_flops, settled_at FROM charges WHERE id = ?",
                             (charge_id,)).fetchone()
            if row is None or row[1] is None:
                what = "no charge" if row is None else "an ordinary charge, not a reservation"
                raise LedgerError(f"ledger {self.path}: charge {charge_id} is {what}; only reservations settle")
            charged, reserved, settled_at = decode_flops(row[0]), decode_flops(row[1]), row[2]
            if settled_at is not None:
                raise LedgerError(f"ledger {self.path}: reservation {charge_id} was already settled at {charged} FLOPs")
            if flops > reserved:
                raise ValueError(
                    f"reservation {charge_id} reserved {reserved} FLOPs but the work cost {flops}: "
                    "the excess was never guarded by the budget (reserve the maximum the work can cost)"
                )
            spent = queries.running_total(db)
            db.execute("UPDATE charges SET flops = ?, tokens = ?, settled_at = ? WHERE id = ?",
                       (encode_flops(flops), tokens, now, charge_id))
            db.execute("UPDATE running_total SET spent = ?", (encode_flops(spent - (reserved - flops)),))
        with self._reading() as db:
            return queries.charges_where(db, "c.id = :id", {"id": charge_id})[0]

    def _commit(
        self, session: Session, phase: str, flops: int, *, step: int, tokens: int, payload: Any, reservation: bool
    ) -> Charge:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        flops = as_count(flops, "charge (FLOPs)")
        step = as_count(step, "step", SQLITE_INTEGER_MAX)
        tokens = as_count(tokens, "tokens", SQLITE_INTEGER_MAX)
        payload_json = None if payload is None else json.dumps(payload)
        if payload_json is not None and len(payload_json) > MAX_PAYLOAD_CHARS:
            raise ValueError(f"payload is {len(payload_json)} chars as JSON; at most {MAX_PAYLOAD_CHARS}")
        reserved = flops if reservation else None
        now = time.time()
        with self._transaction() as db:
            spent = queries.running_total(db)
            if spent + flops > self.limit:
                raise BudgetExceeded(flops, spent, self.limit, session.experiment, phase, step)
            earlier, this_session = db.execute(
                "SELECT COALESCE(SUM(session_id < :session), 0),"
                " COALESCE(SUM(session_id = :session), 0) FROM charges"
                " WHERE experiment_id = :experiment AND phase = :phase AND step = :step",
                {"session": session.id, "experiment": session.experiment_id, "phase": phase, "step": step},
            ).fetchone()
            is_rerun = earlier > this_session
            charge_id = db.execute(
                "INSERT INTO charges (experiment_id, session_id, phase, step, tokens, flops,"
                " is_rerun, payload, created_at, reserved_flops) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session.experiment_id, session.id, phase, step, tokens, encode_flops(flops), is_rerun, payload_json,
                 now, None if reserved is None else encode_flops(reserved)),
            ).lastrowid
            db.execute("UPDATE running_total SET spent = ?", (encode_flops(spent + flops),))
        return Charge(charge_id, session.experiment, session.id, phase, step, tokens, flops, is_rerun, payload, now,
                      reserved_flops=reserved)

    # -- reading (the queries live in flopcount.ledger.queries) ----------------------------

    @property
    def spent(self) -> int:
        """FLOPs charged so far by every experiment."""
        with self._reading() as db:
            return queries.running_total(db)

    @property
    def remaining(self) -> int:
        """FLOPs left: the limit minus everything charged by every experiment."""
        return self.limit - self.spent

    def spent_by_experiment(self) -> dict[str, int]:
        """FLOPs charged per experiment, in start order."""
        with self._reading() as db:
            return queries.spent_by_experiment(db)

    def charges(self, experiment: str | None = None) -> list[Charge]:
        """Every charge (of ``experiment``, or of all), in commit order."""
        with self._reading() as db:
            return queries.charges_where(db, ":name IS NULL OR e.name = :name", {"name": experiment})

    def snapshot(self) -> LedgerSnapshot:
        """Every experiment's usage and the running total, read in one consistent view."""
        with self._transaction("DEFERRED") as db:
            spent = queries.running_total(db)
            usage = queries.experiment_usage(db)
        return LedgerSnapshot(self.path, self.limit, spent, usage)

    def check(self) -> None:
        """Raise :class:`LedgerError` unless SQLite's quick_check passes and the running total
        equals the sum of the charges."""
        with self._transaction("DEFERRED") as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            running, summed = queries.running_total(db), queries.summed_charges(db)
        if problems != ["ok"]:
            raise LedgerError(f"ledger {self.path} is corrupt: {'; '.join(problems)}")
        queries.raise_unless_consistent(self.path, running, summed)

    def _check_running_total(self) -> None:
        """On opening: the running total the limit check trusts must be the sum of the charges
        (an edited total would let charges pass the limit)."""
        with self._transaction("DEFERRED") as db:
            running, summed = queries.running_total(db), queries.summed_charges(db)
        queries.raise_unless_consistent(self.path, running, summed)

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads outside a transaction; a database error is a :class:`LedgerError`."""
        try:
            yield self._connection
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"cannot read ledger {self.path}: {error}") from error
