"""Running one program on several processes: the accelerator, and decisions rank 0 makes.

Rank 0 alone owns the ledger, the metrics file and the checkpoints; ``on_main`` runs an
action there and hands its result (or its failure) to every rank, so all ranks take the
same branch (go on, stop, raise) at the same step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast_object_list

T = TypeVar("T")


class MainRankFailed(RuntimeError):
    """Raised on the other ranks when rank 0's action failed (rank 0 raises the error itself)."""


def resolve_mixed_precision(mixed_precision: str | None, cpu: bool) -> str:
    """``mixed_precision`` itself, or for None: ``"bf16"`` on a CUDA device that supports it,
    else ``"no"``. fp16 autocast needs a GPU (its loss scaling is CUDA's)."""
    if mixed_precision is None:
        return "bf16" if not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if mixed_precision == "fp16" and cpu:
        raise ValueError("mixed_precision 'fp16' needs a CUDA device; on CPU use 'bf16' or 'no'")
    return mixed_precision


def make_accelerator(cpu: bool | None = None, mixed_precision: str | None = None) -> Accelerator:
    """An ``Accelerator`` for ``train``: on CPU (gloo when distributed) unless a GPU is present
    or ``cpu=False``, with accelerate's autocast for ``mixed_precision`` (see
    :func:`resolve_mixed_precision`). Accelerate needs ``cpu=True`` to form a gloo group under
    ``torchrun``.

    Accelerate keeps one process-wide state and refuses a second precision; a single process
    (a plan's runs, or tests) may train runs of different precisions one after another, so
    there the state is reset first. Under ``torchrun`` every run of a launch must share one.
    """
    if cpu is None:
        cpu = not torch.cuda.is_available()
    precision = resolve_mixed_precision(mixed_precision, cpu)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != precision and PartialState().num_processes == 1:
        AcceleratorState._reset_state()  # the one process-wide setting; safe with no process group
    return Accelerator(cpu=cpu, mixed_precision=precision)


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def on_main(accelerator: Accelerator, action: Callable[[], T]) -> T:
    """Run ``action`` on rank 0 only and return its result on every rank. If it raises, rank
    0 re-raises the exception and the other ranks raise :class:`MainRankFailed` with its message."""
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
        raise MainRankFailed(f"rank 0 failed: {value}")
    return value
