"""Forecasting the test split: LLMTIME-constrained generation (charged to the budget), the
non-LLM baselines, metrics, plots and the test-split evaluation that runs them all alike."""

from experiments.forecasting.crps import crps_ensemble, per_trajectory_crps
from experiments.forecasting.baselines import BASELINES, BaselineResult, linear_extrapolation, persistence, physics_fit
from experiments.forecasting.generate import (
    ForecastConfig,
    ForecastJob,
    ForecastOutput,
    GenerationBatch,
    forecast_series,
    run_in_order,
)
from experiments.forecasting.grammar import LLMTimeGrammar, LLMTimeLogitsProcessor, StepStoppingCriteria
from experiments.forecasting.metrics import (
    SPECIES,
    ForecastSet,
    MethodMetrics,
    evaluate_forecasts,
    horizon_errors,
    perplexity,
    results_table,
)
from experiments.forecasting.physics_fit import FitConfig, LVFit, fit_lotka_volterra
from experiments.forecasting.sampling import GumbelMaxSampler
from experiments.forecasting.plots import plot_forecast, plot_horizon_errors
from experiments.forecasting.held_out import ForecastPlan, TestSplitResults, evaluate_test_split, llm_forecasts
from experiments.forecasting.sharding import generation_runner, run_sharded

__all__ = [
    "BASELINES", "SPECIES", "BaselineResult", "FitConfig", "ForecastConfig", "ForecastJob", "ForecastOutput",
    "ForecastPlan", "ForecastSet", "GenerationBatch", "GumbelMaxSampler", "LLMTimeGrammar", "LLMTimeLogitsProcessor",
    "LVFit", "MethodMetrics", "StepStoppingCriteria", "TestSplitResults", "crps_ensemble", "evaluate_forecasts",
    "evaluate_test_split", "fit_lotka_volterra", "forecast_series", "generation_runner", "horizon_errors",
    "linear_extrapolation", "llm_forecasts", "per_trajectory_crps", "perplexity", "persistence", "physics_fit",
    "plot_forecast", "plot_horizon_errors", "results_table", "run_in_order", "run_sharded",
]
