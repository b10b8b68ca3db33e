"""A training run's workload, its FLOPs, and the steps that fit a budget.

A run is ``steps`` training steps plus validation on a fixed schedule plus generation for
evaluation. The training loop follows :meth:`TrainingWorkload.validates_after` exactly, so
:func:`estimate_run` is what the run will be charged (under the same ``CountSetup``). Every
figure is closed-form: constant time and memory whatever the number of steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from flopcount.count.arguments import check_count
from flopcount.count.engine import forward_flops, generation_flops, training_step_flops
from flopcount.count.setup import CountSetup, as_setup


@dataclass(frozen=True)
class TrainingWorkload:
    """The work of a planned fine-tuning run (what the budget prices).

    Attributes:
        steps: optimiser steps, each of ``grad_accum_steps`` micro-batches of ``batch``
            sequences of ``seq_len`` tokens (``batch``: all processes together).
        eval_every: validate after every ``eval_every`` steps and after the last (0: never).
        eval_windows: validation windows (one forward of ``seq_len`` tokens each) per validation.
        gen_series: series forecast by generation at the end; each is ``gen_samples`` samples
            of ``gen_new_tokens`` tokens after a ``gen_prompt_len``-token prompt.
    """

    steps: int
    batch: int
    seq_len: int
    grad_accum_steps: int = 1
    eval_every: int = 0
    eval_windows: int = 0
    gen_series: int = 0
    gen_prompt_len: int = 0
    gen_new_tokens: int = 0
    gen_samples: int = 1

    def __post_init__(self) -> None:
        for name, minimum in (("steps", 0), ("batch", 1), ("seq_len", 1), ("grad_accum_steps", 1), ("eval_every", 0),
                              ("eval_windows", 0), ("gen_series", 0), ("gen_samples", 1)):
            check_count(f"TrainingWorkload.{name}", getattr(self, name), minimum)
        if self.gen_series:
            check_count("TrainingWorkload.gen_prompt_len (gen_series > 0)", self.gen_prompt_len, 1)
            check_count("TrainingWorkload.gen_new_tokens (gen_series > 0)", self.gen_new_tokens, 1)

    def validates_after(self, step: int) -> bool:
        """Whether validation runs after ``step`` (1-based): every multiple of ``eval_every``,
        and the last step."""
        if not self.eval_every or not 1 <= step <= self.steps:
            return False
        return step % self.eval_every == 0 or step == self.steps

    def validations_through(self, step: int) -> int:
        """Validations after steps ``1 .. step`` of this run (closed form)."""
        step = min(step, self.steps)
        if not self.eval_every or step <= 0:
            return 0
        return step // self.eval_every + (step == self.steps and self.steps % self.eval_every != 0)

    def with_steps(self, steps: int) -> TrainingWorkload:
        """The same workload with another number of steps."""
        return replace(self, steps=steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunEstimate:
    """FLOPs of a ``TrainingWorkload`` under one ``CountSetup`` (exact ints).

    Attributes:
        per_micro_batch: one micro-batch (``training_step_flops`` of ``batch x seq_len``).
        per_step: one optimizer step (``grad_accum_steps`` micro-batches).
        per_validation: one validation (``eval_windows`` forwards of ``seq_len``).
        per_generation: one series' generation (prefill + decoding, all samples).
        training, validation, generation: the totals of each phase.
    """

    workload: TrainingWorkload
    model: str
    convention: str
    per_micro_batch: int
    per_step: int
    per_validation: int
    per_generation: int
    training: int
    validation: int
    generation: int

    @property
    def total(self) -> int:
        """Total FLOPs of the run."""
        return self.training + self.validation + self.generation

    def share(self, limit: int | float) -> float:
        """Fraction of ``limit`` FLOPs the run uses (1.0 = all of it)."""
        if not limit > 0:
            raise ValueError(f"budget limit must be > 0, got {limit!r}")
        return self.total / limit

    def to_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in self.__dict__.items() if k != "workload"}
        return {**fields, "workload": self.workload.to_dict(), "total": self.total}


def estimate_run(setup: CountSetup | Any, workload: TrainingWorkload) -> RunEstimate:
    """FLOPs of ``workload`` under ``setup`` (or a model alone: coursework, no LoRA)."""
    setup = as_setup(setup)
    per_micro_batch = training_step_flops(setup, workload.batch, workload.seq_len)
    per_step = workload.grad_accum_steps * per_micro_batch
    per_validation = workload.eval_windows * forward_flops(setup, workload.seq_len, 1).total
    per_generation = 0
    if workload.gen_series:
        per_generation = generation_flops(setup, workload.gen_prompt_len, workload.gen_new_tokens,
                                          workload.gen_samples).total
    return RunEstimate(
        workload=workload, model=setup.model, convention=setup.convention.name,
        per_micro_batch=per_micro_batch, per_step=per_step, per_validation=per_validation,
        per_generation=per_generation,
        training=workload.steps * per_step,
        validation=workload.validations_through(workload.steps) * per_validation,
        generation=workload.gen_series * per_generation,
    )


def remaining_cost(estimate: RunEstimate, steps: int, done: int = 0) -> int:
    """FLOPs still to pay for a run of ``estimate``'s workload cut to ``steps`` steps, when
    ``done`` of them (and their validations) are already paid; generation included."""
    work = estimate.workload.with_steps(steps)
    validations = work.validations_through(steps) - work.validations_through(min(done, steps))
    return (steps - min(done, steps)) * estimate.per_step + validations * estimate.per_validation \
        + work.gen_series * estimate.per_generation


def steps_that_fit(setup: CountSetup | Any, workload: TrainingWorkload, available_flops: int | float,
                   done: int = 0) -> int:
    """The most steps (at most ``workload.steps``) a run of ``workload`` can have so that what
    it still costs after ``done`` finished steps (validation and generation included) fits in
    ``available_flops``; ``done`` when not even that fits (0 for a fresh run).

    The one rule for "how many steps fit", used by the planner, ``Budget.preflight`` and the
    training loop. Found by bisection over the closed-form cost (it never decreases with the
    steps): constant memory, logarithmic time.
    """
    available = _exact_flops(available_flops)
    check_count("done", done, minimum=0)
    estimate = estimate_run(setup, workload)
    low = min(done, workload.steps)
    if remaining_cost(estimate, low, done) > available:
        return low
    high = workload.steps
    if remaining_cost(estimate, high, done) <= available:
        return high
    while high - low > 1:  # remaining_cost(low) fits, remaining_cost(high) does not
        middle = (low + high) // 2
        low, high = (middle, high) if remaining_cost(estimate, middle, done) <= available else (low, middle)
    return low


def _exact_flops(value: int | float) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"available FLOPs must be a number, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"available FLOPs must be a whole number, got {value!r}")
    if value < 0:
        raise ValueError(f"available FLOPs must be >= 0, got {value!r}")
    return int(value)
