"""Every project error becomes one line and a distinct exit status; --debug keeps the traceback."""

from __future__ import annotations

import argparse
import json

import pytest

from experiments.training.errors import (
    EXIT_BAD_INPUT,
    EXIT_BUDGET,
    EXIT_BUSY,
    EXIT_INTERRUPTED,
    EXIT_STATUSES,
    EXIT_UNEXPECTED,
    exit_status_of,
    run_command,
)
from experiments.training.interrupts import RunInterrupted
from experiments.training.run_dir import ConfigMismatch
from experiments.training.run_lock import DirectoryBusy
from flopcount import LedgerError
from lvdata import DatasetError


class OverBudget(ValueError):
    pass


@pytest.mark.parametrize(("error", "status", "start"), [
    (DatasetError("lv.h5: not an HDF5 file"), EXIT_BAD_INPUT, "error: lv.h5"),
    (ConfigMismatch("run belongs to another configuration"), EXIT_BAD_INPUT, "error: run belongs"),
    (LedgerError("ledger.sqlite: damaged"), EXIT_BAD_INPUT, "error: ledger.sqlite"),
    (OSError("Unable to synchronously open file (truncated file)"), EXIT_BAD_INPUT, "error: Unable"),
    (OverBudget("the plan does not fit"), EXIT_BUDGET, "stopped by the budget: the plan"),
    (DirectoryBusy("runs/x is in use by another run (pid 7)"), EXIT_BUSY, "error: runs/x is in use"),
    (RunInterrupted("lora: interrupted after step 3", step=3), EXIT_INTERRUPTED, "interrupted (lora: interrupted"),
    (KeyError("stages"), EXIT_UNEXPECTED, "unexpected error (KeyError: 'stages'); this is a bug"),
])
def test_each_error_maps_to_its_status_and_one_line(error, status, start):
    mapped, line = exit_status_of(error, over_budget=(OverBudget,))
    assert (mapped, line.startswith(start), "\n" in line) == (status, True, False), line


def test_the_statuses_are_distinct_and_documented():
    statuses = (EXIT_UNEXPECTED, EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_BUSY, EXIT_INTERRUPTED)
    assert len(set(statuses)) == len(statuses)
    assert all(f"    {status}  " in EXIT_STATUSES or f"    {status} " in EXIT_STATUSES for status in statuses)


def test_run_command_prints_one_line_and_debug_raises(capsys):
    def command(args: argparse.Namespace) -> int:
        json.loads('{"stages": ')  # a truncated document: a bare JSONDecodeError without context
        return 0

    assert run_command(command, argparse.Namespace(), debug=False, prog="tool") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("tool: error: Expecting value") and err.count("\n") == 1 and "Traceback" not in err
    assert run_command(command, argparse.Namespace(), debug=True) == EXIT_BAD_INPUT  # --debug keeps the status
    assert "Traceback" in capsys.readouterr().err
