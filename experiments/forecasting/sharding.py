"""Forecast on several processes: the ``generate`` calls of a forecast shared over the ranks.

A :class:`~experiments.forecasting.generate.ForecastJob` is the same on every rank (same
examples, same sort, same batches), so the ranks share it by *call*: in round ``r`` rank ``i``
makes call ``r * world + i``. Each call keeps its number, which seeds its sampling, so every
call writes exactly what it writes in one process, and costs exactly the same.

Rank 0 alone holds the budget: before a round it reserves the round's calls in order (the
first refusal stops the reservations), tells every rank how many may run, and after the round
settles each call that ran to its exact cost. The ledger then holds the charges one process
makes, in the same order; only the reservations of a round are open together (so near the
limit a round may be refused where one process would still fit a call). The outputs are
gathered to every rank in call order, so every rank decodes the same forecasts.
"""

from __future__ import annotations

import torch.distributed as dist
from tqdm.auto import tqdm

from experiments.forecasting.generate import BatchRunner, ForecastJob, GeneratedBatch, run_in_order
from experiments.training.distributed import MainRankFailed, world
from flopcount import Budget, BudgetExceeded


def rounds(n_calls: int, world_size: int) -> list[list[int]]:
    """The call numbers of each round: rank ``i`` makes the ``i``-th of its round (if any)."""
    return [list(range(first, min(first + world_size, n_calls))) for first in range(0, n_calls, world_size)]


def generation_runner() -> BatchRunner:
    """The runner for this process: :func:`run_sharded` under a process group of several ranks,
    else :func:`~experiments.forecasting.generate.run_in_order`."""
    return run_sharded if world()[1] > 1 else run_in_order


def run_sharded(job: ForecastJob, budget: Budget | None, step: int, progress: bool) -> list[GeneratedBatch]:
    """Every call of ``job``, shared over the ranks (see the module docstring); every rank gets
    all of them, in call order. Every rank must call it; only rank 0 may pass a ``budget``.
    A refusal raises ``BudgetExceeded`` on rank 0 (after the calls before it ran and were
    settled) and :class:`MainRankFailed` on the others."""
    rank, world_size = world()
    if rank != 0 and budget is not None:
        raise ValueError(f"rank {rank} was given a budget: rank 0 alone charges the ledger")
    done: list[GeneratedBatch] = []
    with job.running():
        for numbers in tqdm(rounds(len(job.batches), world_size), desc=job.config.method_name, unit="round",
                            disable=not (progress and rank == 0)):
            reservations, refusal = _reserve(job, budget, numbers, step) if rank == 0 else ([], None)
            granted = [len(numbers) if budget is None else len(reservations), None if refusal is None else str(refusal)]
            dist.broadcast_object_list(granted, src=0)
            mine = job.generate(numbers[rank]) if rank < granted[0] else None
            gathered: list[GeneratedBatch | None] = [None] * world_size
            dist.all_gather_object(gathered, mine)
            ran = [generated for generated in gathered if generated is not None]
            done.extend(generated.settled(reservation) for generated, reservation
                        in zip(ran, reservations or [None] * len(ran)))
            if granted[1] is not None:
                if refusal is not None:
                    raise refusal
                raise MainRankFailed(f"rank 0's budget refused a forecast batch: {granted[1]}")
    return done


def _reserve(job: ForecastJob, budget: Budget | None, numbers: list[int], step: int):
    """Rank 0: reserve the calls ``numbers`` in order until one is refused."""
    reservations, refusal = [], None
    if budget is None:
        return reservations, refusal
    for number in numbers:
        try:
            reservations.append(job.reserve(budget, number, step))
        except BudgetExceeded as error:
            refusal = error
            break
    return reservations, refusal
