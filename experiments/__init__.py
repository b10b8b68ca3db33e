"""experiments: the researcher's pipeline, one package per step of the data flow.

data (trajectories -> LLMTIME text -> tokens -> windows) -> models (the base LM) ->
training (the budget-guarded LoRA loop) -> forecasting (constrained generation, baselines,
metrics) -> pipeline (a whole plan under one budget: plan, planner, runner, report).
``python -m experiments`` is the CLI.
"""

from experiments.basemodel import DEMO_RECIPE, BaseRecipe, ensure_base
from experiments.data import DataConfig, ExperimentData, load_or_simulate, prepare_data
from experiments.forecasting import (
    BASELINES,
    SPECIES,
    BaselineResult,
    FitConfig,
    ForecastConfig,
    ForecastOutput,
    ForecastPlan,
    ForecastSet,
    GenerationBatch,
    LLMTimeGrammar,
    LLMTimeLogitsProcessor,
    LVFit,
    MethodMetrics,
    StepStoppingCriteria,
    TestSplitResults,
    evaluate_forecasts,
    evaluate_test_split,
    fit_lotka_volterra,
    forecast_series,
    horizon_errors,
    linear_extrapolation,
    perplexity,
    persistence,
    physics_fit,
    plot_forecast,
    plot_horizon_errors,
    results_table,
)
from experiments.models import (
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
from experiments.pipeline import (
    Plan,
    PlanError,
    PlanOverBudget,
    PlanProjection,
    PlanWorkspace,
    Results,
    StageProjection,
    StageSpec,
    dry_run,
    load_plan,
    project,
    run_plan,
    shipped_plans,
    write_report,
)
from experiments.training import (
    BudgetConfig,
    Checkpoint,
    ConfigMismatch,
    MetricsLog,
    TrainConfig,
    TrainerState,
    TrainResult,
    ValidationMetrics,
    latest_checkpoint,
    list_checkpoints,
    make_accelerator,
    read_metrics,
    train,
    train_step,
    validate,
)

__all__ = [
    # data
    "DataConfig", "ExperimentData", "load_or_simulate", "prepare_data",
    # models
    "QWEN_MODEL_ID", "TINY_MODEL", "LoadedModel", "build_random_model", "build_tiny_model", "default_tokenizer_source", "load_model",
    "load_model_and_tokenizer", "load_tokenizer", "save_tiny_model", "tiny_config",
    # training
    "BudgetConfig", "Checkpoint", "ConfigMismatch", "MetricsLog", "TrainConfig", "TrainResult", "TrainerState",
    "ValidationMetrics", "latest_checkpoint", "list_checkpoints", "make_accelerator", "read_metrics", "train",
    "train_step", "validate",
    # forecasting
    "BASELINES", "SPECIES", "BaselineResult", "FitConfig", "ForecastConfig", "ForecastOutput", "ForecastPlan",
    "ForecastSet", "GenerationBatch", "LLMTimeGrammar", "LLMTimeLogitsProcessor", "LVFit", "MethodMetrics",
    "StepStoppingCriteria", "TestSplitResults", "evaluate_forecasts", "evaluate_test_split", "fit_lotka_volterra",
    "forecast_series", "horizon_errors", "linear_extrapolation", "perplexity", "persistence", "physics_fit",
    "plot_forecast", "plot_horizon_errors", "results_table",
    # the pretrained demo base
    "DEMO_RECIPE", "BaseRecipe", "ensure_base",
    # pipeline
    "Plan", "PlanError", "PlanOverBudget", "PlanProjection", "PlanWorkspace", "Results", "StageProjection",
    "StageSpec", "dry_run", "load_plan", "project", "run_plan", "shipped_plans", "write_report",
]
