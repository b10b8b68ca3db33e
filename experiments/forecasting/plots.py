"""Figures of forecasts: one trajectory against the truth, and error against steps ahead.

Every figure has one panel per species (:data:`experiments.forecasting.metrics.SPECIES`), values in the
dataset's original units, and is written twice: a PNG at :data:`DPI` and a PDF beside it.
Made to be read: a qualitative palette with a line style per method (identical forecasts stay
visible, one dashed over the other), the truth beneath the forecasts, legends below the panels
(never over the data), an axis scaled to the truth (a forecast off that scale is clipped and
marked, not allowed to flatten everything else), methods with no valid value left out with a
note, integer steps, and a log scale where errors span decades. Malformed forecast steps (NaN)
show as gaps, never as zeros.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from experiments.forecasting.metrics import SPECIES  # noqa: E402
from flopcount.audit.figure_files import save_png_and_pdf  # noqa: E402

FIGSIZE = (10.0, 4.6)
DPI = 150
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999933", "#882255", "#44AA99",
           "#661100")  # Okabe-Ito, then Tol's muted: distinct for colour-blind readers, none black (the truth)
LINESTYLES = ("-", "--", "-.", ":")  # with the colour: a forecast drawn over an identical one stays visible
SCALE_HEADROOM = 1.5  # the y axis reaches this many times the truth's largest value
LOG_SPAN = 20.0  # errors spanning more than this ratio are drawn on a log axis


def _series(name: str, values, length: int | None = None) -> np.ndarray:
    """Check a ``(length, 2)`` species array and return it as float."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(SPECIES) or (length is not None and len(array) != length):
        expected = f"({'T' if length is None else length}, {len(SPECIES)})"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array


def _png_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG (and PDF beside it); {path} does not end in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _per_method(kind: str, arrays: dict[str, np.ndarray], per_trajectory: bool = False) -> tuple[dict, int]:
    """Check each method's ``(m, 2)`` (or ``(N, m, 2)``) array; all must share ``m``."""
    if not arrays:
        raise ValueError(f"{kind} is empty: give at least one method's (m, 2) {kind}")
    checked = {}
    for name, values in arrays.items():
        array = np.asarray(values, dtype=np.float64)
        if per_trajectory and array.ndim == 3:
            if array.shape[2] != len(SPECIES):
                raise ValueError(f"{kind} of {name!r} must have shape (N, m, {len(SPECIES)}), got {array.shape}")
            checked[name] = array
        else:
            checked[name] = _series(f"{kind} of {name!r}", array)
    horizons = {values.shape[-2] for values in checked.values()}
    if len(horizons) != 1:
        raise ValueError(f"{kind} have different horizons {sorted(horizons)}; give all the same m")
    return checked, horizons.pop()


def save_figure(figure: plt.Figure, path: Path) -> Path:
    """Write ``figure`` as ``path`` (PNG, :data:`DPI`) and as the PDF beside it, close it; return the PNG."""
    save_png_and_pdf(figure, path, DPI)
    plt.close(figure)
    return path


def _finish(figure: plt.Figure, axes, title: str, path: Path, note: str = "") -> Path:
    """One legend for the figure, below the panels; the title; an optional note; save."""
    handles: dict[str, object] = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    rows = -(-len(handles) // 4)
    note_height = 0.045 if note else 0.0
    figure.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 4),
                  fontsize="small", frameon=False, bbox_to_anchor=(0.5, note_height))
    if note:
        figure.text(0.5, 0.012, note, ha="center", va="bottom", fontsize="small", color="0.3")
    figure.suptitle(title)
    figure.tight_layout(rect=(0, note_height + 0.045 * rows + 0.01, 1, 1))
    return save_figure(figure, path)


def plot_forecast(
    path: str | Path, time: np.ndarray, truth: np.ndarray, forecasts: dict[str, np.ndarray], k: int, *,
    band: tuple[np.ndarray, np.ndarray] | None = None, band_label: str = "sample band", title: str = "",
) -> Path:
    """Plot one trajectory: truth ``(T, 2)`` over ``time (T,)``, the first ``k`` steps shaded as
    context, and each method's forecast ``(m, 2)`` of steps ``k .. k+m-1``, with an optional
    ``band = (lower, upper)`` (each ``(m, 2)``), e.g. the 5-95 % range of sampled forecasts.

    The y axis reaches :data:`SCALE_HEADROOM` times the truth's largest value; a forecast
    beyond it is clipped there and marked with triangles (its label says so); a method with
    no valid value is left out and named in a note.
    """
    time = np.asarray(time, dtype=np.float64)
    if time.ndim != 1:
        raise ValueError(f"time must be one-dimensional (T,), got shape {time.shape}")
    truth = _series("truth", truth, len(time))
    if not 1 <= k < len(time):
        raise ValueError(f"context length k={k} must leave at least one of the {len(time)} steps to forecast")
    checked, m = _per_method("forecasts", forecasts)
    if k + m > len(time):
        raise ValueError(f"k={k} context steps plus m={m} forecast steps exceed the {len(time)} time points")
    horizon_time = time[k:k + m]  # (m,)
    if band is not None:
        band = tuple(_series(f"band {side}", b, m) for side, b in zip(("lower", "upper"), band))
    path = _png_path(path)
    missing = [name for name, forecast in checked.items() if not np.isfinite(forecast).any()]
    shown = {name: forecast for name, forecast in checked.items() if name not in missing}
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(checked)}
    styles = {name: LINESTYLES[i % len(LINESTYLES)] for i, name in enumerate(checked)}

    figure, axes = plt.subplots(1, len(SPECIES), figsize=FIGSIZE, sharex=True)
    for s, (axis, species) in enumerate(zip(axes, SPECIES)):
        top = SCALE_HEADROOM * float(np.nanmax(truth[:, s])) or 1.0
        axis.axvspan(time[0], time[k - 1], color="0.92", label=f"context ({k} steps)")
        if band is not None:
            axis.fill_between(horizon_time, np.minimum(band[0][:, s], top), np.minimum(band[1][:, s], top),
                              color=PALETTE[0], alpha=0.15, linewidth=0, label=band_label)
        for name, forecast in shown.items():
            values = forecast[:, s]
            off = values > top
            label = f"{name} (off scale)" if np.any(off) else name
            axis.plot(horizon_time, np.minimum(values, top), color=colours[name], linestyle=styles[name],
                      linewidth=1.5, label=label)
            if np.any(off):
                axis.plot(horizon_time[off], np.full(off.sum(), top), "^", color=colours[name], markersize=4)
        axis.plot(time, truth[:, s], color="black", linewidth=1.6, alpha=0.8, label="truth", zorder=1.9)
        axis.set(title=species, xlabel="time", ylabel="population", ylim=(0, top * 1.04))
        axis.grid(alpha=0.25)
    note = f"not shown (no valid forecast step): {', '.join(missing)}" if missing else ""
    return _finish(figure, axes, title, path, note)


def plot_horizon_errors(
    path: str | Path, errors: dict[str, np.ndarray], *, title: str = "Mean absolute error against horizon",
    n_bootstrap: int = 500, seed: int = 0,
) -> Path:
    """Plot each method's absolute error against steps ahead ``1 .. m``, one panel per species.

    ``errors``: per method, the per-trajectory absolute errors ``(N, m, 2)`` (NaN where a step
    is not valid): their mean with a 95 % bootstrap band over trajectories; or the mean alone
    ``(m, 2)`` (e.g. :func:`experiments.forecasting.metrics.horizon_errors`), without a band.
    Integer ticks; a log axis when the errors span more than :data:`LOG_SPAN`.
    """
    checked, m = _per_method("errors", errors, per_trajectory=True)
    path = _png_path(path)
    rng = np.random.default_rng(seed)
    steps_ahead = np.arange(1, m + 1)
    figure, axes = plt.subplots(1, len(SPECIES), figsize=FIGSIZE, sharex=True)
    for s, (axis, species) in enumerate(zip(axes, SPECIES)):
        drawn = []
        for index, (name, error) in enumerate(checked.items()):
            colour = PALETTE[index % len(PALETTE)]
            if error.ndim == 3:
                mean, band = _mean_and_band(error[:, :, s], rng, n_bootstrap)
                axis.fill_between(steps_ahead, band[0], band[1], color=colour, alpha=0.15, linewidth=0)
            else:
                mean = error[:, s]
            axis.plot(steps_ahead, mean, color=colour, linestyle=LINESTYLES[index % len(LINESTYLES)], linewidth=1.5,
                      label=name)
            drawn.append(mean)
        values = np.concatenate(drawn)
        positive = values[np.isfinite(values) & (values > 0)]
        if positive.size and positive.max() / positive.min() > LOG_SPAN:
            axis.set_yscale("log")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set(title=species, xlabel="steps ahead", ylabel="mean absolute error")
        axis.grid(alpha=0.25, which="both")
    return _finish(figure, axes, title, path, note="bands: 95 % bootstrap intervals over test trajectories"
                   if any(e.ndim == 3 for e in checked.values()) else "")


def _mean_and_band(errors: np.ndarray, rng: np.random.Generator, n_bootstrap: int) -> tuple[np.ndarray, tuple]:
    """Mean over trajectories ``(N, m) -> (m,)`` of the valid values, and its 95 % bootstrap band."""
    valid = np.isfinite(errors)
    values = np.where(valid, errors, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = values.sum(axis=0) / valid.sum(axis=0)
        draws = rng.integers(0, len(errors), size=(n_bootstrap, len(errors)))  # (B, N) resampled trajectories
        means = values[draws].sum(axis=1) / valid[draws].sum(axis=1)  # (B, m)
    return mean, tuple(np.nanpercentile(means, [2.5, 97.5], axis=0))
