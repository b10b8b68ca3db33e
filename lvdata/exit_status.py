"""The exit statuses every CLI of the project shares (``python -m experiments``, ``flopcount``,
``lvdata``), and the wrapper that turns an error into one line on stderr and its status.

    0    done
    1    an unexpected error (a bug): one line; --debug shows the traceback
    2    usage error (argparse)
    3    bad input: plan, data, model, ledger, run directory (wrong, damaged, or another run's)
    4    stopped by the budget: the plan or run does not fit, or a run stopped when its share ran out
    5    stopped for another reason (a non-finite loss; no run of a stage validated)
    6    the run directory is in use by another process (its pid is named)
    130  interrupted (Ctrl-C): the last finished step is checkpointed; run the same command to resume

Only ``--debug`` (accepted before or after the subcommand) shows a traceback; the status stays the same.

It lives in the lowest layer so that every package may import it; the error types of the
higher layers are passed in (:class:`ErrorKinds`), never imported here.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_BAD_INPUT = 0, 1, 2, 3
EXIT_BUDGET, EXIT_STOPPED, EXIT_BUSY, EXIT_INTERRUPTED = 4, 5, 6, 130
EXIT_STATUSES = __doc__.split("\n\n")[1]  # the table above, for --help epilogs
EPILOG = f"exit status:\n{EXIT_STATUSES}\n\nErrors are one line; --debug shows the traceback."

Errors = tuple[type[BaseException], ...]


class StoppedError(Exception):
    """Work that cannot go on for a reason other than the budget or bad input (exit 5)."""


@dataclass(frozen=True)
class ErrorKinds:
    """A CLI's own error types, by what they mean (``ValueError`` and ``OSError`` are always bad
    input). Matched in the order budget, stopped, busy, bad input, so a ``ValueError`` subclass
    may mean "stopped by the budget"."""

    over_budget: Errors = ()
    stopped: Errors = ()
    busy: Errors = ()
    bad_input: Errors = ()


def exit_status_of(error: BaseException, kinds: ErrorKinds = ErrorKinds()) -> tuple[int, str]:
    """``(exit status, one-line message)`` of ``error``."""
    if isinstance(error, KeyboardInterrupt):
        where = f" ({error})" if str(error) else ""
        return EXIT_INTERRUPTED, f"interrupted{where}: run the same command again to resume"
    if isinstance(error, kinds.over_budget):
        return EXIT_BUDGET, f"stopped by the budget: {error}"
    if isinstance(error, (StoppedError, *kinds.stopped)):
        return EXIT_STOPPED, f"stopped: {error}"
    if isinstance(error, kinds.busy):
        return EXIT_BUSY, f"error: {error}"
    if isinstance(error, (ValueError, OSError, *kinds.bad_input)):
        return EXIT_BAD_INPUT, f"error: {error}"
    return EXIT_UNEXPECTED, (f"unexpected error ({type(error).__name__}: {error}); this is a bug: run again with "
                             "--debug for the traceback and report it")


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace, *, debug: bool,
                prog: str = "", kinds: ErrorKinds = ErrorKinds()) -> int:
    """``command(args)``, with any error mapped by :func:`exit_status_of` to one line on stderr
    (prefixed ``prog: ``) and its exit status; ``debug`` prints the traceback before that line and
    keeps the status (a budget stop is 4 with or without ``--debug``)."""
    try:
        status = command(args)
        if sys.stdout is not None:
            sys.stdout.flush()  # a closed pipe (``| head``) raises here, inside the handling below
        return status
    except BrokenPipeError:  # the reader stopped reading (``| head``): not an error of the command
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush writes nowhere
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as error:
        status, line = exit_status_of(error, kinds)
        if debug:
            traceback.print_exception(error)
        print(f"{prog}: {line}" if prog else line, file=sys.stderr)
        return status


DEBUG_HELP = "show the traceback of an error"


def add_common_options(parser: argparse.ArgumentParser, subparsers: Any = None) -> None:
    """``--debug`` and the exit-status epilog on ``parser`` and on every subcommand already
    registered in ``subparsers``. A subcommand's ``--debug`` defaults to ``SUPPRESS``, so the
    flag given before the subcommand is kept."""
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    _add_epilog(parser)
    for command in (subparsers.choices.values() if subparsers is not None else ()):
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        _add_epilog(command)


def _add_epilog(parser: argparse.ArgumentParser) -> None:
    if parser.formatter_class is argparse.HelpFormatter:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    if "exit status:" not in (parser.epilog or ""):
        parser.epilog = f"{parser.epilog}\n\n{EPILOG}" if parser.epilog else EPILOG


def package_version(distribution: str = "llmtime-budget") -> str:
    """The installed version of ``distribution`` (for ``--version``)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown (not installed)"


__all__ = ["EPILOG", "EXIT_BAD_INPUT", "EXIT_BUDGET", "EXIT_BUSY", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_STATUSES",
           "EXIT_STOPPED", "EXIT_UNEXPECTED", "EXIT_USAGE", "ErrorKinds", "StoppedError", "add_common_options",
           "exit_status_of", "package_version", "run_command"]
