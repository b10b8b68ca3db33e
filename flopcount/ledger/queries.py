"""The ledger's read side: the SQL that turns a ledger file's rows into records (charges,
per-experiment usage, the running total). Functions of an open connection, each read in the
caller's transaction where one is open; :class:`~flopcount.ledger.Ledger` calls them.

Units: FLOPs and tokens are exact Python ints (decoded from :mod:`flopcount.ledger.exact`);
times are Unix seconds.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from flopcount.ledger.exact import decode_flops
from flopcount.ledger.records import Charge, ExperimentUsage
from flopcount.ledger.sqlite_file import PHASES, LedgerError


def running_total(db: sqlite3.Connection) -> int:
    """The running total the limit check trusts, FLOPs."""
    return decode_flops(db.execute("SELECT spent FROM running_total").fetchone()[0])


def summed_charges(db: sqlite3.Connection) -> int:
    """The exact sum of every charge, FLOPs (what the running total must equal)."""
    return decode_flops(db.execute("SELECT COALESCE(exact_sum(flops), 0) FROM charges").fetchone()[0])


def raise_unless_consistent(path: Path, running: int, summed: int) -> None:
    """Raise :class:`LedgerError` unless the running total equals the sum of the charges."""
    if running != summed:
        raise LedgerError(f"ledger {path} is inconsistent: running total {running} FLOPs, but its charges "
                          f"sum to {summed} FLOPs (was the file edited?); refusing to charge it")


def spent_by_experiment(db: sqlite3.Connection) -> dict[str, int]:
    """FLOPs charged per experiment, in start order."""
    rows = db.execute(
        "SELECT e.name, exact_sum(c.flops) FROM experiments e"
        " LEFT JOIN charges c ON c.experiment_id = e.id GROUP BY e.id ORDER BY e.id"
    ).fetchall()
    return {name: decode_flops(flops) for name, flops in rows}


def charges_where(db: sqlite3.Connection, condition: str, parameters: dict[str, Any]) -> list[Charge]:
    """The charges matching the SQL ``condition`` (over ``c``, charges, and ``e``, experiments),
    in commit order."""
    rows = db.execute(
        "SELECT c.id, e.name, c.session_id, c.phase, c.step, c.tokens, c.flops, c.is_rerun,"
        " c.payload, c.created_at, c.reserved_flops, c.settled_at FROM charges c"
        f" JOIN experiments e ON e.id = c.experiment_id WHERE {condition} ORDER BY c.id",
        parameters,
    ).fetchall()
    return [
        Charge(*row[:6], decode_flops(row[6]), bool(row[7]), None if row[8] is None else json.loads(row[8]),
               row[9], decode_flops(row[10]), row[11])
        for row in rows
    ]


# A charge whose work is lost (SQL over charges c JOIN sessions s): past its session's newest
# checkpoint, or, in a session that keeps none, a re-run of work an earlier session lost.
LOST_WORK = "(CASE WHEN s.checkpoint_step IS NULL THEN c.is_rerun ELSE c.step > s.checkpoint_step END)"


def experiment_usage(db: sqlite3.Connection) -> list[ExperimentUsage]:
    """Every experiment's usage by phase, in start order (read both queries in one transaction
    for a consistent view). ``lost_flops``: charges whose work is lost (:data:`LOST_WORK`)."""
    experiments = db.execute(
        "SELECT e.id, e.name, e.status, e.stop_reason, e.model, e.convention, e.config,"
        " e.started_at, e.ended_at, COUNT(s.id) FROM experiments e"
        " LEFT JOIN sessions s ON s.experiment_id = e.id GROUP BY e.id ORDER BY e.id"
    ).fetchall()
    by_phase = db.execute(
        "SELECT c.experiment_id, phase, exact_sum(flops), exact_sum(tokens),"
        " exact_sum(CASE WHEN is_rerun THEN flops ELSE 0 END), COUNT(DISTINCT step),"
        " SUM(reserved_flops IS NOT NULL AND settled_at IS NULL), SUM(NOT is_rerun),"
        " exact_sum(COALESCE(json_extract(payload, '$.loss_flops'), 0)),"
        f" exact_sum(CASE WHEN {LOST_WORK} THEN flops ELSE 0 END)"
        " FROM charges c JOIN sessions s ON s.id = c.session_id GROUP BY c.experiment_id, phase"
    ).fetchall()
    by_phase = [(*row[:2], *map(decode_flops, row[2:5]), *row[5:8], *map(decode_flops, row[8:10]))
                for row in by_phase]
    usage = []
    for experiment_id, name, status, reason, model, convention, config, start, end, sessions in experiments:
        rows = {row[1]: row[2:] for row in by_phase if row[0] == experiment_id}
        usage.append(ExperimentUsage(
            name=name, status=status, stop_reason=reason, model=model, convention=convention,
            config=json.loads(config), started_at=start, ended_at=end, sessions=sessions,
            train_steps=rows.get("train", (0, 0, 0, 0))[3],
            flops_by_phase={phase: rows.get(phase, (0,))[0] for phase in PHASES},
            tokens_by_phase={phase: rows.get(phase, (0, 0))[1] for phase in PHASES},
            rerun_flops=sum(row[2] for row in rows.values()),
            unsettled_reservations=sum(row[4] for row in rows.values()),
            train_charges=rows.get("train", (0,) * 6)[5],
            loss_flops=sum(row[6] for row in rows.values()),
            lost_flops=sum(row[7] for row in rows.values()),
        ))  # fmt: skip
    return usage
