"""``python -m flopcount audit``: JSON or Markdown on stdout, the report files, clear refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flopcount.audit.table import AUDIT_FILES, audit_report
from lvdata.exit_status import EXIT_BAD_INPUT

REPO_ROOT = Path(__file__).resolve().parents[3]


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
    assert again.returncode == EXIT_BAD_INPUT and "not overwriting" in again.stderr


def test_cli_prints_markdown_and_refuses_a_foreign_file(ledger_and_charges, tmp_path):
    markdown = run_cli("--ledger", ledger_and_charges[0])
    assert markdown.returncode == 0 and markdown.stdout.startswith("| # | experiment |")
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a ledger")
    refused = run_cli("--ledger", foreign)
    assert refused.returncode == EXIT_BAD_INPUT and "not an SQLite database" in refused.stderr and str(foreign) in refused.stderr
