"""Reading what every experiment of a ledger spent, by phase, in one query per table.

:func:`read_usage` runs inside the caller's read transaction (``Ledger.snapshot``) and returns
one :class:`~flopcount.ledger.records.ExperimentUsage` per experiment, in start order, every
FLOP count exact.
"""

from __future__ import annotations

import json
import sqlite3

from flopcount.ledger.exact import decode_flops
from flopcount.ledger.records import ExperimentUsage
from flopcount.ledger.sqlite_file import PHASES

# A charge whose work is lost (SQL over charges c JOIN sessions s): past its session's newest
# checkpoint, or, in a session that keeps none, a re-run of work an earlier session lost.
LOST_WORK = "(CASE WHEN s.checkpoint_step IS NULL THEN c.is_rerun ELSE c.step > s.checkpoint_step END)"


def read_usage(db: sqlite3.Connection) -> list[ExperimentUsage]:
    """Every experiment's usage (read inside the caller's transaction)."""
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
