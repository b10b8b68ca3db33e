"""Experiment-level calculator: the FLOPs of a planned run and its share of a budget.

A run is ``steps`` training steps plus validation on a fixed schedule plus generation for
evaluation. The training loop follows ``RunPlan.evaluation_steps()`` exactly, so the estimate
is what the run will be charged (in the same convention).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from flopcount.count.conventions import Convention, get_convention
from flopcount.count.arguments import check_count, check_lora
from flopcount.count.engine import DEFAULT_LORA_TARGETS, forward_flops, generation_flops, training_step_flops
from flopcount.count.shape import model_shape


@dataclass(frozen=True)
class RunPlan:
    """A planned fine-tuning run.

    Attributes:
        steps: optimiser steps, each on ``batch`` sequences of ``seq_len`` tokens.
        lora_rank, lora_targets, lm_head_bias: the adapters trained (rank 0: none).
        eval_every: validate after every ``eval_every`` steps (0: never).
        eval_windows: validation windows (one forward of ``seq_len`` tokens each) per validation.
        gen_series: series forecast by generation at the end; each is ``gen_samples`` samples
            of ``gen_new_tokens`` tokens after a ``gen_prompt_len``-token prompt.
    """

    steps: int
    batch: int
    seq_len: int
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    eval_every: int = 0
    eval_windows: int = 0
    gen_series: int = 0
    gen_prompt_len: int = 0
    gen_new_tokens: int = 0
    gen_samples: int = 1
    lm_head_bias: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        for name, minimum in (("steps", 0), ("batch", 1), ("seq_len", 1), ("eval_every", 0),
                              ("eval_windows", 0), ("gen_series", 0), ("gen_samples", 1)):
            check_count(f"RunPlan.{name}", getattr(self, name), minimum)
        check_lora(self.lora_rank, self.lora_targets)
        if self.gen_series:
            check_count("RunPlan.gen_prompt_len (gen_series > 0)", self.gen_prompt_len, 1)
            check_count("RunPlan.gen_new_tokens (gen_series > 0)", self.gen_new_tokens, 1)

    def evaluation_steps(self) -> list[int]:
        """Steps after which validation runs: every multiple of ``eval_every`` up to ``steps``,
        plus ``steps`` itself if it is not a multiple. Empty when ``eval_every`` is 0."""
        if not self.eval_every or not self.steps:
            return []
        scheduled = list(range(self.eval_every, self.steps + 1, self.eval_every))
        return scheduled if self.steps % self.eval_every == 0 else [*scheduled, self.steps]

    def with_steps(self, steps: int) -> RunPlan:
        """The same plan with another number of steps."""
        return replace(self, steps=steps)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lora_targets": list(self.lora_targets)}


@dataclass(frozen=True)
class PlanEstimate:
    """FLOPs of a ``RunPlan`` under one convention (exact ints).

    Attributes:
        per_step: one training step (``training_step_flops``).
        per_validation: one validation (``eval_windows`` forwards of ``seq_len``).
        per_generation: one series' generation (prefill + decoding, all samples).
        training, validation, generation: the totals of each phase.
    """

    plan: RunPlan
    model: str
    convention: str
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
        fields = {k: v for k, v in self.__dict__.items() if k != "plan"}
        return {**fields, "plan": self.plan.to_dict(), "total": self.total}


def estimate_run(model: Any, plan: RunPlan, convention: str | Convention = "coursework") -> PlanEstimate:
    """FLOPs of ``plan`` on ``model`` (anything ``model_shape`` accepts) under ``convention``."""
    shape, conv = model_shape(model), get_convention(convention)
    lora = dict(lora_rank=plan.lora_rank, lora_targets=plan.lora_targets, lm_head_bias=plan.lm_head_bias)
    per_step = training_step_flops(shape, plan.batch, plan.seq_len, convention=conv, **lora)
    window = forward_flops(shape, plan.seq_len, 1, convention=conv, **lora).total
    per_validation = plan.eval_windows * window
    per_generation = 0
    if plan.gen_series:
        per_generation = generation_flops(shape, plan.gen_prompt_len, plan.gen_new_tokens, plan.gen_samples,
                                          convention=conv, **lora).total
    return PlanEstimate(
        plan=plan, model=shape.name, convention=conv.name,
        per_step=per_step, per_validation=per_validation, per_generation=per_generation,
        training=plan.steps * per_step,
        validation=len(plan.evaluation_steps()) * per_validation,
        generation=plan.gen_series * per_generation,
    )


def max_affordable_steps(model: Any, plan: RunPlan, available_flops: int | float,
                         convention: str | Convention = "coursework") -> int:
    """The largest ``steps`` for which ``estimate_run(model, plan.with_steps(steps))`` fits in
    ``available_flops`` (validation and generation included), found exactly by bisection
    (the estimate never decreases with ``steps``). 0 when not even 0 steps fit.
    """
    available = _exact_flops(available_flops)
    shape = model_shape(model)
    base = estimate_run(shape, plan.with_steps(0), convention)
    if base.total > available:
        return 0

    def fits(steps: int) -> bool:
        return estimate_run(shape, plan.with_steps(steps), convention).total <= available

    low, high = 0, (available - base.total) // base.per_step + 1  # fits(low); not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def _exact_flops(value: int | float) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"available FLOPs must be a number, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"available FLOPs must be a whole number, got {value!r}")
    if value < 0:
        raise ValueError(f"available FLOPs must be >= 0, got {value!r}")
    return int(value)
