"""Forecast the test split with the LLM and every baseline, measure them alike, write the results.

:func:`evaluate_test_split` runs each LLM forecast configuration (greedy and/or sampled,
charged to the budget) and each baseline on the *same* trajectories, context and horizon,
sends every one through the same :func:`~experiments.forecasting.metrics.evaluate_forecasts`, and writes
into ``out_dir``:

* ``results.json``: every method's metrics with its malformed and repaired fractions, the
  validation slot (the caller's :class:`~experiments.forecasting.metrics.ValidationMetrics`, or null),
  the test ids, ``k``, ``m``, and the generation FLOPs charged;
* ``results.md``: the comparison table;
* ``forecasts.npz``: the truth and every method's forecasts (and sample bands), by id;
* ``forecast_<id>.png``: a few trajectories (972 first when it is in the test split) against
  the truth, context shaded, with the sampled LLM's band; ``horizon_errors.png``: mean
  absolute error against steps ahead for every method.

Nothing is overwritten unless asked, and that is checked before any FLOP is spent.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.forecasting.baselines import BASELINES, BaselineResult
from experiments.forecasting.generate import BatchRunner, ForecastConfig, ForecastOutput, forecast_series
from experiments.forecasting.metrics import MethodMetrics, ValidationMetrics, evaluate_forecasts, results_document, results_table
from experiments.forecasting.plots import plot_forecast, plot_horizon_errors
from flopcount import Budget
from lvdata import DEFAULT_FORMAT, LLMTimeFormat

LLM = "llm"
PINNED_TRAJECTORY = 972  # the reference analysis's example trajectory, plotted whenever it is tested
RESULT_FILES = ("results.json", "results.md", "forecasts.npz", "horizon_errors.png")


@dataclass
class TestSplitResults:
    """What :func:`evaluate_test_split` measured and wrote (``ids``: trajectories, in order)."""

    ids: np.ndarray
    metrics: list[MethodMetrics]
    llm: dict[str, ForecastOutput] = field(default_factory=dict)
    baselines: dict[str, BaselineResult] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class ForecastPlan:
    """How a stage forecasts the test split (a plan's ``[forecast]`` table): ``series``
    trajectories (None: all), greedy and/or ``samples`` sampled continuations at
    ``temperature`` / ``top_p``, ``batch_size`` prompts at a time, all with LLMTIME-constrained
    decoding; ``unconstrained`` adds a greedy forecast without the grammar, to measure how
    often the model breaks the format on its own. ``plot_series`` trajectories are plotted.

    :meth:`passes` is the one list of ``generate`` passes a stage makes: the runner runs it
    and the planner prices it.
    """

    series: int | None = None
    greedy: bool = True
    unconstrained: bool = True
    samples: int = 5
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    max_int_digits: int = 2
    seed: int = 0
    plot_series: int = 3

    def __post_init__(self) -> None:
        if not (self.greedy or self.samples):
            raise ValueError("set greedy = true or samples >= 1 (or both)")
        if self.series is not None and (isinstance(self.series, bool) or self.series < 1):
            raise ValueError(f"series must be >= 1 (or unset: every test trajectory), got {self.series!r}")
        self.passes(1, 1)  # validates the generation settings

    def passes(self, k: int, m: int, fmt: LLMTimeFormat = DEFAULT_FORMAT) -> tuple[ForecastConfig, ...]:
        """The ``ForecastConfig`` of each pass, for ``k`` context and ``m`` forecast steps in
        ``fmt``: greedy, unconstrained greedy, sampled (as enabled)."""
        common = dict(k=k, m=m, batch_size=self.batch_size, seed=self.seed, max_int_digits=self.max_int_digits,
                      fmt=fmt)
        passes = [ForecastConfig(**common)] if self.greedy else []
        if self.unconstrained:
            passes.append(ForecastConfig(**common, constrained=False))
        if self.samples:
            passes.append(ForecastConfig(**common, do_sample=True, samples=self.samples,
                                         temperature=self.temperature, top_p=self.top_p))
        return tuple(passes)

    def forecast_ids(self, test_ids: np.ndarray) -> np.ndarray:
        """The test trajectories forecast: all, or the first ``series``."""
        ids = np.asarray(test_ids)
        return ids[: self.series] if self.series else ids


def evaluate_test_split(
    model, tokenizer, data, config: ForecastConfig | Sequence[ForecastConfig], budget: Budget | None,
    out_dir: str | Path, methods: Sequence[str] = (LLM, *BASELINES), *, ids: Sequence[int] | None = None,
    step: int = 0, validation: ValidationMetrics | None = None, n_plots: int = 3, n_bootstrap: int = 1000,
    progress: bool = True, overwrite: bool = False, runner: BatchRunner | None = None, model_label: str = "",
) -> TestSplitResults:
    """Forecast the test split of ``data`` (an ``experiments.data.ExperimentData``) with every
    method and write the results (see the module docstring).

    ``config``: one or several LLM forecast configurations sharing ``k`` and ``m`` (the
    baselines use the same ones); their ``fmt`` is set to ``data.fmt``, the format the
    prompts are written in. ``methods``: ``"llm"`` (every config; needs ``model`` and
    ``tokenizer``) and baseline names of :data:`experiments.forecasting.baselines.BASELINES`. ``ids``: a
    subset of the test split (default: all of it). ``budget`` / ``step``: where generation
    is charged (see :func:`~experiments.forecasting.generate.forecast_series`); baselines are not charged
    (their rough FLOPs are reported as an extra). ``runner``: who makes the ``generate`` calls
    (see :func:`~experiments.forecasting.generate.forecast_series`). ``model_label``: what the model
    is (e.g. "untrained base model"), named in the figures' titles.
    """
    configs = [config] if isinstance(config, ForecastConfig) else list(config)
    configs = [dataclasses.replace(c, fmt=data.fmt) for c in configs]
    k, m = _common_horizon(configs)
    unknown = sorted(set(methods) - {LLM, *BASELINES})
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {[LLM, *BASELINES]}")
    ids = _test_ids(data, ids)
    if k + m > data.trajectories.shape[1]:
        raise ValueError(f"k={k} plus m={m} exceeds the {data.trajectories.shape[1]} steps per trajectory")
    out_dir = Path(out_dir)
    plot_ids = _plot_ids(ids, n_plots)
    figures = ["horizon_errors", *(f"forecast_{i}" for i in plot_ids)]
    _refuse_to_overwrite(out_dir, [*RESULT_FILES, *(f"{name}.pdf" for name in figures),
                                   *(f"forecast_{i}.png" for i in plot_ids)], overwrite)

    truth = data.trajectories[ids, k:k + m].astype(np.float64)  # (N, m, 2)
    results = TestSplitResults(ids=ids, metrics=[])
    if LLM in methods:
        results.llm = llm_forecasts(model, tokenizer, data, configs, budget, ids, step, progress=progress,
                                    runner=runner)
        results.metrics += [evaluate_forecasts(name, output.forecast_set(truth, ids), n_bootstrap=n_bootstrap,
                                               extras=_llm_extras(output)) for name, output in results.llm.items()]
    context, time = data.trajectories[ids, :k], data.time
    for name in (method for method in BASELINES if method in methods):
        baseline = BASELINES[name]
        quiet = {"progress": progress} if "progress" in inspect.signature(baseline).parameters else {}
        result = baseline(context, time[:k], time[k:k + m], **quiet)
        results.baselines[name] = result
        results.metrics.append(result.evaluate(truth, ids, n_bootstrap=n_bootstrap))

    out_dir.mkdir(parents=True, exist_ok=True)
    trajectories = f"{len(ids)} test trajector{'y' if len(ids) == 1 else 'ies'}"
    results.files = [
        _write_json(out_dir / "results.json", results, validation, k, m),
        _write_text(out_dir / "results.md", results_table(results.metrics) + "\n"),
        _write_forecasts(out_dir / "forecasts.npz", results, truth),
        plot_horizon_errors(out_dir / "horizon_errors.png", _absolute_errors(results, truth),
                            title=f"Mean absolute error against horizon ({trajectories})"
                                  f"{_of(model_label)}"),
        *_plot_trajectories(out_dir, results, data, plot_ids, k, m, model_label),
    ]
    return results


def llm_forecasts(model, tokenizer, data, configs: Sequence[ForecastConfig], budget: Budget | None,
                  ids: np.ndarray, step: int = 0, *, progress: bool = True,
                  runner: BatchRunner | None = None) -> dict[str, ForecastOutput]:
    """The LLM's forecast of the test trajectories ``ids`` for each config (by method name),
    ``k`` context steps and ``m`` forecast steps, in order; generation is charged to ``budget``."""
    k, m = _common_horizon([dataclasses.replace(c, fmt=data.fmt) for c in configs])
    examples = [data.forecast_example(i, k, m) for i in np.asarray(ids).tolist()]
    return {config.method_name: forecast_series(model, tokenizer, examples, dataclasses.replace(config, fmt=data.fmt),
                                                budget, step, progress=progress, runner=runner)
            for config in configs}


def _absolute_errors(results: TestSplitResults, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per method, ``|forecast - truth|`` ``(N, m, 2)`` of every trajectory (NaN where invalid)."""
    forecasts = {name: output.values for name, output in results.llm.items()}
    forecasts.update({name: result.forecast for name, result in results.baselines.items()})
    return {name: np.abs(forecast - truth) for name, forecast in forecasts.items()}


def _common_horizon(configs: list[ForecastConfig]) -> tuple[int, int]:
    if not configs:
        raise ValueError("give at least one ForecastConfig (it sets k and m for every method)")
    horizons = {(c.k, c.m) for c in configs}
    if len(horizons) != 1:
        raise ValueError(f"the forecast configs disagree on (k, m): {sorted(horizons)}; all methods share one")
    names = [c.method_name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"two forecast configs have the same method name: {names}")
    return horizons.pop()


def _test_ids(data, ids: Sequence[int] | None) -> np.ndarray:
    test = np.asarray(data.split.test, dtype=np.int64)
    if ids is None:
        chosen = test
    else:
        chosen = np.asarray(ids, dtype=np.int64)
        outside = np.setdiff1d(chosen, test)
        if outside.size:
            raise ValueError(f"trajectories {outside.tolist()} are not in the test split")
    if chosen.size == 0:
        raise ValueError("the test split is empty: nothing to forecast")
    return chosen


def _plot_ids(ids: np.ndarray, n_plots: int) -> list[int]:
    """Trajectory 972 first when it is tested, then the first test ids, ``n_plots`` in all."""
    ordered = ([PINNED_TRAJECTORY] if PINNED_TRAJECTORY in ids else []) + [i for i in ids.tolist()
                                                                           if i != PINNED_TRAJECTORY]
    return ordered[:n_plots]


def _refuse_to_overwrite(out_dir: Path, names: list[str], overwrite: bool) -> None:
    existing = [str(out_dir / name) for name in names if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"not overwriting {', '.join(existing)} (pass overwrite=True to replace them)")


def _llm_extras(output: ForecastOutput) -> dict[str, float]:
    diagnostics = [record for row in output.diagnostics for record in row]
    extras: dict[str, float] = {
        "generation_flops": output.flops,
        "samples_per_trajectory": output.config.samples,
        "malformed_sample_fraction": output.malformed_sample_fraction,
        "truncated_samples": sum(record.truncated_last_step for record in diagnostics),
        "non_numeric_chars": sum(record.non_numeric_chars for record in diagnostics),
        "generated_tokens": int(output.generated_tokens.sum()),
    }
    if output.lower is not None:  # the sample band's quantiles
        extras.update(band_low=output.config.band[0], band_high=output.config.band[1])
    return extras


def _write_json(path: Path, results: TestSplitResults, validation: ValidationMetrics | None, k: int, m: int) -> Path:
    document = results_document(results.metrics, validation)
    document.update(
        test_ids=results.ids.tolist(), k=k, m=m,
        generation_flops=sum(output.flops for output in results.llm.values()),
        forecast_configs={name: {**vars(output.config), "fmt": vars(output.config.fmt)}
                          for name, output in results.llm.items()},
    )
    return _write_text(path, json.dumps(document, indent=1, allow_nan=False))


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_forecasts(path: Path, results: TestSplitResults, truth: np.ndarray) -> Path:
    arrays = {"ids": results.ids, "truth": truth}
    for name, output in results.llm.items():
        arrays[f"{name}/forecast"] = output.values
        arrays[f"{name}/samples"] = output.samples
        if output.lower is not None:
            arrays[f"{name}/lower"], arrays[f"{name}/upper"] = output.lower, output.upper
    for name, result in results.baselines.items():
        arrays[f"{name}/forecast"] = result.forecast
    np.savez_compressed(path, **arrays)
    return path


def _of(model_label: str) -> str:
    return f"; LLM: {model_label}" if model_label else ""


def _plot_trajectories(out_dir: Path, results: TestSplitResults, data, plot_ids: list[int], k: int,
                       m: int, model_label: str = "") -> list[Path]:
    """One forecast-against-truth figure per trajectory of ``plot_ids``."""
    row_of = {trajectory: row for row, trajectory in enumerate(results.ids.tolist())}
    sampled = next((output for output in results.llm.values() if output.lower is not None), None)
    paths = []
    for trajectory in plot_ids:
        row = row_of[trajectory]
        forecasts = {name: output.values[row] for name, output in results.llm.items()}
        forecasts.update({name: result.forecast[row] for name, result in results.baselines.items()})
        band = None if sampled is None else (sampled.lower[row], sampled.upper[row])
        band_label = "" if sampled is None else (
            f"{sampled.config.method_name} {sampled.config.band[0]:.0%}-{sampled.config.band[1]:.0%}")
        paths.append(plot_forecast(
            out_dir / f"forecast_{trajectory}.png", data.time[:k + m], data.trajectories[trajectory, :k + m],
            forecasts, k, band=band, band_label=band_label, title=f"Test trajectory {trajectory}{_of(model_label)}"))
    return paths
