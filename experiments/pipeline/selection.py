"""How a stage picks its best run: by validation loss, or by what the user wants, forecasts.

A plan's ``[selection]`` table (:class:`SelectionPlan`). Lower validation loss is not always
better forecasts (here, longer fine-tuning kept lowering the loss while greedy forecasts got
worse), so a plan may select the runs of a ``sweep`` or ``context`` stage by the **validation
forecast error** instead:

- every run's final adapter forecasts the first ``trajectories`` *validation* trajectories
  (never the test split), ``prompt_steps`` in and ``forecast_steps`` out as the plan's
  ``[data]`` says, greedy (``samples = 0``) or the per-step median of ``samples`` sampled
  continuations, under the LLMTIME grammar;
- per species, the median over trajectories of the ``metric`` (MSE or MAE over the forecast
  steps, original units), divided by persistence's on the same trajectories;
- the run's error is the mean of those two ratios: 1 is persistence's skill, lower is better,
  and neither species outweighs the other because of its units.

The generation is charged as the ledger experiment ``<run>/selection`` of each run (its own
LoRA setting, so its own cost model), planned in the dry run like every forecast (:func:`~experiments.pipeline.planner.selection_flops`).
With ``criterion = "forecast"`` a ``context`` stage needs no loss scoring at a common context:
forecast errors compare across contexts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from experiments.forecasting.forecast_config import ForecastConfig
from lvdata import LLMTimeFormat

CRITERIA = ("loss", "forecast")
METRICS = ("mse", "mae")
SPECIES = ("prey", "predator")


@dataclass(frozen=True)
class SelectionPlan:
    """A plan's ``[selection]`` table: ``criterion`` ``"loss"`` (lowest validation loss, the
    default) or ``"forecast"`` (lowest validation forecast error, see the module docstring),
    with ``trajectories`` validation trajectories, ``metric`` ``"mse"`` or ``"mae"``, ``samples``
    (0: greedy), ``batch_size`` prompts per ``generate`` call and ``max_int_digits``."""

    criterion: str = "loss"
    trajectories: int = 32
    metric: str = "mse"
    samples: int = 0
    batch_size: int = 32
    max_int_digits: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        for name, low in (("trajectories", 1), ("samples", 0), ("batch_size", 1), ("max_int_digits", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    @property
    def by_forecast(self) -> bool:
        return self.criterion == "forecast"

    def scores(self, stage_kind: str) -> bool:
        """Whether a stage of ``stage_kind`` forecasts its runs to select one (sweeps and
        contexts, where there is a choice)."""
        return self.by_forecast and stage_kind in ("sweep", "context")

    @staticmethod
    def experiment(run_experiment: str) -> str:
        """The ledger experiment a run's validation forecast is charged to."""
        return f"{run_experiment}/selection"

    def key(self, stage_kind: str) -> str:
        """The field of a run's ``results.json`` entry a stage of ``stage_kind`` selects by (lowest
        wins): the validation forecast error, the loss at a common context (context stages
        selecting by loss) or the run's own last validation loss."""
        if self.scores(stage_kind):
            return "selection_forecast_error"
        return "selection_val_loss" if stage_kind == "context" else "val_loss"

    def forecast_config(self, k: int, m: int, fmt: LLMTimeFormat) -> ForecastConfig:
        """The one ``generate`` pass that scores a run: the runner runs it, the planner prices it."""
        sampled = dict(do_sample=True, samples=self.samples) if self.samples else {}
        return ForecastConfig(k=k, m=m, batch_size=self.batch_size, seed=self.seed,
                              max_int_digits=self.max_int_digits, fmt=fmt, **sampled)

    def validation_ids(self, validation_ids: np.ndarray) -> np.ndarray:
        """The validation trajectories every run forecasts: the first ``trajectories``."""
        return np.asarray(validation_ids)[: self.trajectories]

    def describe(self) -> str:
        decoding = f"median of {self.samples} samples" if self.samples else "greedy"
        return (f"lowest validation forecast error ({decoding}, median {self.metric.upper()} per species ÷ "
                f"persistence's, mean of the two species) on the first {self.trajectories} validation trajectories")


@dataclass(frozen=True)
class ForecastScore:
    """One run's validation forecast error: ``error`` the mean over species of ``ratio``;
    ``median`` and ``persistence`` the per-species medians (original units²  for MSE);
    ``malformed`` trajectories without a value at every step (scored as persistence's worst)."""

    error: float
    ratio: dict[str, float]
    median: dict[str, float]
    persistence: dict[str, float]
    malformed: int

    def to_dict(self) -> dict[str, object]:
        return {"error": self.error, "ratio": self.ratio, "median": self.median, "persistence": self.persistence,
                "malformed": self.malformed}


def forecast_score(forecast: np.ndarray, truth: np.ndarray, last_observed: np.ndarray, metric: str) -> ForecastScore:
    """Score ``forecast (N, m, 2)`` against ``truth (N, m, 2)``, with persistence (``last_observed
    (N, 2)`` repeated) as the yardstick. A trajectory with a NaN step (no valid value) gets, for
    that species, the worst of the persistence errors and its own valid steps: it never helps."""
    def error(values: np.ndarray) -> np.ndarray:  # (N, m, 2) -> (N, 2)
        difference = values - truth
        return np.nanmean(difference**2 if metric == "mse" else np.abs(difference), axis=1)

    persistence = error(np.repeat(last_observed[:, None], truth.shape[1], axis=1))  # (N, 2)
    broken = ~np.isfinite(forecast).all(axis=1)  # (N, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a trajectory with no valid step: NaN, handled below
        own = error(forecast)
    own = np.where(broken, np.fmax(np.nan_to_num(own, nan=-np.inf), persistence.max(axis=0)), own)
    median, reference = np.median(own, axis=0), np.median(persistence, axis=0)  # (2,)
    ratio = median / np.maximum(reference, 1e-12)
    return ForecastScore(float(ratio.mean()), dict(zip(SPECIES, ratio.tolist())), dict(zip(SPECIES, median.tolist())),
                         dict(zip(SPECIES, reference.tolist())), int(broken.any(axis=1).sum()))


__all__ = ["CRITERIA", "METRICS", "ForecastScore", "SelectionPlan", "forecast_score"]
