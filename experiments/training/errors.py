"""The project's errors as one line on stderr and a distinct exit status: the table and the
wrapper of :mod:`lvdata.exit_status` (shared with the ``flopcount`` and ``lvdata`` CLIs), with
the error types of the experiments filled in. See ``lvdata.exit_status.EXIT_STATUSES``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from experiments.training.run_lock import DirectoryBusy
from flopcount import BudgetExceeded, LedgerError, PlanDoesNotFit
from lvdata import exit_status as _shared
from lvdata.exit_status import (
    EPILOG,
    EXIT_BAD_INPUT,
    EXIT_BUDGET,
    EXIT_BUSY,
    EXIT_INTERRUPTED,
    EXIT_STATUSES,
    EXIT_STOPPED,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    ErrorKinds,
    StoppedError,
    add_common_options,
)


class NothingToSelect(StoppedError):
    """A stage cannot select a setting: none of its runs has the validation loss to select by (exit 5)."""


def experiment_kinds(over_budget: tuple[type[BaseException], ...] = ()) -> ErrorKinds:
    """The experiments' error types by meaning; ``over_budget``: more types meaning "stopped by the budget"."""
    return ErrorKinds(over_budget=(PlanDoesNotFit, BudgetExceeded, *over_budget), busy=(DirectoryBusy,),
                      bad_input=(LedgerError,))


def exit_status_of(error: BaseException, over_budget: tuple[type[BaseException], ...] = ()) -> tuple[int, str]:
    """``(exit status, one-line message)`` of ``error`` (:func:`lvdata.exit_status.exit_status_of`)."""
    return _shared.exit_status_of(error, experiment_kinds(over_budget))


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace, *, debug: bool,
                prog: str = "", over_budget: tuple[type[BaseException], ...] = ()) -> int:
    """``command(args)`` with any error mapped to one line and its exit status (:func:`exit_status_of`)."""
    return _shared.run_command(command, args, debug=debug, prog=prog, kinds=experiment_kinds(over_budget))


__all__ = ["EPILOG", "EXIT_BAD_INPUT", "EXIT_BUDGET", "EXIT_BUSY", "EXIT_INTERRUPTED", "EXIT_STATUSES", "EXIT_STOPPED",
           "EXIT_UNEXPECTED", "EXIT_USAGE", "NothingToSelect", "StoppedError", "add_common_options", "exit_status_of",
           "experiment_kinds", "run_command"]
