"""Configuration and result records of a training run (``experiments.training.loop``)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from flopcount import CountSetup, TrainingWorkload
from experiments.training.trackers import TRACKERS
from lora import DEFAULT_TARGETS, LoRAConfig


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"TrainConfig.{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """One LoRA fine-tuning run: the one type of a run's settings, from a plan's TOML to the
    FLOP charge of a step.

    ``experiment`` (the ledger name) and ``steps`` (optimizer steps in total) are None in a
    plan's ``[training]`` defaults and set per run (:meth:`for_run`); ``train`` needs both.
    Each optimizer step accumulates ``grad_accum_steps`` micro-batches of ``batch_size``
    windows of ``context`` tokens per rank (global batch ``batch_size × world size ×
    grad_accum_steps``); every micro-batch is charged before it runs. ``mixed_precision``:
    ``"no"``, ``"bf16"`` or ``"fp16"`` autocast through accelerate (None: bf16 on a CUDA
    device that supports it, else no); the LoRA weights and Adam state stay float32 and the
    FLOP charges do not depend on it. The learning rate follows ``lr_schedule``
    (``"constant"``, ``"linear"`` or ``"cosine"`` decay to 0 at the last step, transformers'
    schedules) after ``warmup_steps`` of linear warmup. Adam at ``learning_rate`` on the LoRA parameters only (rank
    ``lora_rank``, ``lora_alpha`` None = rank, on ``lora_targets``, plus a trainable lm_head
    bias if ``lm_head_bias``). Validation after every ``eval_every`` steps and after the last
    (0: never) on all validation windows (``eval_windows`` None), or on a fixed subset of
    ``eval_windows`` of them drawn from ``seed``. A checkpoint every ``checkpoint_every`` steps
    and at the end; the newest ``keep_checkpoints`` are kept. ``max_grad_norm`` clips the global
    gradient norm (None: no clipping). ``report_to``: accelerate trackers that get every metrics
    record too (``"tensorboard"``, ``"mlflow"``, ``"wandb"``; see ``experiments.training.trackers``).
    "Unset" is always None.
    """

    experiment: str | None = None
    steps: int | None = None
    batch_size: int = 4
    context: int = 512
    learning_rate: float = 1e-5
    lora_rank: int = 4
    lora_alpha: float | None = None
    lora_targets: tuple[str, ...] = DEFAULT_TARGETS
    lm_head_bias: bool = False
    eval_every: int = 100
    eval_windows: int | None = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    max_grad_norm: float | None = None
    grad_accum_steps: int = 1
    mixed_precision: str | None = None
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    report_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.experiment is not None and (not isinstance(self.experiment, str) or not self.experiment.strip()):
            raise ValueError(f"TrainConfig.experiment must be a non-empty name, got {self.experiment!r}")
        if self.steps is not None:
            _check_int("steps", self.steps, 0)
        for name, minimum in (("batch_size", 1), ("context", 2), ("lora_rank", 1), ("eval_every", 0),
                              ("checkpoint_every", 1), ("keep_checkpoints", 1), ("seed", 0), ("grad_accum_steps", 1),
                              ("warmup_steps", 0)):
            _check_int(name, getattr(self, name), minimum)
        if self.eval_windows is not None:
            _check_int("eval_windows", self.eval_windows, 1)
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) \
                or not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0 and finite, got {self.learning_rate!r}")
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ValueError(f"TrainConfig.max_grad_norm must be finite and > 0, or None; got {self.max_grad_norm!r}")
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"TrainConfig.mixed_precision must be one of {MIXED_PRECISION} (or unset: bf16 on a "
                             f"GPU that supports it, else no), got {self.mixed_precision!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        trackers = (self.report_to,) if isinstance(self.report_to, str) else tuple(self.report_to)
        trackers = tuple(name for name in trackers if name != "none")
        unknown = sorted(set(trackers) - set(TRACKERS))
        if unknown or len(set(trackers)) != len(trackers):
            raise ValueError(f"TrainConfig.report_to must be distinct names from {TRACKERS} (or 'none'), got "
                             f"{list(self.report_to)}")
        object.__setattr__(self, "report_to", trackers)
        targets = (self.lora_targets,) if isinstance(self.lora_targets, str) else tuple(self.lora_targets)
        object.__setattr__(self, "lora_targets", targets)
        self.lora_config()  # validates rank, alpha and targets

    def check_context(self, model_config: Any) -> None:
        """Raise ``ValueError`` when ``context`` tokens are more positions than the model has
        (``max_position_embeddings``): checked before the first FLOP is charged."""
        positions = getattr(model_config, "max_position_embeddings", None)
        if isinstance(positions, int) and self.context > positions:
            raise ValueError(f"TrainConfig.context is {self.context} tokens but the model has "
                             f"{positions} positions (max_position_embeddings); use --context {positions} or less")

    def for_run(self, experiment: str, steps: int) -> TrainConfig:
        """These settings as the run ``experiment`` of ``steps`` steps."""
        return replace(self, experiment=experiment, steps=steps)

    def lora_config(self) -> LoRAConfig:
        return LoRAConfig(r=self.lora_rank, alpha=self.lora_alpha, targets=self.lora_targets,
                          lm_head_bias=self.lm_head_bias)

    def count_setup(self, model: Any, convention: str = "coursework") -> CountSetup:
        """The ``flopcount.CountSetup`` that prices this run's steps on ``model`` (anything
        ``flopcount.model_shape`` accepts): its shape, ``convention`` and this LoRA."""
        return CountSetup.from_lora(model, self.lora_config(), convention)

    def workload(self, world_size: int, eval_windows: int) -> TrainingWorkload:
        """The ``flopcount.TrainingWorkload`` this run follows (what the budget prices): the
        global batch, and ``eval_windows`` validation windows per validation (the number
        actually scored)."""
        if self.steps is None:
            raise ValueError(f"TrainConfig {self.experiment!r} has no steps: set them with for_run()")
        return TrainingWorkload(steps=self.steps, batch=self.batch_size * world_size, seq_len=self.context,
                                grad_accum_steps=self.grad_accum_steps, eval_every=self.eval_every,
                                eval_windows=eval_windows)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "lora_targets": list(self.lora_targets), "report_to": list(self.report_to)}

    def settings(self) -> dict[str, Any]:
        """The hyperparameters alone (JSON-ready: no experiment name, no steps)."""
        return {key: value for key, value in self.to_dict().items() if key not in RUN_IDENTITY}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict` (and of :meth:`settings`)."""
        return cls(**{**values, "lora_targets": tuple(values.get("lora_targets", DEFAULT_TARGETS)),
                      "report_to": tuple(values.get("report_to", ()))})


MIXED_PRECISION = ("no", "bf16", "fp16")
LR_SCHEDULES = ("constant", "linear", "cosine")
RUN_IDENTITY = ("experiment", "steps")
"""The ``TrainConfig`` fields that name one run rather than set a hyperparameter."""


@dataclass(frozen=True)
class BudgetConfig:
    """The FLOP budget a run is charged against (see ``flopcount.Budget``).

    ``limit`` in FLOPs for everything in the ``ledger`` file; ``convention`` prices the
    steps. ``require_fit`` (the default): refuse to start when the remaining steps and
    validations cannot all be paid, saying how many steps would fit; False starts anyway and
    stops cleanly, with a checkpoint, when the budget runs out. ``experiment_limit``: an
    optional cap on this run's own FLOPs (re-runs after a crash included), e.g. its share of a
    plan; the run stops cleanly at it as at the global limit. ``reserve`` (a plan's ``[budget]``
    only): the fraction of the limit no stage is planned to spend, kept to redo the work lost to
    crashes (see ``experiments.pipeline.caps``); a single ``train`` run ignores it.
    """

    limit: int
    ledger: str | os.PathLike[str] | None = None  # None in a plan's [budget]: the run directory's ledger
    convention: str = "coursework"
    require_fit: bool = True
    synchronous: str = "FULL"
    experiment_limit: int | None = None
    reserve: float = 0.0


@dataclass(frozen=True)
class TrainResult:
    """How a ``train`` call ended.

    ``steps_done``: optimizer steps completed in total (earlier sessions included).
    ``status``: ``"finished"`` (all ``steps`` done) or ``"stopped"`` (the budget could not pay
    for the next step or validation, or the loss went non-finite; ``stop_reason`` says which);
    ``stopped_by_budget``: whether it stopped because the budget refused a charge. Losses are mean nats per
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
    stopped_by_budget: bool = False
