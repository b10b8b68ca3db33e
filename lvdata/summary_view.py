"""Presentation of a :class:`~lvdata.summary.DatasetSummary`: a text table and a PNG plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lvdata.summary import DatasetSummary, Distribution

_COLUMNS = ("min", "p5", "median", "p95", "max")


def format_summary(summary: DatasetSummary) -> str:
    """Plain-text report, one distribution per row (min / p5 / median / p95 / max)."""
    split = summary.split
    lines = [
        f"dataset        {summary.source}",
        f"shape          {summary.n_systems} trajectories x {summary.n_steps} steps x 2 (prey, predator)",
        f"time           {summary.time_range[0]:g} .. {summary.time_range[1]:g}",
        f"split (seed {summary.seed}) train {len(split.train)}, validation {len(split.validation)}, "
        f"test {len(split.test)}",
        f"global alpha   {summary.global_alpha:.6g} (fitted on the training split)",
        "",
        _row("", _COLUMNS),
        _distribution_row("prey", summary.prey),
        _distribution_row("predator", summary.predator),
        _distribution_row("alpha/traj", summary.per_trajectory_alpha),
        "",
        "tokens per trajectory (whole trajectory encoded, no special tokens)",
        _row("rule", _COLUMNS),
        *(_distribution_row(rule, d, digits=0) for rule, d in summary.token_length_distributions.items()),
        f"tokens per character: {summary.tokens_per_char:.4f}",
    ]
    return "\n".join(lines)


def _row(label: str, cells: tuple[str, ...]) -> str:
    return f"{label:<16}" + "".join(f"{cell:>10}" for cell in cells)


def _distribution_row(label: str, dist: Distribution, digits: int = 4) -> str:
    values = (dist.min, dist.p5, dist.median, dist.p95, dist.max)
    return _row(label, tuple(f"{value:.{digits}f}" for value in values))


def plot_token_lengths(lengths: dict[str, np.ndarray], path: str | Path) -> Path:
    """Histogram of tokens per trajectory for each scaling rule, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 4))
    everything = np.concatenate(list(lengths.values()))
    bins = np.arange(everything.min(), everything.max() + 2) - 0.5  # one bin per token count
    for rule, values in lengths.items():
        axis.hist(values, bins=bins, alpha=0.6, label=rule)
    axis.set_xlabel("tokens per encoded trajectory")
    axis.set_ylabel("trajectories")
    axis.set_title("LLMTIME token length per trajectory")
    axis.legend(title="alpha rule")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
