"""Running one program on several processes: the accelerator, and decisions rank 0 makes.

Rank 0 alone owns the ledger, the metrics file and the checkpoints; ``on_main`` runs an
action there and hands its result (or its failure) to every rank, so all ranks take the
same branch (go on, stop, raise) at the same step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

T = TypeVar("T")


def make_accelerator(cpu: bool | None = None) -> Accelerator:
    """An ``Accelerator`` for ``train``: on CPU (gloo when distributed) unless a GPU is present
    or ``cpu=False``. Accelerate needs ``cpu=True`` to form a gloo group under ``torchrun``."""
    if cpu is None:
        cpu = not torch.cuda.is_available()
    return Accelerator(cpu=cpu)


def on_main(accelerator: Accelerator, action: Callable[[], T]) -> T:
    """Run ``action`` on rank 0 only and return its result on every rank. If it raises, rank
    0 re-raises the exception and the other ranks raise ``RuntimeError`` with its message."""
    if accelerator.num_processes == 1:
        return action()
    outcome: list[Any] = [None]
    error: BaseException | None = None
    if accelerator.is_main_process:
        try:
            outcome = [(True, action())]
        except Exception as caught:  # noqa: BLE001 - handed to every rank below
            error, outcome = caught, [(False, f"{type(caught).__name__}: {caught}")]
    broadcast_object_list(outcome, from_process=0)
    succeeded, value = outcome[0]
    if error is not None:
        raise error
    if not succeeded:
        raise RuntimeError(f"rank 0 failed: {value}")
    return value
