"""experiments: the researcher's pipeline, in data-flow order.

models (load / tiny) -> data (windows) -> train (budget-guarded LoRA) -> forecast (constrained
LLMTIME generation) -> metrics + baselines -> evaluate (test split) -> plan / planner / runner
(a whole plan under one budget) -> report. ``python -m experiments`` is the CLI.
"""

from experiments.forecasting.baselines import BASELINES, BaselineResult, linear_extrapolation, persistence, physics_fit
from experiments.training.checkpoint import Checkpoint, TrainerState, latest_checkpoint, list_checkpoints
from experiments.data import DataConfig, ExperimentData, prepare_data
from experiments.forecasting.test_split import TestSplitResults, evaluate_test_split
from experiments.training.validation import validate
from experiments.forecasting.generate import ForecastConfig, ForecastOutput, GenerationBatch, forecast_series
from experiments.forecasting.grammar import LLMTimeGrammar, LLMTimeLogitsProcessor, StepStoppingCriteria
from experiments.forecasting.metrics import (
    SPECIES,
    ForecastSet,
    MethodMetrics,
    ValidationMetrics,
    evaluate_forecasts,
    horizon_errors,
    perplexity,
    results_table,
)
from experiments.training.metrics_log import MetricsLog, read_metrics
from experiments.models.loading import (
    QWEN_MODEL_ID,
    TINY_MODEL,
    LoadedModel,
    build_random_model,
    build_tiny_model,
    default_tokenizer_source,
    load_model,
    load_model_and_tokenizer,
    load_tokenizer,
    save_tiny_model,
    tiny_config,
)
from experiments.forecasting.physics_fit import FitConfig, LVFit, fit_lotka_volterra
from experiments.pipeline.plan import Plan, PlanError, StageSpec, load_plan, shipped_plans
from experiments.pipeline.planner import PlanProjection, StageProjection, project
from experiments.forecasting.plots import plot_forecast, plot_horizon_errors
from experiments.pipeline.report import write_report
from experiments.pipeline.results import Results
from experiments.training.run_dir import ConfigMismatch
from experiments.pipeline.runner import PlanRun, dry_run, run_plan
from experiments.training.loop import make_accelerator, train, train_step
from experiments.training.config import BudgetConfig, TrainConfig, TrainResult

__all__ = [
    # models
    "QWEN_MODEL_ID", "TINY_MODEL", "LoadedModel", "build_random_model", "build_tiny_model", "default_tokenizer_source", "load_model",
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
