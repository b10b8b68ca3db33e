"""Records a ledger returns: sessions, charges and per-experiment usage (FLOPs as exact ints)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Session:
    """One entry into an experiment (a ``Budget`` context); charges are made under it."""

    id: int
    experiment_id: int
    experiment: str


@dataclass(frozen=True)
class Charge:
    """One committed charge."""

    id: int
    experiment: str
    session_id: int
    phase: str
    step: int
    tokens: int
    flops: int
    is_rerun: bool
    payload: Any
    created_at: float
    reserved_flops: int | None = None  # a reservation's maximum (``flops`` until settled); None: ordinary charge
    settled_at: float | None = None  # when a reservation was settled; None while open

    @property
    def is_open_reservation(self) -> bool:
        """A reservation not (yet) settled: charged at its maximum."""
        return self.reserved_flops is not None and self.settled_at is None


@dataclass(frozen=True)
class ExperimentUsage:
    """What one experiment has spent, by phase; FLOPs and tokens are exact ints."""

    name: str
    status: str
    stop_reason: str | None
    model: str
    convention: str
    config: dict[str, Any]
    started_at: float
    ended_at: float | None
    sessions: int
    train_steps: int  # distinct train steps charged
    flops_by_phase: dict[str, int]
    tokens_by_phase: dict[str, int]
    rerun_flops: int  # part of the total spent re-running work lost to interruptions
    unsettled_reservations: int = 0  # reservations never settled, charged at their maximum
    train_charges: int = 0  # first-run training charges: micro-batches (optimizer steps x accumulation)
    loss_flops: int = 0  # part of the total pricing the loss (conventions that price it)
    lost_flops: int = 0  # work thrown away by interruptions: past a session's newest checkpoint, else re-runs

    @property
    def flops(self) -> int:
        return sum(self.flops_by_phase.values())


@dataclass(frozen=True)
class LedgerSnapshot:
    """A consistent view of the whole ledger, read in one transaction."""

    path: Path
    limit: int
    spent: int
    experiments: list[ExperimentUsage]  # in start order
