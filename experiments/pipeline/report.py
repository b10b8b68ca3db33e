"""``report.md``: the researcher's deliverable, generated from the ledger and ``results.json`` only.

Sections: the comparison of every forecaster on the test split and the spotlight on trajectory
972 (``experiments.pipeline.comparison``), the FLOP audit of every experiment
(``flopcount.audit_report``), projected against spent FLOPs per stage, the grid and context
tables, training curves, forecasts against the baselines on the test split (per stage, with
mean R²), and the measured backward/forward ratio against the 3x rule.
Every FLOP figure is read from the ledger, never recomputed. Every figure is written as PNG
(150 dpi) and as PDF beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.training.metrics_log import read_metrics
from experiments.pipeline.comparison import comparison_section, spotlight_section
from experiments.pipeline.learning import adapter_step, base_note, learning_section
from experiments.pipeline.plan import stage_of
from experiments.pipeline.planner import MEASUREMENT
from experiments.pipeline.report_plots import plot_training_curves
from experiments.pipeline.results import LEDGER_FILE, Results
from flopcount import AuditReport, audit_report

REPORT_FILE = "report.md"
FIGURES = "figures"


def write_report(out_dir: Path) -> Path:
    """Write ``out_dir/report.md`` and its figures from ``ledger.sqlite`` and ``results.json``."""
    results = Results.read(out_dir)
    audit = audit_report(out_dir / LEDGER_FILE)
    figures = out_dir / FIGURES
    figures.mkdir(exist_ok=True)
    audit.plot(figures / "audit.png")
    stages = results.document["stages"]
    curves = {entry["experiment"]: read_metrics(out_dir / entry["metrics"])
              for record in stages.values() for entry in record.get("runs", []) if entry.get("metrics")}
    if curves:
        plot_training_curves(figures / "training_curves.png", curves, audit.limit)
    sections = [
        _header(results.document),
        comparison_section(stages),
        spotlight_section(stages),
        _audit_section(audit, results.document),
        *(_sweep_section(name, record, audit) for name, record in stages.items() if record.get("kind") == "sweep"),
        *(_sweep_section(name, record, audit) for name, record in stages.items() if record.get("kind") == "context"),
        _curves_section(curves),
        learning_section(stages),
        *(_forecast_section(name, record) for name, record in stages.items()
          if record.get("kind") in ("baseline", "evaluate")),
        _backward_section(stages.get(MEASUREMENT)),
    ]
    path = out_dir / REPORT_FILE
    path.write_text("\n\n".join(section for section in sections if section) + "\n", encoding="utf-8")
    return path


def stage_flops(audit: AuditReport, stage: str) -> int:
    """FLOPs the ledger holds for a stage: its experiment and its runs (``stage/...``)."""
    return sum(row.total for row in audit.rows if stage_of(row.name) == stage)


def _header(document: dict[str, Any]) -> str:
    plan = document.get("plan_summary", {})
    lines = [f"# Plan `{document['plan']}`: results", "", plan.get("description", "")]
    lines += ["", f"- model: `{plan.get('model')}`", f"- data: `{plan.get('data')}`",
              f"- budget: {plan.get('limit', 0):.4g} FLOPs, `{plan.get('convention')}` convention"]
    if plan.get("model") == "tiny":
        lines += ["", "> **The `tiny` model is randomly initialised: its forecasts mean nothing.** This run",
                  "> demonstrates the pipeline, the budget guard, the ledger and this report in miniature.",
                  "> The real plan fine-tunes Qwen/Qwen2.5-0.5B-Instruct under 1e17 FLOPs (a GPU machine with",
                  "> the hub model): `python -m experiments run --plan coursework --out runs/coursework`",
                  "> (see its projected FLOPs first with `--dry-run`)."]
    lines += base_note(plan)
    return "\n".join(lines)


def _audit_section(audit: AuditReport, document: dict[str, Any]) -> str:
    lines = ["## FLOP audit: every experiment", "",
             f"Ledger `{Path(audit.ledger).name}`: spent **{audit.total:.6g}** of {audit.limit:.6g} FLOPs "
             f"({audit.total / audit.limit:.2%}), {audit.remaining:.6g} left. Useful {audit.useful:.6g}, "
             f"lost to interruptions {audit.lost:.6g} (work after a run's last checkpoint, or a forecast redone).",
             "", audit.to_markdown(), "",
             f"![FLOPs per experiment]({FIGURES}/audit.png)", "",
             f"Every figure of this report is also saved as PDF beside its PNG (`{FIGURES}/audit.pdf`, ...)."]
    projection = document.get("projection")
    if projection:
        lines += ["", "### Projected against spent, per stage", "",
                  "| stage | status | projected FLOPs | spent FLOPs | spent / projected | wall time |",
                  "|---|---|---:|---:|---:|---:|"]
        for stage in projection["stages"]:
            record = document["stages"].get(stage["name"], {})
            spent = stage_flops(audit, stage["name"])
            ratio = f"{spent / stage['flops']:.1%}" if stage["flops"] else "-"
            wall = f"{record['wall_seconds']:.0f} s" if record.get("wall_seconds") else "-"
            lines.append(f"| {stage['name']} | {record.get('status', 'pending')} | {stage['flops']:.4g} | "
                         f"{spent:.4g} | {ratio} | {wall} |")
    return "\n".join(lines)


def _sweep_section(name: str, record: dict[str, Any], audit: AuditReport) -> str:
    runs = record.get("runs", [])
    if not runs:
        return ""
    keys = [key for key in ("learning_rate", "lora_rank", "context")
            if len({str(run["settings"][key]) for run in runs}) > 1] or ["learning_rate"]
    rows = {row.name: row for row in audit.rows}  # FLOPs per run, from the ledger
    best = record.get("best", {}).get("experiment")
    missing = {entry["experiment"]: entry for entry in record.get("best", {}).get("missing", [])}
    title = "Context length" if record.get("kind") == "context" else "Learning rate x LoRA rank grid"
    lines = [f"## {title} (stage `{name}`)", "",
             "| " + " | ".join(keys) + " | steps | FLOPs | share of budget | validation loss | perplexity | status |",
             "|" + "---:|" * (len(keys) + 5) + "---|"]
    common = runs[0].get("selection_context")
    forecasts = any(run.get("selection_forecast_error") is not None for run in runs)
    extra = ([f"loss at context {common}"] if common else []) + \
        (["validation forecast error (÷ persistence)", "prey / predator median MSE"] if forecasts else [])
    if extra:
        lines[2] = lines[2].replace(" | status |", "".join(f" | {column}" for column in extra) + " | status |")
        lines[3] = "|" + "---:|" * (len(keys) + 5 + len(extra)) + "---|"
    for run in runs:
        row = rows.get(run["experiment"])
        flops, share = (row.total, row.share) if row else (0, 0.0)
        marker = " **(best)**" if run["experiment"] == best else ""
        if run["experiment"] in missing:
            marker = " **(no validation loss: missing from the selection)**" if not forecasts else \
                " **(no validation forecast: missing from the selection)**"
        median = (run.get("selection_forecast") or {}).get("median", {})
        lines.append("| " + " | ".join(f"{run['settings'][key]:g}" for key in keys)
                     + f" | {run.get('steps_done', 0)} | {flops:.4g} | {share:.2%} | {_num(run.get('val_loss'))}"
                     + f" | {_num(run.get('val_perplexity'))}"
                     + (f" | {_num(run.get('selection_val_loss'))}" if common else "")
                     + (f" | {_num(run.get('selection_forecast_error'))} | {_num(median.get('prey'))} / "
                        f"{_num(median.get('predator'))}" if forecasts else "")
                     + f" | {run.get('status')}{marker} |")
    if forecasts:
        lines += ["", _criteria_agree(runs, best)]
    if best:
        lines += ["", f"Selected `{best}` ({record['best']['criterion']}; each run's adapter is its last "
                      "checkpoint, at the step shown); the next stage uses its setting."]
    for name, entry in missing.items():
        lines += ["", f"**Missing from the selection: `{name}`** has no validation loss ({entry.get('status')} after "
                      f"{entry.get('steps_done')} steps: {entry.get('stop_reason') or 'it never validated'})."]
    return "\n".join(lines)


def _criteria_agree(runs: list[dict[str, Any]], selected: str | None) -> str:
    """Which run each criterion would pick: the lowest validation loss and the lowest validation
    forecast error (lower loss is not always better forecasts)."""
    by_loss = min((run for run in runs if run.get("val_loss") is not None), key=lambda run: run["val_loss"],
                  default=None)
    by_forecast = min((run for run in runs if run.get("selection_forecast_error") is not None),
                      key=lambda run: run["selection_forecast_error"], default=None)
    if by_loss is None or by_forecast is None:
        return ""
    if by_loss is by_forecast:
        return f"Both criteria pick `{by_loss['experiment']}`: lowest validation loss and lowest forecast error."
    return (f"The criteria disagree: the lowest validation loss is `{by_loss['experiment']}` "
            f"({by_loss['val_loss']:.4f} nats, forecast error {by_loss['selection_forecast_error']:.4g}), the lowest "
            f"validation forecast error `{by_forecast['experiment']}` ({by_forecast['selection_forecast_error']:.4g}, "
            f"loss {_num(by_forecast.get('val_loss'))} nats); `{selected}` was selected.")


def _curves_section(curves: dict[str, list[dict[str, Any]]]) -> str:
    if not curves:
        return ""
    return ("## Training curves\n\nTraining loss (line) and validation loss (dots), in nats per target token, of "
            "every run against the FLOPs the plan had spent, one panel per stage."
            f"\n\n![training curves]({FIGURES}/training_curves.png)")


def _forecast_section(name: str, record: dict[str, Any]) -> str:
    table = record.get("results_table")
    if not table:
        return ""
    title = "untrained model" if record.get("kind") == "baseline" else \
        f"adapter of `{record.get('source')}`{adapter_step(record)}"
    lines = [f"## Forecasts on the test split: {title} (stage `{name}`)", "", record.get("description", ""), "",
             table]
    validation = record.get("validation")
    if validation:
        at = f" at step {validation['step']}" if validation.get("step") is not None else ""
        lines += ["", f"Validation cross-entropy of that adapter's run{at}: "
                      f"{_num(validation.get('cross_entropy_nats'))} nats/token (perplexity "
                      f"{_num(validation.get('perplexity'))})."]
    lines += [f"\n![{Path(figure).stem}]({figure})" for figure in record.get("figures", [])]
    return "\n".join(lines)


def _backward_section(ratio: dict[str, Any] | None) -> str:
    if not ratio:
        return ""
    return "\n".join([
        "## The 3x training rule, measured", "",
        f"One LoRA training step of the plan's model, counted by `torch.utils.flop_counter.FlopCounterMode` "
        f"(matrix products only, batch {ratio['batch']} x {ratio['seq_len']} tokens): forward "
        f"{ratio['forward']:.4g}, backward {ratio['backward']:.4g} FLOPs, **backward / forward = "
        f"{ratio['ratio']:.3f}** against the {ratio['assumed']}x the budget assumes (training = 3 x forward).",
        "With the base weights frozen the backward pass computes no weight gradients for them, only input "
        "gradients and the small LoRA gradients, so the budget's rule over-counts training by about "
        f"{(1 + ratio['assumed']) / (1 + ratio['ratio']):.2f}x: a conservative rule.",
    ])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
