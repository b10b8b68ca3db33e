"""The audit report: its totals equal the ledger's; Markdown, CSV, JSON, PNG and the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flopcount.audit.table import AUDIT_FILES, audit_report
from flopcount.ledger.ledger import Ledger, LedgerError
from flopcount.ledger.sqlite_file import PHASES

REPO_ROOT = Path(__file__).resolve().parents[3]
LIMIT = 10**16
EXPERIMENTS = ["baseline", "lora r=4 | lr 1e-4", "context-768"]


@pytest.fixture(scope="module")
def ledger_and_charges(tmp_path_factory):
    """A ledger with three experiments; the second is killed once and resumed from step 30.

    Returns the path and the list of (experiment, phase, step, flops, tokens, is_rerun) the
    test itself charged, from which every expected figure is computed.
    """
    path = tmp_path_factory.mktemp("audit") / "ledger.sqlite"
    rng = random.Random(3)
    charged = []
    with Ledger(path, LIMIT) as ledger:

        def run(name, steps, session_note=""):
            session = ledger.begin_session(name, model="qwen2.5-0.5b", convention="coursework", flop_settings={})
            for step in steps:
                for phase in PHASES if step % 10 == 0 else ("train",):
                    flops, tokens = rng.randrange(10**11, 10**12), rng.randrange(1, 5000)
                    charge = ledger.charge(session, phase, flops, step=step, tokens=tokens)
                    charged.append((name, phase, step, flops, tokens, charge.is_rerun))
            return session

        ledger.end_session(run("baseline", [0]), "finished")
        run("lora r=4 | lr 1e-4", range(0, 45))  # killed: never ended
        ledger.end_session(run("lora r=4 | lr 1e-4", range(30, 60)), "stopped", "budget exhausted at step 60")
        ledger.end_session(run("context-768", range(0, 20)), "failed", "ValueError: bad batch")
    return path, charged


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


def run_cli(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "flopcount", "audit", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_cli_prints_json_and_writes_the_report_files(ledger_and_charges, tmp_path):
    path = ledger_and_charges[0]
    result = run_cli("--ledger", path, "--json", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {"limit", "total", "remaining", "experiments"} <= document.keys()
    assert {"name", "flops", "by_phase"} <= document["experiments"][0].keys()
    assert document["total"] == audit_report(path).total
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(AUDIT_FILES)
    again = run_cli("--ledger", path, "--out", tmp_path / "out")
    assert again.returncode == 2 and "not overwriting" in again.stderr


def test_cli_prints_markdown_and_refuses_a_foreign_file(ledger_and_charges, tmp_path):
    markdown = run_cli("--ledger", ledger_and_charges[0])
    assert markdown.returncode == 0 and markdown.stdout.startswith("| # | experiment |")
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a ledger")
    refused = run_cli("--ledger", foreign)
    assert refused.returncode == 2 and "not an SQLite database" in refused.stderr and str(foreign) in refused.stderr
