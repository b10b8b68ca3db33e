"""Training curves for the report: loss per step and validation loss of every run (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_training_curves(path: str | Path, curves: dict[str, list[dict[str, Any]]]) -> Path:
    """One line per run: training loss (thin) and validation loss (markers), against the step.

    ``curves``: run name -> records of ``experiments.training.metrics_log.read_metrics``.
    """
    path = Path(path)
    figure, (train_axis, validation_axis) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    palette = plt.get_cmap("tab20").colors  # distinct colours for up to 20 runs
    for index, (name, records) in enumerate(curves.items()):
        colour = palette[index % len(palette)]
        train = [r for r in records if r["kind"] == "train" and r.get("loss") is not None]
        validation = [r for r in records if r["kind"] == "validation" and r.get("val_loss") is not None]
        if train:
            train_axis.plot([r["step"] for r in train], [r["loss"] for r in train], color=colour, lw=0.8,
                            label=name)
        if validation:
            validation_axis.plot([r["step"] for r in validation], [r["val_loss"] for r in validation], "o-",
                                 color=colour, ms=3, label=name)
    for axis, title in ((train_axis, "training loss"), (validation_axis, "validation loss")):
        axis.set(title=title, xlabel="step", ylabel="nats per target token")
        axis.grid(alpha=0.3)
    validation_axis.legend(fontsize=6, ncol=2, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
