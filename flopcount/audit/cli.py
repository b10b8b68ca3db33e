"""``python -m flopcount audit --ledger PATH [--json] [--out DIR [--force]]``.

Prints the audit table as Markdown (or, with ``--json``, an object with ``limit``, ``total``,
``remaining`` and ``experiments``) on stdout; ``--out DIR`` also writes ``audit.md``,
``audit.csv``, ``audit.png`` and ``audit.pdf`` there, refusing to replace existing files unless ``--force``.
Errors (a ledger that cannot be audited, a file that would be replaced) propagate to the
``flopcount`` CLI, which reports them as bad input (exit status 3, :mod:`lvdata.exit_status`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flopcount.audit.table import AUDIT_FILES, audit_report


def add_audit_command(subparsers: Any) -> None:
    """Register ``audit``; its handler is the parser's ``func`` default (see :mod:`flopcount.cli`)."""
    parser = subparsers.add_parser(
        "audit",
        help="FLOPs used by every experiment in a ledger, against the budget",
        description="Print the FLOPs used by every experiment in a ledger, by phase, cumulative and "
        "against the budget, as Markdown (or JSON with --json). --out DIR also writes audit.md, "
        "audit.csv, audit.png and audit.pdf there, never replacing existing files unless --force.",
    )
    parser.add_argument("--ledger", type=Path, required=True, help="the SQLite FLOP ledger")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--out", type=Path, help=f"directory to write {', '.join(AUDIT_FILES)} into")
    parser.add_argument("--force", action="store_true", help="replace existing files in --out")
    parser.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    """Run the audit described by parsed ``args``; return the exit status."""
    report = audit_report(args.ledger)
    written = report.write(args.out, force=args.force) if args.out else []
    print((report.to_json() if args.json else report.to_markdown()).rstrip("\n"))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
