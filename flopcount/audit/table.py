"""The FLOP audit: every experiment's FLOPs by phase, cumulative, against the budget.

:func:`audit_report` reads a ledger into an :class:`AuditReport`; rendering is kept apart:
:meth:`AuditReport.to_markdown`, :meth:`~AuditReport.to_csv`, :meth:`~AuditReport.to_json`
and :meth:`~AuditReport.plot` (PNG). FLOPs are exact ints in the report, CSV and JSON; the
Markdown table rounds them to four significant digits for reading.

"Lost" FLOPs paid for work an interruption threw away: charges past the newest checkpoint of
their session (the loop records its checkpoints in the ledger), or, for work that keeps no
checkpoints (forecasts), the re-runs of work an earlier session had done (see
:mod:`flopcount.ledger.ledger`). Both are spent: ``total = useful + lost``. ``rerun`` is the
part charged again for steps an earlier session had charged, whatever became of them.
A reservation never settled (the process died during the work it paid for) is charged at its
maximum and counted in ``unsettled_reservations``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flopcount.ledger.ledger import Ledger, LedgerNeedsUpgrade
from flopcount.ledger.sqlite_file import PHASES, LedgerError
from flopcount.ledger.records import LedgerSnapshot

AUDIT_FILES = ("audit.md", "audit.csv", "audit.png", "audit.pdf")  # the chart's PDF beside its PNG
_CSV_COLUMNS = (
    "experiment", "status", "stop_reason", "model", "convention", "sessions", "steps", "tokens",
    *(f"{phase}_flops" for phase in PHASES),
    "useful_flops", "rerun_flops", "lost_flops", "total_flops", "share_of_budget", "cumulative_flops",
    "remaining_after_flops", "unsettled_reservations", "micro_batches", "loss_flops",
)  # fmt: skip


@dataclass(frozen=True)
class AuditRow:
    """One experiment. FLOPs and tokens are exact ints; ``share`` is a fraction of the limit."""

    name: str
    status: str
    stop_reason: str | None
    model: str
    convention: str
    sessions: int
    steps: int  # distinct training steps charged
    tokens: int  # all phases
    by_phase: dict[str, int]  # FLOPs per phase: train, validation, generation
    useful: int
    rerun: int
    total: int
    share: float
    cumulative: int  # FLOPs spent by this and every earlier experiment
    remaining_after: int  # limit - cumulative
    unsettled_reservations: int = 0  # reservations charged at their maximum, never settled
    micro_batches: int = 0  # training charges run once: optimizer steps x gradient accumulation
    loss: int = 0  # FLOPs of the loss (cross-entropy), when the convention prices it; part of the phases
    lost: int = 0  # FLOPs of work thrown away by interruptions (total = useful + lost)


@dataclass(frozen=True)
class AuditReport:
    """Every experiment in the ledger, in start order, with the budget totals (FLOPs)."""

    ledger: str
    limit: int
    rows: list[AuditRow]

    @property
    def total(self) -> int:
        return sum(row.total for row in self.rows)

    @property
    def remaining(self) -> int:
        return self.limit - self.total

    @property
    def useful(self) -> int:
        return sum(row.useful for row in self.rows)

    @property
    def rerun(self) -> int:
        return sum(row.rerun for row in self.rows)

    @property
    def lost(self) -> int:
        """FLOPs of work thrown away by interruptions (``total = useful + lost``)."""
        return sum(row.lost for row in self.rows)

    def by_phase(self) -> dict[str, int]:
        return {phase: sum(row.by_phase[phase] for row in self.rows) for phase in PHASES}

    # -- rendering -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``limit``, ``total``, ``remaining``, ``useful``, ``rerun`` and
        ``experiments`` (each with ``name``, ``flops``, ``by_phase`` and the other columns)."""
        experiments = []
        for row in self.rows:
            fields = asdict(row)
            fields["flops"] = fields.pop("total")
            experiments.append(fields)
        return {
            "ledger": self.ledger,
            "limit": self.limit,
            "total": self.total,
            "remaining": self.remaining,
            "useful": self.useful,
            "rerun": self.rerun,
            "lost": self.lost,
            "by_phase": self.by_phase(),
            "experiments": experiments,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        """One line per experiment, exact integers; columns as in ``_CSV_COLUMNS``."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for row in self.rows:
            writer.writerow([
                row.name, row.status, row.stop_reason or "", row.model, row.convention,
                row.sessions, row.steps, row.tokens, *(row.by_phase[phase] for phase in PHASES),
                row.useful, row.rerun, row.lost, row.total, f"{row.share:.6f}", row.cumulative,
                row.remaining_after, row.unsettled_reservations, row.micro_batches, row.loss,
            ])  # fmt: skip
        return buffer.getvalue()

    def to_markdown(self) -> str:
        """The "FLOPs used for every experiment" table, then a one-line budget summary."""
        header = (
            "| # | experiment | status | steps | tokens | training | validation | generation "
            "| lost to interruptions | total FLOPs | share of budget | cumulative | remaining |"
        )
        lines = [header, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for number, row in enumerate(self.rows, start=1):
            status = row.status if not row.stop_reason else f"{row.status}: {row.stop_reason}"
            if row.unsettled_reservations:
                status += f" ({row.unsettled_reservations} unsettled reservations, charged at their maximum)"
            lines.append(
                f"| {number} | {_cell(row.name)} | {_cell(status)} | {row.steps:,} | {row.tokens:,} | "
                + " | ".join(_flops(row.by_phase[phase]) for phase in PHASES)
                + f" | {_flops(row.lost)} | {_flops(row.total)} | {_percent(row.share)} | "
                f"{_flops(row.cumulative)} | {_flops(row.remaining_after)} |"
            )
        phases = self.by_phase()
        lines.append(
            f"| | **all experiments** | | {sum(r.steps for r in self.rows):,} | "
            f"{sum(r.tokens for r in self.rows):,} | "
            + " | ".join(_flops(phases[phase]) for phase in PHASES)
            + f" | {_flops(self.lost)} | **{_flops(self.total)}** | "
            f"**{_percent(self.total / self.limit)}** | {_flops(self.total)} | {_flops(self.remaining)} |"
        )
        summary = (
            f"Budget {_flops(self.limit)} FLOPs ({self.limit} exactly): spent {self.total} "
            f"({_percent(self.total / self.limit)}), of which {self.useful} useful and "
            f"{self.lost} lost to interruptions (work after the last checkpoint, or redone); remaining "
            f"{self.remaining}."
        )
        accumulated = [row for row in self.rows if row.micro_batches > row.steps]
        if accumulated:
            summary += " Micro-batches (gradient accumulation): " + ", ".join(
                f"{row.name} {row.micro_batches:,} over {row.steps:,} optimizer steps" for row in accumulated) + "."
        loss = sum(row.loss for row in self.rows)
        if loss:
            summary += f" Of the total, {loss} FLOPs ({_flops(loss)}) price the loss (cross-entropy), shown apart."
        unsettled = sum(row.unsettled_reservations for row in self.rows)
        if unsettled:
            summary += f" {unsettled} reservations were never settled and stay charged at their maximum."
        return "\n".join(lines) + "\n\n" + summary + "\n"

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Write the bar chart as PNG and PDF (see :func:`flopcount.audit.chart.plot_audit`)."""
        from flopcount.audit.chart import plot_audit

        return plot_audit(self, path)

    def write(self, out_dir: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
        """Write ``audit.md``, ``audit.csv`` and the chart ``audit.png`` / ``audit.pdf`` into ``out_dir``.

        Refuses (``FileExistsError``, before writing anything) if one of them exists, unless
        ``force``.
        """
        out = Path(out_dir)
        paths = [out / name for name in AUDIT_FILES]
        existing = [str(path) for path in paths if path.exists()]
        if existing and not force:
            raise FileExistsError(f"not overwriting {', '.join(existing)} (pass force to replace)")
        out.mkdir(parents=True, exist_ok=True)
        markdown, table, chart = paths[:3]
        markdown.write_text(f"# FLOP audit of `{self.ledger}`\n\n{self.to_markdown()}")
        table.write_text(self.to_csv())
        self.plot(chart)
        return paths


def build_report(snapshot: LedgerSnapshot) -> AuditReport:
    """Turn a ledger snapshot into the audit table (cumulative sums in start order)."""
    charged = sum(usage.flops for usage in snapshot.experiments)
    if charged != snapshot.spent:
        raise LedgerError(
            f"ledger {snapshot.path} is inconsistent: running total {snapshot.spent} FLOPs, "
            f"but its experiments' charges sum to {charged} FLOPs"
        )
    rows, cumulative = [], 0
    for usage in snapshot.experiments:
        total = usage.flops
        cumulative += total
        rows.append(
            AuditRow(
                name=usage.name,
                status=usage.status,
                stop_reason=usage.stop_reason,
                model=usage.model,
                convention=usage.convention,
                sessions=usage.sessions,
                steps=usage.train_steps,
                tokens=sum(usage.tokens_by_phase.values()),
                by_phase=dict(usage.flops_by_phase),
                useful=total - usage.lost_flops,
                rerun=usage.rerun_flops,
                total=total,
                share=total / snapshot.limit,
                cumulative=cumulative,
                remaining_after=snapshot.limit - cumulative,
                unsettled_reservations=usage.unsettled_reservations,
                micro_batches=usage.train_charges,
                loss=usage.loss_flops,
                lost=usage.lost_flops,
            )
        )
    return AuditReport(str(snapshot.path), snapshot.limit, rows)


def audit_report(ledger_path: str | os.PathLike[str]) -> AuditReport:
    """Check the ledger at ``ledger_path`` (integrity, running total = sum of charges) and
    build its audit report. Raises :class:`~flopcount.ledger.ledger.LedgerError` if it is missing,
    foreign, corrupt or inconsistent."""
    try:
        ledger = Ledger(ledger_path, read_only=True)  # an audit writes nothing: a read-only file is read
    except LedgerNeedsUpgrade:
        ledger = Ledger(ledger_path)  # a ledger of an older schema is upgraded first, as any opening does
    with ledger:
        ledger.check()
        snapshot = ledger.snapshot()
    return build_report(snapshot)


def _flops(value: int) -> str:
    return "0" if value == 0 else f"{value:.4g}"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
