"""Forecast figures are real PNGs of the configured size; bad input fails with a clear message."""

from __future__ import annotations

import struct

import matplotlib.image
import numpy as np
import pytest

from experiments.forecasting.plots import DPI, FIGSIZE, plot_forecast, plot_horizon_errors

EXPECTED_SIZE = (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))


def png_size(path) -> tuple[int, int]:
    """(width, height) from the PNG signature and IHDR chunk; fails on anything else."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.fixture
def trajectory():
    time = np.linspace(0.0, 200.0, 100)
    truth = np.stack([2 + np.sin(time / 6), 1 + 0.5 * np.cos(time / 6)], axis=-1)  # (100, 2)
    return time, truth


def test_forecast_plot_is_a_png_of_the_right_size_and_shows_the_band(trajectory, tmp_path):
    time, truth = trajectory
    forecasts = {"persistence": np.repeat(truth[49:50], 50, axis=0), "oracle": truth[50:].copy()}
    forecasts["oracle"][10] = np.nan  # a malformed step is a gap, not an error
    plain = plot_forecast(tmp_path / "plain.png", time, truth, forecasts, k=50, title="trajectory 3")
    banded = plot_forecast(tmp_path / "sub" / "banded.png", time, truth, forecasts, k=50,
                           band=(truth[50:] - 0.3, truth[50:] + 0.3))
    for path in (plain, banded):
        assert png_size(path) == EXPECTED_SIZE
    plain_pixels, banded_pixels = matplotlib.image.imread(plain), matplotlib.image.imread(banded)
    assert plain_pixels.shape[:2] == EXPECTED_SIZE[::-1] and plain_pixels.std() > 0
    assert not np.array_equal(plain_pixels, banded_pixels)


def test_horizon_error_plot_is_a_png_of_the_right_size(tmp_path):
    errors = {"persistence": np.linspace(0, 1, 50)[:, None] * [1, 0.5], "physics_fit": np.full((50, 2), 0.1)}
    path = plot_horizon_errors(tmp_path / "horizon.png", errors)
    assert png_size(path) == EXPECTED_SIZE


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"truth": np.zeros((99, 2))}, r"truth must have shape \(100, 2\)"),
        ({"forecasts": {"a": np.zeros((50, 3))}}, r"forecasts of 'a' must have shape \(T, 2\)"),
        ({"forecasts": {"a": np.zeros((50, 2)), "b": np.zeros((40, 2))}}, "different horizons"),
        ({"forecasts": {}}, "forecasts is empty"),
        ({"k": 60}, "exceed the 100 time points"),
        ({"k": 0}, "context length k=0"),
        ({"band": (np.zeros((50, 2)), np.zeros((49, 2)))}, r"band upper must have shape \(50, 2\)"),
        ({"path": "figure.pdf"}, "does not end in .png"),
    ],
)
def test_forecast_plot_rejects_bad_input(trajectory, tmp_path, change, message):
    time, truth = trajectory
    arguments = {"path": tmp_path / "f.png", "time": time, "truth": truth,
                 "forecasts": {"a": np.zeros((50, 2))}, "k": 50} | change
    with pytest.raises(ValueError, match=message):
        plot_forecast(**arguments)
    assert not (tmp_path / "f.png").exists()


def test_horizon_error_plot_rejects_mismatched_methods(tmp_path):
    with pytest.raises(ValueError, match="different horizons"):
        plot_horizon_errors(tmp_path / "h.png", {"a": np.zeros((50, 2)), "b": np.zeros((10, 2))})
    with pytest.raises(ValueError, match=r"errors of 'a' must have shape"):
        plot_horizon_errors(tmp_path / "h.png", {"a": np.zeros(50)})


def test_every_figure_is_also_a_pdf_and_off_scale_or_empty_methods_do_not_break_it(trajectory, tmp_path):
    time, truth = trajectory
    forecasts = {"good": truth[50:].copy(), "exploded": np.full((50, 2), 1e6), "malformed": np.full((50, 2), np.nan)}
    path = plot_forecast(tmp_path / "f.png", time, truth, forecasts, k=50)
    assert png_size(path) == EXPECTED_SIZE
    pdf = path.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    only_good = plot_forecast(tmp_path / "g.png", time, truth, {"good": truth[50:].copy()}, k=50)
    # the exploded forecast is clipped at the truth's scale: the truth's pixels stay where they were
    a, b = matplotlib.image.imread(path), matplotlib.image.imread(only_good)
    assert (a[:, :, :3] < 0.2).all(axis=-1).sum() == pytest.approx((b[:, :, :3] < 0.2).all(axis=-1).sum(), rel=0.25)


def test_horizon_errors_take_per_trajectory_errors_and_write_both_formats(tmp_path):
    rng = np.random.default_rng(0)
    errors = {"persistence": np.abs(rng.normal(0, 1, (20, 50, 2))) * np.arange(1, 51)[None, :, None],
              "llm": np.abs(rng.normal(0, 0.1, (20, 50, 2)))}
    errors["llm"][3, 7] = np.nan  # a malformed step counts as missing, not as zero
    path = plot_horizon_errors(tmp_path / "h.png", errors)
    assert png_size(path) == EXPECTED_SIZE and path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
