"""The project's errors as one line on stderr and a distinct exit status, for every CLI.

    0    done
    1    an unexpected error (a bug): one line; --debug shows the traceback
    2    usage error (argparse)
    3    bad input: plan, data, model, ledger, run directory (wrong, damaged, or another run's)
    4    stopped by the budget: the plan or run does not fit, or a run stopped when its share ran out
    5    stopped for another reason (a non-finite loss)
    6    the run directory is in use by another process (its pid is named)
    130  interrupted (Ctrl-C): the last finished step is checkpointed; run the same command to resume

Only ``--debug`` shows a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from experiments.training.run_lock import DirectoryBusy
from flopcount import BudgetExceeded, LedgerError, PlanDoesNotFit

EXIT_UNEXPECTED, EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_STOPPED, EXIT_BUSY, EXIT_INTERRUPTED = 1, 3, 4, 5, 6, 130
EXIT_STATUSES = __doc__.split("\n\n")[1]  # the table above, for --help epilogs


def exit_status_of(error: BaseException, over_budget: tuple[type[BaseException], ...] = ()) -> tuple[int, str]:
    """``(exit status, one-line message)`` of ``error``. ``over_budget``: more error types that
    mean "stopped by the budget" (matched before bad input, so a ``ValueError`` subclass may be one)."""
    if isinstance(error, KeyboardInterrupt):
        where = f" ({error})" if str(error) else ""
        return EXIT_INTERRUPTED, f"interrupted{where}: run the same command again to resume"
    if isinstance(error, (PlanDoesNotFit, BudgetExceeded, *over_budget)):
        return EXIT_BUDGET, f"stopped by the budget: {error}"
    if isinstance(error, DirectoryBusy):
        return EXIT_BUSY, f"error: {error}"
    if isinstance(error, (ValueError, OSError, LedgerError)):
        return EXIT_BAD_INPUT, f"error: {error}"
    return EXIT_UNEXPECTED, (f"unexpected error ({type(error).__name__}: {error}); this is a bug: run again with "
                             "--debug for the traceback and report it")


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace, *, debug: bool,
                prog: str = "", over_budget: tuple[type[BaseException], ...] = ()) -> int:
    """``command(args)``, with any error mapped by :func:`exit_status_of` to one line on stderr
    (prefixed ``prog: ``) and its exit status; with ``debug`` the error propagates (traceback)."""
    try:
        return command(args)
    except (Exception, KeyboardInterrupt) as error:
        if debug:
            raise
        status, line = exit_status_of(error, over_budget)
        print(f"{prog}: {line}" if prog else line, file=sys.stderr)
        return status


__all__ = ["EXIT_BAD_INPUT", "EXIT_BUDGET", "EXIT_BUSY", "EXIT_INTERRUPTED", "EXIT_STATUSES", "EXIT_STOPPED",
           "EXIT_UNEXPECTED", "exit_status_of", "run_command"]
