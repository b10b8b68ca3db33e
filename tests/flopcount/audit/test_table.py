"""The audit report: its totals equal the ledger's; Markdown, CSV, JSON and PNG files."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from flopcount.audit.table import AUDIT_FILES, audit_report
from flopcount.ledger.ledger import Ledger, LedgerError
from flopcount.ledger.sqlite_file import PHASES

LIMIT = 10**16  # the limit of the ledger_and_charges fixture (conftest.py)
EXPERIMENTS = ["baseline", "lora r=4 | lr 1e-4", "context-768"]


def expected_rows(charged):
    rows = {}
    for name, phase, step, flops, tokens, is_rerun in charged:
        row = rows.setdefault(name, {"by_phase": dict.fromkeys(PHASES, 0), "tokens": 0, "rerun": 0, "steps": set()})
        row["by_phase"][phase] += flops
        row["tokens"] += tokens
        row["rerun"] += flops if is_rerun else 0
        if phase == "train":
            row["steps"].add(step)
    return rows


def test_the_report_totals_equal_the_ledger_and_the_charges(ledger_and_charges):
    path, charged = ledger_and_charges
    report = audit_report(path)
    expected = expected_rows(charged)
    with sqlite3.connect(path) as connection:
        (summed,) = connection.execute("SELECT SUM(flops) FROM charges").fetchone()
    connection.close()
    assert report.total == summed == sum(flops for _, _, _, flops, _, _ in charged)
    assert report.remaining == LIMIT - summed and report.limit == LIMIT
    assert [row.name for row in report.rows] == EXPERIMENTS
    cumulative = 0
    for row in report.rows:
        want = expected[row.name]
        cumulative += sum(want["by_phase"].values())
        assert row.by_phase == want["by_phase"] and row.tokens == want["tokens"]
        assert row.total == sum(want["by_phase"].values()) and row.rerun == want["rerun"]
        assert row.useful == row.total - want["rerun"] and row.steps == len(want["steps"])
        assert row.cumulative == cumulative and row.remaining_after == LIMIT - cumulative
        assert row.share == pytest.approx(row.total / LIMIT)
    resumed = report.rows[1]
    assert resumed.rerun > 0 and resumed.sessions == 2 and resumed.steps == 60
    assert (resumed.status, resumed.stop_reason) == ("stopped", "budget exhausted at step 60")
    assert report.useful + report.rerun == report.total


def test_csv_holds_the_exact_integers(ledger_and_charges):
    report = audit_report(ledger_and_charges[0])
    table = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [line["experiment"] for line in table] == EXPERIMENTS
    for line, row in zip(table, report.rows):
        assert [int(line[f"{phase}_flops"]) for phase in PHASES] == [row.by_phase[p] for p in PHASES]
        assert int(line["total_flops"]) == row.total and int(line["rerun_flops"]) == row.rerun
        assert int(line["cumulative_flops"]) == row.cumulative
    assert int(table[-1]["remaining_after_flops"]) == report.remaining


def test_markdown_is_one_table_row_per_experiment_plus_a_total(ledger_and_charges):
    report = audit_report(ledger_and_charges[0])
    table = [line for line in report.to_markdown().splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(EXPERIMENTS) + 1  # header, rule, experiments, total
    columns = table[0].count("|")
    assert all(line.count("|") - line.count("\\|") == columns for line in table)
    assert "lora r=4 \\| lr 1e-4" in table[3] and "stopped: budget exhausted at step 60" in table[3]
    assert f"{report.total:.4g}" in table[-1] and str(report.remaining) in report.to_markdown()


def test_json_has_limit_total_remaining_and_each_experiment(ledger_and_charges):
    report = audit_report(ledger_and_charges[0])
    document = json.loads(report.to_json())
    assert (document["limit"], document["total"], document["remaining"]) == (LIMIT, report.total, report.remaining)
    for entry, row in zip(document["experiments"], report.rows, strict=True):
        assert (entry["name"], entry["flops"], entry["by_phase"]) == (row.name, row.total, row.by_phase)


def test_write_creates_the_three_files_and_never_replaces_them_silently(ledger_and_charges, tmp_path):
    report = audit_report(ledger_and_charges[0])
    written = report.write(tmp_path / "audit")
    assert [path.name for path in written] == list(AUDIT_FILES)
    assert written[2].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert written[0].read_text().endswith(report.to_markdown())
    written[1].write_text("the user's own notes")
    with pytest.raises(FileExistsError, match="audit.csv"):
        report.write(tmp_path / "audit")
    assert written[1].read_text() == "the user's own notes"
    report.write(tmp_path / "audit", force=True)
    assert written[1].read_text() == report.to_csv()


def test_an_empty_ledger_audits_to_an_empty_table(tmp_path):
    Ledger(tmp_path / "empty.sqlite", LIMIT).close()
    report = audit_report(tmp_path / "empty.sqlite")
    assert (report.rows, report.total, report.remaining) == ([], 0, LIMIT)
    assert report.plot(tmp_path / "empty.png").stat().st_size > 0


def test_an_inconsistent_ledger_is_not_audited(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, LIMIT) as ledger:
        session = ledger.begin_session("a", model="m", convention="coursework", flop_settings={})
        ledger.charge(session, "train", 10, step=0, tokens=1)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE charges SET flops = 11")
    connection.close()
    with pytest.raises(LedgerError, match="inconsistent"):
        audit_report(path)


def test_the_audit_reads_a_ledger_in_a_read_only_directory(tmp_path):
    """In a forked process that cannot write there (as another user when the tests run as root)."""
    import os
    import shutil
    import tempfile

    from flopcount import Budget

    folder = Path(tempfile.mkdtemp())
    try:
        with Budget(10**12, folder / "ledger.sqlite", "run", "qwen2.5-0.5b") as budget:
            budget.charge("train", 7, step=1)
        os.chmod(folder / "ledger.sqlite", 0o444)
        os.chmod(folder, 0o555)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            try:
                if os.geteuid() == 0:
                    os.setuid(65534)
                message = str(audit_report(folder / "ledger.sqlite").total)
            except BaseException as error:
                message = f"{type(error).__name__}: {error}"
            os.write(write, message.encode())
            os._exit(0)
        os.close(write)
        os.waitpid(child, 0)
        with os.fdopen(read) as pipe:
            assert pipe.read() == "7"
        assert sorted(p.name for p in folder.iterdir()) == ["ledger.sqlite"]
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)
