"""The budget-guarded LoRA training loop: config, batches, loss, validation, checkpoints, the
loop itself (``train``) and its CLI (``python -m experiments train``)."""

from experiments.training.checkpoint import Checkpoint, TrainerState, latest_checkpoint, list_checkpoints
from experiments.training.config import BudgetConfig, TrainConfig, TrainResult
from experiments.training.distributed import make_accelerator
from experiments.training.loop import train, train_step
from experiments.training.metrics_log import MetricsLog, read_metrics
from experiments.training.run_dir import ConfigMismatch
from experiments.training.validation import ValidationMetrics, validate

__all__ = [
    "BudgetConfig", "Checkpoint", "ConfigMismatch", "MetricsLog", "TrainConfig", "TrainResult", "TrainerState",
    "ValidationMetrics", "latest_checkpoint", "list_checkpoints", "make_accelerator", "read_metrics", "train",
    "train_step", "validate",
]
