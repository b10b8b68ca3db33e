"""A whole plan on several processes (``torchrun --nproc-per-node N -m experiments run ...``).

Rank 0 runs the plan exactly as one process does: it alone decides, holds the ledger, writes
``results.json`` and the report. The other ranks *serve* it: they wait for a command, join in
the work that needs every rank, and wait again, until rank 0 says stop:

- ``train``: every rank calls ``train`` for the run; the plan's ``batch_size`` is the global
  batch, split evenly over the ranks (:func:`per_rank_config`), so a run is charged, and
  computes, what one process of the same plan does;
- ``forecast``: every rank makes its share of the ``generate`` calls
  (:mod:`experiments.forecasting.sharding`); rank 0 merges them, scores them with the
  baselines and writes the stage's results.

Everything else (the measurement step, scoring at a common context, the untrained base's
validation, the baselines) is small and runs on rank 0 while the others wait.

Failures: one rank 0 shares with the others (its budget refusing a forecast call, an error in
its part of a training step, Ctrl-C) leave them waiting quietly; rank 0 reports it and exits,
and the launcher (torchrun, ``accelerate launch``) then stops the others wherever they wait (a
"stop" sent then could meet a rank inside a collective). A rank's own failure ends it, and the
launcher stops rank 0: the ledger and ``results.json`` are crash-safe, so the same command resumes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from experiments.training.distributed import world
from experiments.pipeline.plan import PlanError
from experiments.training.config import TrainConfig
from experiments.training.distributed import MainRankFailed
from experiments.training.interrupts import RunInterrupted

if TYPE_CHECKING:
    from experiments.pipeline.plan import Plan
    from experiments.pipeline.workspace import PlanWorkspace

logger = logging.getLogger(__name__)
TRAIN, FORECAST, STOP = "train", "forecast", "stop"
Handler = Callable[..., Any]
RANK_0_ALONE = timedelta(hours=3)  # how long the others wait while rank 0 works alone (baselines, scoring, report)


def join_process_group() -> tuple[int, int]:
    """Under a launcher (``WORLD_SIZE`` > 1): form the process group the way the training loop's
    accelerator does (gloo on CPU, NCCL on GPUs), waiting up to :data:`RANK_0_ALONE` in any
    collective; returns (rank, world size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available(), timeout=RANK_0_ALONE)
    return world()


def per_rank_config(config: TrainConfig, world_size: int) -> TrainConfig:
    """``config`` with its global ``batch_size`` split over ``world_size`` ranks (unchanged for one)."""
    if world_size == 1:
        return config
    if config.batch_size % world_size:
        raise PlanError(f"run {config.experiment!r}: batch_size {config.batch_size} (the global batch) does not "
                        f"split evenly over {world_size} processes; choose a multiple of {world_size}")
    return replace(config, batch_size=config.batch_size // world_size)


def check_batches_split(plan: Plan, world_size: int) -> None:
    """Refuse, before any work, a plan whose batch sizes do not split over ``world_size`` ranks."""
    sizes = {plan.training.batch_size}
    for stage in plan.stages:
        sizes |= set(stage.grid.get("batch_size", ())) | ({stage.overrides["batch_size"]}
                                                          if "batch_size" in stage.overrides else set())
    uneven = sorted(size for size in sizes if size % world_size)
    if uneven:
        raise PlanError(f"plan {plan.name!r}: batch_size {uneven} (the global batch) does not split evenly over "
                        f"{world_size} processes; choose multiples of {world_size}")


def dispatch(command: str, *arguments: Any) -> None:
    """Rank 0: have the other ranks join in ``command`` now (nothing in one process or elsewhere)."""
    rank, world_size = world()
    if world_size > 1 and rank == 0:
        dist.broadcast_object_list([(command, *arguments)], src=0)


def serve(run: PlanWorkspace, handlers: dict[str, Handler]) -> None:
    """Ranks > 0: run each command rank 0 dispatches with ``handlers[command](run, *arguments)``
    until it says stop. A failure rank 0 shares is rank 0's to report: the rank goes on waiting
    (see the module docstring); its own failures end it."""
    while True:
        received: list[Any] = [None]
        dist.broadcast_object_list(received, src=0)
        command, *arguments = received[0]
        if command == STOP:
            return
        try:
            handlers[command](run, *arguments)
        except (MainRankFailed, RunInterrupted) as shared:
            logger.debug("rank %d: %s ended on rank 0's word: %s", world()[0], command, shared)
