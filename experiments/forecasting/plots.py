"""PNG figures of forecasts: one trajectory against the truth, and error against steps ahead.

Every figure has one panel per species (:data:`experiments.forecasting.metrics.SPECIES`), values in the
dataset's original units. Malformed forecast steps (NaN) show as gaps, never as zeros.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from experiments.forecasting.metrics import SPECIES  # noqa: E402

FIGSIZE = (10.0, 4.0)
DPI = 100


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
        raise ValueError(f"figures are written as PNG; {path} does not end in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _per_method(kind: str, arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Check each method's ``(m, 2)`` array; all must share ``m``. Returns them and ``m``."""
    if not arrays:
        raise ValueError(f"{kind} is empty: give at least one method's (m, 2) {kind}")
    checked = {name: _series(f"{kind} of {name!r}", values) for name, values in arrays.items()}
    horizons = {len(values) for values in checked.values()}
    if len(horizons) != 1:
        raise ValueError(f"{kind} have different horizons {sorted(horizons)}; give all the same m")
    return checked, horizons.pop()


def _save(figure: plt.Figure, axes, title: str, path: Path) -> Path:
    axes[0].legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def plot_forecast(
    path: str | Path, time: np.ndarray, truth: np.ndarray, forecasts: dict[str, np.ndarray], k: int, *,
    band: tuple[np.ndarray, np.ndarray] | None = None, band_label: str = "sample band", title: str = "",
) -> Path:
    """Plot one trajectory: truth ``(T, 2)`` over ``time (T,)``, the first ``k`` steps shaded as
    context, and each method's forecast ``(m, 2)`` of steps ``k .. k+m-1``, with an optional
    ``band = (lower, upper)`` (each ``(m, 2)``), e.g. the 5-95 % range of sampled forecasts.
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

    figure, axes = plt.subplots(1, len(SPECIES), figsize=FIGSIZE, sharex=True)
    for s, (axis, species) in enumerate(zip(axes, SPECIES)):
        axis.axvspan(time[0], time[k - 1], color="0.9", label=f"context ({k} steps)")
        axis.plot(time, truth[:, s], color="black", linewidth=1.5, label="truth")
        if band is not None:
            axis.fill_between(horizon_time, band[0][:, s], band[1][:, s], alpha=0.25, label=band_label)
        for name, forecast in checked.items():
            axis.plot(horizon_time, forecast[:, s], linewidth=1.2, label=name)
        axis.set(title=species, xlabel="time", ylabel="population")
    return _save(figure, axes, title, path)


def plot_horizon_errors(
    path: str | Path, errors: dict[str, np.ndarray], *, title: str = "Mean absolute error against horizon",
) -> Path:
    """Plot each method's error ``(m, 2)`` (e.g. :func:`experiments.forecasting.metrics.horizon_errors`)
    against steps ahead ``1 .. m``, one panel per species.
    """
    checked, m = _per_method("errors", errors)
    path = _png_path(path)

    steps_ahead = np.arange(1, m + 1)
    figure, axes = plt.subplots(1, len(SPECIES), figsize=FIGSIZE, sharex=True)
    for s, (axis, species) in enumerate(zip(axes, SPECIES)):
        for name, error in checked.items():
            axis.plot(steps_ahead, error[:, s], linewidth=1.2, label=name)
        axis.set(title=species, xlabel="steps ahead", ylabel="mean absolute error")
    return _save(figure, axes, title, path)
