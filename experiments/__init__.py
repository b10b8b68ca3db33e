"""experiments package: loading, training, forecasting, baselines, plans, CLI and report."""

from .models import (
    QWEN_MODEL_ID,
    TINY_MODEL,
    LoadedModel,
    build_tiny_model,
    default_tokenizer_source,
    load_model,
    load_model_and_tokenizer,
    load_tokenizer,
    save_tiny_model,
    tiny_config,
)
from .checkpoint import Checkpoint, TrainerState, latest_checkpoint, list_checkpoints
from .data import DataConfig, ExperimentData, prepare_data
from .evaluation import validate
from .metrics_log import MetricsLog, read_metrics
from .run_dir import ConfigMismatch
from .train import make_accelerator, train, train_step
from .train_config import BudgetConfig, TrainConfig, TrainResult
from .grammar import LLMTimeGrammar, LLMTimeLogitsProcessor, StepStoppingCriteria
from .forecast import ForecastConfig, ForecastOutput, GenerationBatch, forecast_series
from .evaluate import TestSplitResults, evaluate_test_split

__all__ = [
    "QWEN_MODEL_ID",
    "TINY_MODEL",
    "LoadedModel",
    "build_tiny_model",
    "default_tokenizer_source",
    "load_model",
    "load_model_and_tokenizer",
    "load_tokenizer",
    "save_tiny_model",
    "tiny_config",
    # training (experiments.train and friends)
    "BudgetConfig",
    "Checkpoint",
    "ConfigMismatch",
    "DataConfig",
    "ExperimentData",
    "MetricsLog",
    "TrainConfig",
    "TrainResult",
    "TrainerState",
    "latest_checkpoint",
    "list_checkpoints",
    "make_accelerator",
    "prepare_data",
    "read_metrics",
    "train",
    "train_step",
    "validate",
    # forecasting (experiments.grammar, experiments.forecast, experiments.evaluate)
    "ForecastConfig",
    "ForecastOutput",
    "GenerationBatch",
    "LLMTimeGrammar",
    "LLMTimeLogitsProcessor",
    "StepStoppingCriteria",
    "TestSplitResults",
    "evaluate_test_split",
    "forecast_series",
]
