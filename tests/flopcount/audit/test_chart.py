"""The audit chart on a real ledger: written as PNG (150 dpi) and PDF, only to a .png path, without
touching pyplot's backend."""

from __future__ import annotations

import struct

import matplotlib
import pytest

from flopcount.audit.chart import plot_audit
from flopcount.audit.table import AUDIT_FILES, audit_report
from flopcount.ledger.ledger import Ledger

LIMIT = 10**13


@pytest.fixture
def ledger_path(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, LIMIT) as ledger:
        for name, steps in (("baseline", 1), ("grid/r=2", 5), ("final", 8)):
            session = ledger.begin_session(name, model="tiny", convention="coursework", flop_settings={})
            for step in range(steps):
                ledger.charge(session, "train", 10**11, step=step, tokens=64)
            ledger.end_session(session, "finished")
    return path


def test_the_chart_is_a_png_and_a_pdf(ledger_path, tmp_path, figure_check):
    path = plot_audit(audit_report(ledger_path), tmp_path / "audit.png")
    figure_check(path, min_pixels=(900, 600))


def test_the_audit_files_include_both_chart_formats(ledger_path, tmp_path, figure_check):
    written = audit_report(ledger_path).write(tmp_path / "out")
    assert [path.name for path in written] == list(AUDIT_FILES) and {"audit.png", "audit.pdf"} <= set(AUDIT_FILES)
    figure_check(tmp_path / "out" / "audit.png")


def test_a_chart_path_that_is_not_png_is_refused(ledger_path, tmp_path):
    with pytest.raises(ValueError, match="does not end in .png"):
        plot_audit(audit_report(ledger_path), tmp_path / "audit.svg")


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", header[16:24])


def test_the_chart_is_as_wide_as_its_experiments_need_and_leaves_the_backend_alone(ledger_and_charges, tmp_path):
    backend = matplotlib.get_backend()
    report = audit_report(ledger_and_charges[0])
    path = plot_audit(report, tmp_path / "charts" / "audit.png")  # the folder is made
    assert path == tmp_path / "charts" / "audit.png"
    width, height = png_size(path)
    assert (width, height) == pytest.approx((6.0 * 150, 4.8 * 150), abs=2)  # three experiments: the minimum width
    assert matplotlib.get_backend() == backend


def test_an_empty_ledger_still_draws_and_no_pdf_path_is_taken_for_the_png(tmp_path):
    Ledger(tmp_path / "empty.sqlite", 10**12).close()
    report = audit_report(tmp_path / "empty.sqlite")
    assert png_size(plot_audit(report, tmp_path / "empty.png"))[0] > 0
    with pytest.raises(ValueError, match=r"written as PNG .*audit\.pdf does not end in \.png"):
        plot_audit(report, tmp_path / "audit.pdf")
    assert not (tmp_path / "audit.pdf").exists()
