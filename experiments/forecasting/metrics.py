"""Forecast accuracy in original units: per trajectory, over a split, and per step ahead.

Conventions
-----------
* Arrays are ``(N, m, 2)``: ``N`` trajectories, ``m`` forecast steps, species last in the
  order of :data:`SPECIES` (``[..., 0]`` prey, ``[..., 1]`` predator), in the dataset's
  original units (never LLMTIME-scaled).
* A forecast step that could not be produced (an unparseable LLM step, say) is a row with a
  non-finite value. It is *malformed*: counted, reported, and left out of every metric. Metrics
  are computed on the valid steps only and the counts say how many that was; nothing is filled.
* A forecast that needed a *repair* (a clipped negative value, a fallback method, a fixed-up
  LLM output) is flagged by the method; the fraction is reported next to the metrics.
* R² of one trajectory is ``1 - SSE/SST`` over its valid forecast steps of one species. When the
  truth is flat there (variance <= ``FLAT_RTOL`` x mean square, or fewer than two valid steps)
  R² is undefined: NaN, counted in ``n_excluded`` and left out of mean and median. The pooled
  R² treats all valid steps of the split as one series.
* CRPS (:mod:`experiments.forecasting.crps`) scores a sampled forecast's ensemble
  ``samples`` ``(N, S, m, 2)``: per trajectory, the mean over its scorable steps; only methods
  with an ensemble of two or more members have it (a point forecast's CRPS is its MAE).
* Split summaries are over trajectories: mean, median, and a percentile bootstrap 95 %
  interval of the mean (trajectories resampled with replacement, fixed seed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from experiments.forecasting.crps import per_trajectory_crps
from experiments.training.validation import ValidationMetrics, perplexity

SPECIES = ("prey", "predator")
METRICS = ("mse", "mae", "r2")
FLAT_RTOL = 1e-12


def _as_forecast_array(name: str, values, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 3 or array.shape[-1] != len(SPECIES):
        raise ValueError(f"{name} must have shape (N, m, {len(SPECIES)}), got {array.shape}")
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape} but truth has shape {shape}")
    return array


@dataclass
class ForecastSet:
    """Forecasts of one method on one split, next to the truth.

    ``truth`` and ``forecast`` are ``(N, m, 2)`` in original units; non-finite forecast rows are
    malformed steps. ``ids`` are the trajectories' dataset indices ``(N,)``. ``lower``/``upper``
    optionally bound a sample band ``(N, m, 2)``; ``samples`` ``(N, S, m, 2)`` is the ensemble
    the CRPS scores (``None``: a point forecast). ``repaired`` ``(N,)`` flags forecasts the
    method had to repair (``None``: the method never repairs).
    """

    truth: np.ndarray
    forecast: np.ndarray
    ids: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    repaired: np.ndarray | None = None
    samples: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.truth = _as_forecast_array("truth", self.truth)
        if not np.isfinite(self.truth).all():
            raise ValueError("truth contains non-finite values; only forecasts may be malformed")
        shape = self.truth.shape
        self.forecast = _as_forecast_array("forecast", self.forecast, shape)
        self.ids = np.asarray(self.ids)
        if self.ids.shape != shape[:1]:
            raise ValueError(f"ids must have shape ({shape[0]},), got {self.ids.shape}")
        if (self.lower is None) != (self.upper is None):
            raise ValueError("give both lower and upper for a band, or neither")
        if self.lower is not None:
            self.lower = _as_forecast_array("lower", self.lower, shape)
            self.upper = _as_forecast_array("upper", self.upper, shape)
        if self.samples is not None:
            self.samples = np.asarray(self.samples, dtype=np.float64)
            if self.samples.ndim != 4 or self.samples.shape[:1] + self.samples.shape[2:] != shape:
                raise ValueError(f"samples must have shape ({shape[0]}, S, {shape[1]}, {shape[2]}), "
                                 f"got {self.samples.shape}")
        if self.repaired is None:
            self.repaired = np.zeros(shape[0], dtype=bool)
        self.repaired = np.asarray(self.repaired, dtype=bool)
        if self.repaired.shape != shape[:1]:
            raise ValueError(f"repaired must have shape ({shape[0]},), got {self.repaired.shape}")

    @property
    def valid_steps(self) -> np.ndarray:
        """``(N, m)`` bool: the step's forecast is finite for every species."""
        return np.isfinite(self.forecast).all(axis=-1)


def per_trajectory_metrics(truth: np.ndarray, forecast: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """MSE, MAE and R² of every trajectory, per species, over its valid forecast steps.

    Returns ``{species: {"mse": (N,), "mae": (N,), "r2": (N,)}}``; a trajectory without valid
    steps has NaN everywhere, and R² is NaN where the truth is flat (see module docstring).
    """
    truth = _as_forecast_array("truth", truth)
    forecast = _as_forecast_array("forecast", forecast, truth.shape)
    valid = np.isfinite(forecast).all(axis=-1)[..., None]  # (N, m, 1)
    n_valid = valid.sum(axis=1)  # (N, 1)
    error = np.where(valid, forecast - truth, 0.0)  # (N, m, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        sse = (error**2).sum(axis=1)  # (N, 2)
        mse = sse / n_valid
        mae = np.abs(error).sum(axis=1) / n_valid
        truth_mean = np.where(valid, truth, 0.0).sum(axis=1) / n_valid  # (N, 2)
        sst = np.where(valid, (truth - truth_mean[:, None, :]) ** 2, 0.0).sum(axis=1)
        mean_square = np.where(valid, truth**2, 0.0).sum(axis=1)
        flat = (n_valid < 2) | (sst <= FLAT_RTOL * mean_square)
        r2 = np.where(flat, np.nan, 1.0 - sse / np.where(flat, 1.0, sst))
    columns = {"mse": mse, "mae": mae, "r2": r2}
    return {name: {m: columns[m][:, s] for m in METRICS} for s, name in enumerate(SPECIES)}


def pooled_r2(truth: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """``(2,)`` R² per species over all valid steps of the split taken as one series."""
    truth = _as_forecast_array("truth", truth)
    forecast = _as_forecast_array("forecast", forecast, truth.shape)
    valid = np.isfinite(forecast).all(axis=-1)  # (N, m)
    t, f = truth[valid], forecast[valid]  # (n_valid, 2)
    if len(t) < 2:
        return np.full(len(SPECIES), np.nan)
    sst = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    sse = ((f - t) ** 2).sum(axis=0)
    flat = sst <= FLAT_RTOL * (t**2).sum(axis=0)
    return np.where(flat, np.nan, 1.0 - sse / np.where(flat, 1.0, sst))


def horizon_errors(truth: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """``(m, 2)`` mean absolute error at each step ahead, over trajectories with that step valid.

    A step that no trajectory produced validly is NaN.
    """
    truth = _as_forecast_array("truth", truth)
    forecast = _as_forecast_array("forecast", forecast, truth.shape)
    valid = np.isfinite(forecast).all(axis=-1)[..., None]  # (N, m, 1)
    abs_error = np.where(valid, np.abs(forecast - truth), 0.0)  # (N, m, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return abs_error.sum(axis=0) / valid.sum(axis=0)


@dataclass(frozen=True)
class Summary:
    """One metric over the trajectories of a split (NaN values excluded and counted)."""

    mean: float
    median: float
    ci_low: float
    ci_high: float
    n_used: int
    n_excluded: int


def bootstrap_summary(values: np.ndarray, *, n_bootstrap: int = 1000, seed: int = 0,
              confidence: float = 0.95) -> Summary:
    """Mean, median and percentile-bootstrap interval of the mean of the finite ``values``."""
    values = np.asarray(values, dtype=np.float64)
    used = values[np.isfinite(values)]
    n_excluded = int(values.size - used.size)
    if used.size == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, 0, n_excluded)
    low = high = math.nan
    if used.size >= 2 and n_bootstrap > 0:
        interval = stats.bootstrap(
            (used,), np.mean, n_resamples=n_bootstrap, confidence_level=confidence,
            method="percentile", vectorized=True, rng=np.random.default_rng(seed),
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return Summary(float(used.mean()), float(np.median(used)), low, high, int(used.size), n_excluded)


@dataclass
class SpeciesMetrics:
    """Split summaries and per-trajectory values of one species (original units)."""

    mse: Summary
    mae: Summary
    r2: Summary
    pooled_r2: float
    per_trajectory: dict[str, np.ndarray]
    band_coverage: float | None = None
    crps: Summary | None = None


@dataclass
class MethodMetrics:
    """Everything :func:`evaluate_forecasts` measured for one method on one split."""

    method: str
    ids: np.ndarray
    n_trajectories: int
    horizon: int
    species: dict[str, SpeciesMetrics]
    horizon_mae: np.ndarray
    n_valid_steps: np.ndarray
    malformed_fraction: float
    malformed_step_fraction: float
    repaired_fraction: float
    extras: dict[str, float] = field(default_factory=dict)

    def to_dict(self, *, per_trajectory: bool = True) -> dict:
        """A JSON-ready dict (NaN and infinities become ``None``)."""
        species = {}
        for name, metrics in self.species.items():
            entry = {m: vars(getattr(metrics, m)) for m in METRICS}
            entry.update(pooled_r2=metrics.pooled_r2, band_coverage=metrics.band_coverage,
                         crps=None if metrics.crps is None else vars(metrics.crps))
            if per_trajectory:
                entry["per_trajectory"] = metrics.per_trajectory
            species[name] = entry
        document = {
            "method": self.method, "n_trajectories": self.n_trajectories, "horizon": self.horizon,
            "malformed_fraction": self.malformed_fraction,
            "malformed_step_fraction": self.malformed_step_fraction,
            "repaired_fraction": self.repaired_fraction,
            "species": species, "horizon_mae": {s: self.horizon_mae[:, i] for i, s in enumerate(SPECIES)},
            "extras": self.extras,
        }
        if per_trajectory:
            document.update(ids=self.ids, n_valid_steps=self.n_valid_steps)
        return json_ready(document)


def _band_coverage(forecast_set: ForecastSet) -> np.ndarray | None:
    """``(2,)`` fraction of valid truth values inside ``[lower, upper]``; None without a band."""
    if forecast_set.lower is None:
        return None
    valid = forecast_set.valid_steps
    inside = (forecast_set.truth >= forecast_set.lower) & (forecast_set.truth <= forecast_set.upper)
    n_valid = valid.sum()
    return inside[valid].mean(axis=0) if n_valid else np.full(len(SPECIES), np.nan)


def evaluate_forecasts(
    method_name: str, forecast_set: ForecastSet, *, n_bootstrap: int = 1000, seed: int = 0,
    extras: dict[str, float] | None = None,
) -> MethodMetrics:
    """Measure one method's forecasts: the one metric path every baseline and model goes through.

    ``extras`` carries method-level numbers into the report (for example rough FLOPs).
    """
    truth, forecast = forecast_set.truth, forecast_set.forecast
    per_trajectory = per_trajectory_metrics(truth, forecast)
    pooled = pooled_r2(truth, forecast)
    coverage = _band_coverage(forecast_set)
    ensemble = forecast_set.samples is not None and forecast_set.samples.shape[1] > 1
    crps = per_trajectory_crps(forecast_set.samples, truth) if ensemble else None  # (N, 2)
    species = {}
    for s, name in enumerate(SPECIES):
        values = per_trajectory[name]
        summaries = {m: bootstrap_summary(values[m], n_bootstrap=n_bootstrap, seed=seed) for m in METRICS}
        if crps is not None:
            values = {**values, "crps": crps[:, s]}
        species[name] = SpeciesMetrics(
            **summaries, pooled_r2=float(pooled[s]), per_trajectory=values,
            band_coverage=None if coverage is None else float(coverage[s]),
            crps=None if crps is None else bootstrap_summary(crps[:, s], n_bootstrap=n_bootstrap, seed=seed),
        )
    valid = forecast_set.valid_steps  # (N, m)
    n_trajectories, horizon = valid.shape
    return MethodMetrics(
        method=method_name, ids=forecast_set.ids, n_trajectories=n_trajectories, horizon=horizon,
        species=species, horizon_mae=horizon_errors(truth, forecast), n_valid_steps=valid.sum(axis=1),
        malformed_fraction=float((~valid).any(axis=1).mean()) if n_trajectories else math.nan,
        malformed_step_fraction=float((~valid).mean()) if valid.size else math.nan,
        repaired_fraction=float(forecast_set.repaired.mean()) if n_trajectories else math.nan,
        extras=dict(extras or {}),
    )


def _format(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _format_summary(summary: Summary) -> str:
    interval = ""
    if math.isfinite(summary.ci_low):
        interval = f" [{_format(summary.ci_low)}, {_format(summary.ci_high)}]"
    excluded = f" ({summary.n_excluded} excl.)" if summary.n_excluded else ""
    return f"{_format(summary.mean)}{interval}{excluded}"


def results_table(methods: list[MethodMetrics]) -> str:
    """Markdown table comparing methods, one row per method and species.

    Cells read ``mean [95 % bootstrap interval]``; medians have their own columns.
    """
    header = ("method", "species", "MSE mean [95% CI]", "MSE median", "MAE mean [95% CI]", "MAE median",
              "R² mean [95% CI]", "R² median", "pooled R²", "N", "malformed", "repaired")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        for name, sp in method.species.items():
            cells = (method.method, name, _format_summary(sp.mse), _format(sp.mse.median),
                     _format_summary(sp.mae), _format(sp.mae.median), _format_summary(sp.r2),
                     _format(sp.r2.median), _format(sp.pooled_r2), str(method.n_trajectories),
                     f"{method.malformed_fraction:.1%}", f"{method.repaired_fraction:.1%}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_document(methods: list[MethodMetrics], validation: ValidationMetrics | None = None) -> dict:
    """The results file's content: every method's metrics and the validation loss, JSON-ready."""
    return json_ready({
        "species": SPECIES,
        "methods": [m.to_dict() for m in methods],
        "validation": None if validation is None else validation.to_dict(),
    })


def save_results(path: str | Path, methods: list[MethodMetrics], *, validation: ValidationMetrics | None = None,
                 overwrite: bool = False) -> Path:
    """Write :func:`results_document` as JSON; refuses to replace an existing file unless asked."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"results file {path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results_document(methods, validation), indent=1, allow_nan=False))
    return path


def json_ready(value):
    """Recursively turn numpy values into Python ones, NaN and infinities into ``None`` and
    paths into strings, so ``json.dump(..., allow_nan=False)`` accepts the result."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value
