"""Baselines no LLM forecaster should be compared without: persistence, linear extrapolation,
and a physics fit of the logistic Lotka-Volterra model.

Every baseline has one signature, :class:`Baseline`: ``(context (N, k, 2), context_time (k,),
horizon_time (m,)) -> BaselineResult`` whose ``forecast`` is ``(N, m, 2)`` in original units.
:data:`BASELINES` is the table of them. Results go through the same metric code as the LLM
(:meth:`BaselineResult.evaluate`, i.e. :func:`experiments.forecasting.metrics.evaluate_forecasts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from experiments.forecasting.metrics import ForecastSet, MethodMetrics, evaluate_forecasts
from experiments.forecasting.physics_fit import FitConfig, fit_lotka_volterra, integrate
from flopcount.count.baseline_formulas import integration_flops, linear_extrapolation_flops

LINEAR_WINDOW = 5  # context steps the linear extrapolation fits its line to


@dataclass
class BaselineResult:
    """Forecasts of one baseline and what producing them took.

    ``forecast`` ``(N, m, 2)``; ``repaired`` ``(N,)`` flags forecasts the method had to repair
    (clipping, a fallback); ``flops`` ``(N,)`` rough FLOPs per trajectory (primitive table of
    BRIEF.md); ``diagnostics`` holds per-trajectory arrays ``(N, ...)`` specific to the method.
    """

    method: str
    forecast: np.ndarray
    repaired: np.ndarray
    flops: np.ndarray
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def total_flops(self) -> int:
        return int(self.flops.sum())

    def forecast_set(self, truth: np.ndarray, ids: np.ndarray) -> ForecastSet:
        """Pair the forecasts with the truth ``(N, m, 2)`` of trajectories ``ids`` ``(N,)``."""
        return ForecastSet(truth=truth, forecast=self.forecast, ids=ids, repaired=self.repaired)

    def evaluate(self, truth: np.ndarray, ids: np.ndarray, **kwargs) -> MethodMetrics:
        """:func:`evaluate_forecasts` of these forecasts, with the rough FLOPs as an extra."""
        return evaluate_forecasts(self.method, self.forecast_set(truth, ids),
                                  extras={"rough_flops": self.total_flops}, **kwargs)


class Baseline(Protocol):
    def __call__(self, context: np.ndarray, context_time: np.ndarray,
                 horizon_time: np.ndarray) -> BaselineResult:
        """Forecast ``horizon_time`` ``(m,)`` of each of ``N`` trajectories from its context."""


def check_inputs(context, context_time, horizon_time) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a baseline's inputs; return them as float arrays."""
    context = np.asarray(context, dtype=np.float64)
    context_time = np.asarray(context_time, dtype=np.float64)
    horizon_time = np.asarray(horizon_time, dtype=np.float64)
    if context.ndim != 3 or context.shape[-1] != 2:
        raise ValueError(f"context must have shape (N, k, 2), got {context.shape}")
    if context_time.shape != context.shape[1:2]:
        raise ValueError(f"context_time must have shape ({context.shape[1]},) to match context, "
                         f"got {context_time.shape}")
    if horizon_time.ndim != 1 or horizon_time.size == 0:
        raise ValueError(f"horizon_time must be a non-empty (m,) array, got shape {horizon_time.shape}")
    if not np.isfinite(context).all():
        raise ValueError("context contains non-finite values")
    time = np.concatenate([context_time, horizon_time])
    if not np.all(np.diff(time) > 0):
        raise ValueError("context_time followed by horizon_time must be strictly increasing")
    return context, context_time, horizon_time


def persistence(context, context_time, horizon_time) -> BaselineResult:
    """Repeat each trajectory's last context value over the horizon (0 FLOPs: memory movement)."""
    context, context_time, horizon_time = check_inputs(context, context_time, horizon_time)
    n, m = len(context), len(horizon_time)
    forecast = np.repeat(context[:, -1:, :], m, axis=1)  # (N, m, 2)
    return BaselineResult("persistence", forecast, np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64))


def linear_extrapolation(context, context_time, horizon_time, *, window: int = LINEAR_WINDOW) -> BaselineResult:
    """Extend the least-squares line through the last ``window`` context steps of each species.

    Populations are positive, so negative extrapolations are clipped to 0; a clipped forecast is
    a repair and is flagged. ``diagnostics["clipped_steps"]`` ``(N,)`` counts clipped values.
    """
    context, context_time, horizon_time = check_inputs(context, context_time, horizon_time)
    if not 2 <= window <= context.shape[1]:
        raise ValueError(f"window must be between 2 and the {context.shape[1]} context steps, got {window}")
    t = context_time[-window:]  # (w,)
    y = context[:, -window:, :]  # (N, w, 2)
    dt = t - t.mean()  # (w,)
    y_mean = y.mean(axis=1)  # (N, 2)
    slope = np.einsum("w,nws->ns", dt, y - y_mean[:, None, :]) / (dt @ dt)  # (N, 2)
    line = y_mean[:, None, :] + slope[:, None, :] * (horizon_time - t.mean())[None, :, None]  # (N, m, 2)
    clipped = line < 0
    flops = np.full(len(context), linear_extrapolation_flops(window, len(horizon_time)), dtype=np.int64)
    return BaselineResult("linear_extrapolation", np.maximum(line, 0.0), clipped.any(axis=(1, 2)), flops,
                          {"clipped_steps": clipped.sum(axis=(1, 2))})


def physics_fit(context, context_time, horizon_time, *, config: FitConfig = FitConfig(),
                progress: bool = True) -> BaselineResult:
    """Fit the logistic Lotka-Volterra model to each context and integrate it over the horizon.

    A trajectory whose fit does not converge, or whose forecast integration fails, falls back to
    persistence and is flagged as repaired; ``diagnostics`` reports per trajectory ``fit_success``,
    ``cost``, ``residual_evaluations``, ``rhs_evaluations`` and the fitted ``log_parameters``
    ``(N, 7)`` (log of a, b, c, d, K, x0, y0).
    """
    context, context_time, horizon_time = check_inputs(context, context_time, horizon_time)
    n, k, m = len(context), len(context_time), len(horizon_time)
    time = np.concatenate([context_time, horizon_time])  # (k + m,)
    forecast = np.repeat(context[:, -1:, :], m, axis=1)  # (N, m, 2) persistence until replaced
    repaired = np.zeros(n, dtype=bool)
    flops = np.zeros(n, dtype=np.int64)
    diagnostics = {"fit_success": np.zeros(n, dtype=bool), "cost": np.zeros(n),
                   "residual_evaluations": np.zeros(n, dtype=np.int64),
                   "rhs_evaluations": np.zeros(n, dtype=np.int64), "log_parameters": np.zeros((n, 7))}
    for i in tqdm(range(n), desc="physics fit", unit="trajectory", disable=not progress):
        fit = fit_lotka_volterra(context[i], context_time, config)
        states, n_rhs = integrate(fit.params, fit.initial, time, rtol=config.rtol, atol=config.atol)  # (k+m, 2)
        usable = fit.success and np.isfinite(states).all()
        if usable:
            forecast[i] = states[k:]
        repaired[i] = not usable
        flops[i] = fit.flops + integration_flops(n_rhs)
        diagnostics["fit_success"][i] = fit.success
        diagnostics["cost"][i] = fit.cost
        diagnostics["residual_evaluations"][i] = fit.residual_evaluations
        diagnostics["rhs_evaluations"][i] = fit.rhs_evaluations + n_rhs
        diagnostics["log_parameters"][i] = fit.log_parameters
    return BaselineResult("physics_fit", forecast, repaired, flops, diagnostics)


BASELINES: dict[str, Baseline] = {
    "persistence": persistence,
    "linear_extrapolation": linear_extrapolation,
    "physics_fit": physics_fit,
}
