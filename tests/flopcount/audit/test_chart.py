"""The audit chart: a PNG of one bar per experiment, drawn without touching pyplot's backend."""

from __future__ import annotations

import struct

import matplotlib
import pytest

from flopcount.audit.chart import DPI, plot_audit
from flopcount.audit.table import audit_report
from flopcount.ledger.ledger import Ledger


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", header[16:24])


def test_the_chart_is_a_png_as_wide_as_its_experiments_need(ledger_and_charges, tmp_path):
    backend = matplotlib.get_backend()
    report = audit_report(ledger_and_charges[0])
    path = plot_audit(report, tmp_path / "charts" / "audit.png")  # the folder is made
    assert path == tmp_path / "charts" / "audit.png"
    width, height = png_size(path)
    assert (width, height) == pytest.approx((6.0 * DPI, 4.8 * DPI), abs=2)  # three experiments: the minimum width
    assert matplotlib.get_backend() == backend


def test_an_empty_ledger_still_draws_and_a_non_png_path_is_refused(tmp_path):
    Ledger(tmp_path / "empty.sqlite", 10**12).close()
    report = audit_report(tmp_path / "empty.sqlite")
    assert png_size(plot_audit(report, tmp_path / "empty.png"))[0] > 0
    with pytest.raises(ValueError, match=r"written as PNG; .*audit\.pdf does not end in \.png"):
        plot_audit(report, tmp_path / "audit.pdf")
    assert not (tmp_path / "audit.pdf").exists()
