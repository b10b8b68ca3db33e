"""The audit chart on a real ledger: written as PNG (150 dpi) and PDF, and only to a .png path."""

from __future__ import annotations

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
