"""The exit-status table every CLI shares: each kind of error maps to its own status and one line."""

from __future__ import annotations

import argparse

import pytest

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
    exit_status_of,
    run_command,
)


class Busy(RuntimeError):
    pass


class OverBudget(ValueError):
    pass


KINDS = ErrorKinds(over_budget=(OverBudget,), busy=(Busy,))


@pytest.mark.parametrize(("error", "status", "start"), [
    (ValueError("lv.h5: not an HDF5 file"), EXIT_BAD_INPUT, "error: lv.h5"),
    (FileExistsError("audit.md exists"), EXIT_BAD_INPUT, "error: audit.md"),
    (OverBudget("does not fit"), EXIT_BUDGET, "stopped by the budget: does not fit"),
    (StoppedError("no run validated"), EXIT_STOPPED, "stopped: no run validated"),
    (Busy("in use by pid 7"), EXIT_BUSY, "error: in use"),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted: run the same command"),
    (KeyError("stages"), EXIT_UNEXPECTED, "unexpected error (KeyError: 'stages'); this is a bug"),
])
def test_each_kind_of_error_has_its_status_and_one_line(error, status, start):
    mapped, line = exit_status_of(error, KINDS)
    assert (mapped, line.startswith(start), "\n" in line) == (status, True, False), line


def test_the_statuses_are_distinct_and_each_is_in_the_table():
    statuses = (0, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_STOPPED, EXIT_BUSY, EXIT_INTERRUPTED)
    assert len(set(statuses)) == len(statuses)
    assert [int(line.split()[0]) for line in EXIT_STATUSES.splitlines()] == sorted(statuses)


def test_run_command_prints_one_line_and_debug_adds_the_traceback(capsys):
    def command(args: argparse.Namespace) -> int:
        raise StoppedError("stage 'grid': no run has a validation loss")

    assert run_command(command, argparse.Namespace(), debug=False, prog="tool") == EXIT_STOPPED
    assert capsys.readouterr().err == "tool: stopped: stage 'grid': no run has a validation loss\n"
    assert run_command(command, argparse.Namespace(), debug=True, prog="tool") == EXIT_STOPPED
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("tool: stopped: stage 'grid': no run has a validation loss\n")


@pytest.mark.parametrize("error, status", [(ValueError("bad plan"), 3), (KeyboardInterrupt(), 130)])
def test_debug_keeps_every_handled_errors_exit_status(error, status, capsys):
    def command(args: argparse.Namespace) -> int:
        raise error

    assert run_command(command, argparse.Namespace(), debug=True) == status
    assert "Traceback" in capsys.readouterr().err


def test_debug_is_accepted_before_or_after_a_subcommand_and_every_help_has_the_table():
    parser = argparse.ArgumentParser(prog="tool")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("go", description="Go.")
    add_common_options(parser, commands)
    assert parser.parse_args(["go"]).debug is False
    assert parser.parse_args(["--debug", "go"]).debug is True
    assert parser.parse_args(["go", "--debug"]).debug is True
    assert EPILOG in parser.format_help() and EPILOG in commands.choices["go"].format_help()
    assert "    130  interrupted" in commands.choices["go"].format_help()  # the table's layout kept
