"""Chart of an audit (PNG and PDF): FLOPs per experiment stacked by phase, the cumulative total, the budget.

Uses matplotlib's object API (``Figure`` with the Agg canvas), so it neither needs a display
nor changes the caller's pyplot backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from flopcount.audit.figure_files import save_png_and_pdf
from flopcount.ledger.sqlite_file import PHASES

if TYPE_CHECKING:
    from flopcount.audit.table import AuditReport

PHASE_COLORS = {"train": "tab:blue", "validation": "tab:orange", "generation": "tab:green"}


def plot_audit(report: AuditReport, path: str | os.PathLike[str]) -> Path:
    """Draw ``report`` as a PNG at ``path`` (150 dpi) and a PDF beside it; return the PNG's path.

    One bar per experiment (start order) stacked by phase, its re-run part hatched on top;
    a line for the cumulative FLOPs and a dashed horizontal line at the budget limit.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"the audit chart is written as PNG (and PDF beside it); {path} does not end in .png")
    names = [row.name for row in report.rows]
    positions = np.arange(len(names))  # (n_experiments,)
    figure = Figure(figsize=(max(6.0, 0.7 * len(names) + 3.0), 4.8), layout="constrained")
    axes = figure.subplots()

    bottom = np.zeros(len(names))
    for phase in PHASES:
        heights = np.array([row.by_phase[phase] for row in report.rows], dtype=float)
        axes.bar(positions, heights, bottom=bottom, color=PHASE_COLORS[phase], label=phase)
        bottom += heights
    reruns = np.array([row.lost for row in report.rows], dtype=float)
    axes.bar(
        positions, reruns, bottom=bottom - reruns, fill=False, hatch="//",
        edgecolor="black", linewidth=0.0, label="of which lost to interruptions",
    )  # fmt: skip
    cumulative = [row.cumulative for row in report.rows]
    axes.plot(positions, cumulative, color="black", marker="o", label="cumulative")
    axes.axhline(report.limit, color="tab:red", linestyle="--", label=f"budget {report.limit:.3g}")

    tilted = len(names) > 4
    axes.set_xticks(positions, names, rotation=30 if tilted else 0, ha="right" if tilted else "center")
    axes.set_ylabel("FLOPs")
    axes.set_ylim(0, 1.08 * max(report.limit, report.total))
    spent = f"{report.total:.3g} of {report.limit:.3g} FLOPs spent ({100 * report.total / report.limit:.1f} %)"
    axes.set_title(f"FLOPs per experiment: {spent}", fontsize="medium")
    if not names:
        axes.text(0.5, 0.5, "no experiments yet", transform=axes.transAxes, ha="center")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the data
    return save_png_and_pdf(figure, path)
