"""Configuration and result records of a training run (``experiments.training.loop``)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flopcount import RunPlan
from lora import LoRAConfig


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"TrainConfig.{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """One LoRA fine-tuning run.

    ``steps`` optimizer steps, each on ``batch_size`` windows of ``context`` tokens per rank
    (global batch ``batch_size × world size``). Adam at ``learning_rate`` on the LoRA
    parameters only (rank ``lora_rank``, ``lora_alpha`` None = rank, on ``lora_targets``, plus
    a trainable lm_head bias if ``lm_head_bias``). Validation after every ``eval_every``
    steps and after the last (``flopcount.RunPlan.evaluation_steps``; 0: never) on all
    validation windows, or on a fixed subset of ``eval_windows`` of them (all if there are
    not more) drawn from ``seed``. A
    checkpoint every ``checkpoint_every`` steps and at the end; the newest
    ``keep_checkpoints`` are kept. ``max_grad_norm`` clips the global gradient norm.
    """

    experiment: str
    steps: int
    batch_size: int = 4
    context: int = 512
    learning_rate: float = 1e-5
    lora_rank: int = 4
    lora_alpha: float | None = None
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    lm_head_bias: bool = False
    eval_every: int = 100
    eval_windows: int | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.experiment, str) or not self.experiment.strip():
            raise ValueError(f"TrainConfig.experiment must be a non-empty name, got {self.experiment!r}")
        for name, minimum in (("steps", 0), ("batch_size", 1), ("context", 2), ("lora_rank", 1),
                              ("eval_every", 0), ("checkpoint_every", 1), ("keep_checkpoints", 1), ("seed", 0)):
            _check_int(name, getattr(self, name), minimum)
        if self.eval_windows is not None:
            _check_int("eval_windows", self.eval_windows, 1)
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"TrainConfig.max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")
        targets = (self.lora_targets,) if isinstance(self.lora_targets, str) else tuple(self.lora_targets)
        object.__setattr__(self, "lora_targets", targets)
        self.lora_config()  # validates rank, alpha and targets

    def lora_config(self) -> LoRAConfig:
        return LoRAConfig(r=self.lora_rank, alpha=self.lora_alpha, targets=self.lora_targets,
                          lm_head_bias=self.lm_head_bias)

    def run_plan(self, world_size: int, eval_windows: int) -> RunPlan:
        """The ``flopcount.RunPlan`` this run follows: the global batch, and ``eval_windows``
        validation windows per evaluation (the number actually scored)."""
        return RunPlan(steps=self.steps, batch=self.batch_size * world_size, seq_len=self.context,
                       lora_rank=self.lora_rank, lora_targets=self.lora_targets, lm_head_bias=self.lm_head_bias,
                       eval_every=self.eval_every, eval_windows=eval_windows)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lora_targets": list(self.lora_targets)}


@dataclass(frozen=True)
class BudgetConfig:
    """The FLOP budget a run is charged against (see ``flopcount.Budget``).

    ``limit`` in FLOPs for everything in the ``ledger`` file; ``convention`` prices the
    steps. ``require_fit`` (the default): refuse to start when the remaining steps and
    validations cannot all be paid, saying how many steps would fit; False starts anyway and
    stops cleanly, with a checkpoint, when the budget runs out. ``experiment_limit``: an
    optional cap on this run's own FLOPs (re-runs after a crash included), e.g. its share of a
    plan; the run stops cleanly at it as at the global limit.
    """

    limit: int | float
    ledger: str | os.PathLike[str]
    convention: str = "coursework"
    require_fit: bool = True
    synchronous: str = "FULL"
    experiment_limit: int | None = None


@dataclass(frozen=True)
class TrainResult:
    """How a ``train`` call ended.

    ``steps_done``: optimizer steps completed in total (earlier sessions included).
    ``status``: ``"finished"`` (all ``steps`` done) or ``"stopped"`` (the budget could not pay
    for the next step or validation; ``stop_reason`` says which). Losses are mean nats per
    target token; ``final_train_loss`` is the last step's, None if this call ran no step.
    ``flops_charged``: FLOPs this call charged (training + validation, re-runs included).
    """

    steps_done: int
    status: str
    stop_reason: str | None
    final_train_loss: float | None
    last_val_loss: float | None
    last_val_perplexity: float | None
    best_val_loss: float | None
    best_val_step: int | None
    flops_charged: int
    checkpoint: Path | None
    metrics_path: Path
    run_dir: Path
    resumed_from: int | None = None
    session: int | None = field(default=None)
