"""Training curves for the report: every run's training and validation loss against the FLOPs
the plan had spent, one panel per stage (PNG at 150 dpi and PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from experiments.forecasting.plots import PALETTE, save_figure  # noqa: E402
from experiments.pipeline.plan import stage_of  # noqa: E402


def loss_against_flops(records: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """``(training, validation)`` points ``(cumulative FLOPs, loss in nats)`` of one run's
    metrics: a training step at the ledger's total after its charge, a validation at that
    total plus its own charge."""
    train, validation, spent_after = [], [], {}
    for record in records:
        if record["kind"] == "train" and record.get("loss") is not None:
            spent_after[record["step"]] = record["flops_spent_total"]
            train.append((record["flops_spent_total"], record["loss"]))
        elif record["kind"] == "validation" and record.get("val_loss") is not None and record["step"] in spent_after:
            validation.append((spent_after[record["step"]] + record.get("flops", 0), record["val_loss"]))
    return train, validation


def plot_training_curves(path: str | Path, curves: dict[str, list[dict[str, Any]]], limit: int) -> Path:
    """One panel per training stage: each run's training loss (thin line) and validation loss
    (markers) against the FLOPs spent by the whole plan, with the share of ``limit`` (FLOPs)
    on the top axis.

    ``curves``: run name -> records of ``experiments.training.metrics_log.read_metrics``.
    """
    path = Path(path)
    stages: dict[str, list[str]] = {}
    for name in curves:
        stages.setdefault(stage_of(name), []).append(name)
    columns = min(len(stages), 3)
    rows = -(-len(stages) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.3 * rows), squeeze=False, sharey=True)
    for axis, (stage, names) in zip(axes.flat, stages.items()):
        for index, name in enumerate(names):
            colour = PALETTE[index % len(PALETTE)]
            train, validation = loss_against_flops(curves[name])
            label = name.split("/", 1)[1] if "/" in name else name
            if train:
                axis.plot(*zip(*train), color=colour, lw=0.9, alpha=0.8, label=f"{label}")
            if validation:
                axis.plot(*zip(*validation), "o--", color=colour, ms=3.5, lw=0.8)
        axis.set(title=f"stage {stage}", xlabel="FLOPs spent by the plan", ylabel="nats per target token")
        axis.grid(alpha=0.25)
        top = axis.secondary_xaxis("top", functions=(lambda x: 100 * x / limit, lambda p: p * limit / 100))
        top.set_xlabel("share of the budget (%)", fontsize="small")
        if len(names) > 1:
            axis.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    for axis in list(axes.flat)[len(stages):]:
        axis.set_visible(False)
    figure.suptitle("Loss against FLOPs (line: training, dots: validation)")
    figure.tight_layout()
    return save_figure(figure, path)
