"""experiments: the researcher's pipeline, in data-flow order.

models (load / tiny) -> data (windows) -> train (budget-guarded LoRA) -> forecast (constrained
LLMTIME generation) -> metrics + baselines -> evaluate (test split) -> plan / planner / runner
(a whole plan under one budget) -> report. ``python -m experiments`` is the CLI.
"""

from .baselines import BASELINES, BaselineResult, linear_extrapolation, persistence, physics_fit
from .checkpoint import Checkpoint, TrainerState, latest_checkpoint, list_checkpoints
from .data import DataConfig, ExperimentData, prepare_data
from .evaluate import TestSplitResults, evaluate_test_split
from .evaluation import validate
from .forecast import ForecastConfig, ForecastOutput, GenerationBatch, forecast_series
from .grammar import LLMTimeGrammar, LLMTimeLogitsProcessor, StepStoppingCriteria
from .metrics import (
    SPECIES,
    ForecastSet,
    MethodMetrics,
    ValidationMetrics,
    evaluate_forecasts,
    horizon_errors,
    perplexity,
    results_table,
)
from .metrics_log import MetricsLog, read_metrics
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
from .physics_fit import FitConfig, LVFit, fit_lotka_volterra
from .plan import Plan, PlanError, StageSpec, load_plan, shipped_plans
from .planner import PlanProjection, StageProjection, project
from .plots import plot_forecast, plot_horizon_errors
from .report import write_report
from .results import Results
from .run_dir import ConfigMismatch
from .runner import PlanRun, dry_run, run_plan
from .train import make_accelerator, train, train_step
from .train_config import BudgetConfig, TrainConfig, TrainResult

__all__ = [
    # models
    "QWEN_MODEL_ID", "TINY_MODEL", "LoadedModel", "build_tiny_model", "default_tokenizer_source", "load_model",
    "load_model_and_tokenizer", "load_tokenizer", "save_tiny_model", "tiny_config",
    # data and training
    "BudgetConfig", "Checkpoint", "ConfigMismatch", "DataConfig", "ExperimentData", "MetricsLog", "TrainConfig",
    "TrainResult", "TrainerState", "latest_checkpoint", "list_checkpoints", "make_accelerator", "prepare_data",
    "read_metrics", "train", "train_step", "validate",
    # forecasting
    "ForecastConfig", "ForecastOutput", "GenerationBatch", "LLMTimeGrammar", "LLMTimeLogitsProcessor",
    "StepStoppingCriteria", "forecast_series",
    # metrics, baselines, evaluation, plots
    "BASELINES", "SPECIES", "BaselineResult", "FitConfig", "ForecastSet", "LVFit", "MethodMetrics",
    "TestSplitResults", "ValidationMetrics", "evaluate_forecasts", "evaluate_test_split", "fit_lotka_volterra",
    "horizon_errors", "linear_extrapolation", "persistence", "perplexity", "physics_fit", "plot_forecast",
    "plot_horizon_errors", "results_table",
    # plans
    "Plan", "PlanError", "PlanProjection", "PlanRun", "Results", "StageProjection", "StageSpec", "dry_run",
    "load_plan", "project", "run_plan", "shipped_plans", "write_report",
]
