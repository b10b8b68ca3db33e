"""The one figure saver: a PNG at 150 dpi and a PDF beside it, or a clear error."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from flopcount.audit.figure_files import DPI, save_png_and_pdf


def drawn() -> Figure:
    figure = Figure(figsize=(6, 3))
    figure.subplots().plot([0, 1, 2], [1, 0, 2])
    return figure


def test_writes_the_png_and_the_pdf_beside_it(tmp_path, figure_check):
    path = save_png_and_pdf(drawn(), tmp_path / "new" / "curve.png")
    assert path == tmp_path / "new" / "curve.png" and DPI >= 150
    figure_check(path, min_pixels=(6 * DPI, 3 * DPI))


def test_a_path_that_is_not_png_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"curve\.pdf does not end in \.png"):
        save_png_and_pdf(drawn(), tmp_path / "curve.pdf")
    assert not list(tmp_path.iterdir())
