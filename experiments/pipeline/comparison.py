"""The table that opens ``report.md``: every forecaster of the test split side by side, and the
spotlight on the seed report's trajectory 972.

Read from the ``results.json`` records of the forecast stages only: each ``baseline`` stage (the
untrained model) and ``evaluate`` stage (a fine-tuned adapter) keeps, in ``methods``, one
:meth:`~experiments.forecasting.metrics.MethodMetrics.to_dict` entry per method, LLM decodings
and the non-LLM baselines alike, all on the same trajectories. Nothing is recomputed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from experiments.forecasting.baselines import BASELINES
from experiments.forecasting.held_out import PINNED_TRAJECTORY
from experiments.forecasting.metrics import SPECIES

METRIC_LABELS = {"mse": "MSE", "mae": "MAE", "r2": "R²"}
REFERENCE = "persistence"  # skill is measured against it
FORECAST_KINDS = {"baseline": "untrained", "evaluate": "fine-tuned"}
SEED_REPORT_MSE = {  # the seed report's MSE of its sample 972, per species (original units)
    "untrained": {"prey": 0.1770, "predator": 0.2337},
    "fine-tuned": {"prey": 0.0170, "predator": 0.0125},
}


@dataclass(frozen=True)
class ComparisonRow:
    """One forecaster in the table: its ``label``, the ``stage`` that scored it, its ``methods``
    entry (``metrics``) and the ``reference`` entry (persistence) of that same stage."""

    label: str
    stage: str
    metrics: dict[str, Any]
    reference: dict[str, Any] | None

    def skill(self, species: str) -> float | None:
        """``1 - median MSE / median MSE of persistence`` (None without both)."""
        if self.reference is None:
            return None
        mse = self.metrics["species"][species]["mse"]["median"]
        reference = self.reference["species"][species]["mse"]["median"]
        if mse is None or not reference:
            return None
        return 1.0 - mse / reference


def llm_label(method: str) -> str:
    """``llm-greedy`` -> ``greedy``; ``llm-sampled-5`` -> ``sampled median (5 samples)``; an
    ``-unconstrained`` suffix -> ``, no grammar``."""
    name, free = method.removesuffix("-unconstrained"), method.endswith("-unconstrained")
    if name.startswith("llm-sampled-"):
        label = f"sampled median ({name.removeprefix('llm-sampled-')} samples)"
    else:
        label = name.removeprefix("llm-")
    return label + (", no grammar" if free else "")


def forecast_stages(stages: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(name, model, record)`` of every forecast stage that has scored methods, in plan order;
    ``model`` is ``untrained`` or ``fine-tuned`` (with the stage name when there are several)."""
    found = [(name, FORECAST_KINDS[record["kind"]], record) for name, record in stages.items()
             if record.get("kind") in FORECAST_KINDS and record.get("methods")]
    counts = {model: sum(1 for _, m, _ in found if m == model) for model in FORECAST_KINDS.values()}
    return [(name, f"{model} (`{name}`)" if counts[model] > 1 else model, record) for name, model, record in found]


def comparison_rows(stages: dict[str, dict[str, Any]]) -> list[ComparisonRow]:
    """The LLM rows of every forecast stage, then the baselines of the last one."""
    found = forecast_stages(stages)
    rows: list[ComparisonRow] = []
    for name, model, record in found:
        reference = _method(record, REFERENCE)
        rows += [ComparisonRow(f"{model}, {llm_label(entry['method'])}", name, entry, reference)
                 for entry in record["methods"] if entry["method"].startswith("llm")]
    if found:
        name, _, record = found[-1]
        reference = _method(record, REFERENCE)
        rows += [ComparisonRow(method.replace("_", " "), name, entry, reference)
                 for method in BASELINES if (entry := _method(record, method))]
    return rows


HEADER = ("method", "species", "MSE median", "MSE mean [95% CI]", "MAE median", "MAE mean [95% CI]",
          "CRPS median", "CRPS mean [95% CI]", "skill vs persistence", "R² median", "band coverage", "malformed")


def comparison_table(rows: list[ComparisonRow]) -> str:
    """Markdown table, one line per forecaster and species (see :func:`comparison_section`)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|---|---|" + "---:|" * (len(HEADER) - 2)]
    for row in rows:
        for species in SPECIES:
            entry = row.metrics["species"][species]
            crps = entry.get("crps")
            cells = (row.label, species, _num(entry["mse"]["median"]), _mean(entry["mse"]),
                     _num(entry["mae"]["median"]), _mean(entry["mae"]),
                     _num(crps["median"]) if crps else "-", _mean(crps) if crps else "-",
                     "0 (reference)" if row.metrics is row.reference else _signed(row.skill(species)),
                     _num(entry["r2"]["median"]),
                     _coverage(entry.get("band_coverage"), row.metrics.get("extras", {})), _malformed(row.metrics))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_section(stages: dict[str, dict[str, Any]]) -> str:
    """The report's opening section: the comparison table and how to read it ("" before any
    forecast stage has finished)."""
    rows = comparison_rows(stages)
    if not rows:
        return ""
    first = rows[0].metrics
    return "\n".join([
        "## Comparison: untrained vs fine-tuned vs baselines", "",
        f"Test split, {first['n_trajectories']} trajectories, {first['horizon']} steps ahead, original units; "
        "every forecaster on the same trajectories from the same context.", "",
        comparison_table(rows), "",
        "- **median** and **mean [95% CI]** over trajectories of each trajectory's error (CI: percentile bootstrap "
        "of the mean, 1000 resamples). Medians lead: a few exploding forecasts dominate the means.",
        f"- **skill vs persistence** = 1 − median MSE / median MSE of {REFERENCE} on the same trajectories "
        "(medians, not means); > 0 beats persistence, 1 is perfect.",
        "- **CRPS**: empirical CRPS of the sample ensemble per forecast step, averaged over a trajectory's steps "
        "(sampled forecasts only; a point forecast's CRPS is its MAE, so compare with the MAE column).",
        "- **band coverage**: share of true values inside the sample band (its nominal coverage in brackets).",
        "- **malformed**: share of trajectories whose forecast has a step that did not parse (left out of the "
        "errors, never filled); for sampled rows also the share of malformed samples. `no grammar` rows are "
        "scored over their well-formed steps only.",
        "- R² as the median only; the mean R² and pooled R² are in the per-stage tables below.",
    ])


def spotlight_section(stages: dict[str, dict[str, Any]], trajectory: int = PINNED_TRAJECTORY) -> str:
    """Prey and predator MSE / MAE / R² of ``trajectory`` for the untrained and fine-tuned LLM
    decodings beside the seed report's MSE; one line when the run did not forecast it."""
    found = forecast_stages(stages)
    if not found:
        return ""
    title = f"### Trajectory {trajectory}, the seed report's example"
    ids = found[0][2]["methods"][0].get("ids")
    if ids is None:
        return f"{title}\n\nThis `results.json` keeps no per-trajectory values (re-run its forecast stages)."
    if trajectory not in ids:
        return (f"{title}\n\nTrajectory {trajectory} is not among the {len(ids)} test trajectories this run "
                "forecast, so there is no per-trajectory comparison with the seed report (the plan's `[data] "
                "test_ids` sets the test split).")
    metrics = [(species, name) for name in ("mse", "mae", "r2") for species in SPECIES]
    header = ["model", "source", *(f"{species} {METRIC_LABELS[name]}" for species, name in metrics)]
    lines = [title, "", "| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(metrics)]
    for model, seed_mse in SEED_REPORT_MSE.items():
        lines.append(f"| {model} | seed report | " + " | ".join(
            f"{seed_mse[species]:.4f}" if name == "mse" else "-" for species, name in metrics) + " |")
        for _, stage_model, record in found:
            if stage_model.split(" ")[0] != model:
                continue
            for entry in record["methods"]:
                if entry["method"].startswith("llm") and entry.get("ids"):
                    row = entry["ids"].index(trajectory)
                    values = [entry["species"][species]["per_trajectory"][name][row] for species, name in metrics]
                    lines.append(f"| {stage_model} | this run, {llm_label(entry['method'])} | "
                                 + " | ".join(_fixed(value) for value in values) + " |")
    lines += ["", f"This run's errors are over its {found[0][2]['methods'][0]['horizon']} forecast steps of trajectory "
                  f"{trajectory} in original units; the seed report's MSE figures are quoted as it gives them (its "
                  "sample 972; it reports MSE only)."]
    return "\n".join(lines)


def _method(record: dict[str, Any], method: str) -> dict[str, Any] | None:
    return next((entry for entry in record.get("methods", []) if entry["method"] == method), None)


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _fixed(value: float | None) -> str:
    """Four decimals, like the seed report, for values in [0.001, 10); four significant digits otherwise."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4f}" if 1e-3 <= abs(value) < 10 or value == 0 else f"{value:.4g}"


def _signed(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:+.3g}"


def _mean(summary: dict[str, Any]) -> str:
    mean = _num(summary.get("mean"))
    if summary.get("ci_low") is None:
        return mean
    return f"{mean} [{_num(summary['ci_low'])}, {_num(summary['ci_high'])}]"


def _coverage(coverage: float | None, extras: dict[str, Any]) -> str:
    if coverage is None:
        return "-"
    if "band_low" not in extras:
        return _percent(coverage)
    return f"{_percent(coverage)} ({_percent(extras['band_high'] - extras['band_low'])})"


def _malformed(metrics: dict[str, Any]) -> str:
    fraction = metrics.get("malformed_fraction")
    text = "-" if fraction is None else _percent(fraction)
    samples = metrics.get("extras", {}).get("malformed_sample_fraction")
    if samples is not None and metrics.get("extras", {}).get("samples_per_trajectory", 1) > 1:
        text += f" (samples {_percent(samples)})"
    return text


def _percent(fraction: float) -> str:
    """Whole percent, or one decimal below 10 % so that a rare failure does not read as 0 %."""
    return f"{fraction:.0%}" if fraction == 0 or fraction >= 0.1 else f"{fraction:.1%}"
