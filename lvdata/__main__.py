"""Command line: ``python -m lvdata summary [--data PATH] [--tokenizer PATH] [--seed N] [--plot PNG]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lvdata.defaults import default_tokenizer_source, load_dataset
from lvdata.exit_status import add_common_options, run_command
from lvdata.summary_view import format_summary, plot_token_lengths
from lvdata.summary import summarize
from lvdata.tokens import load_tokenizer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lvdata", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="dataset summary and token lengths per trajectory")
    summary.add_argument("--data", help="HDF5 dataset (default: ../shared real data, else simulate())")
    summary.add_argument("--tokenizer", help="tokenizer directory or hub id (default: ../shared Qwen2.5)")
    summary.add_argument("--seed", type=int, default=0, help="split seed (and simulate seed) [0]")
    summary.add_argument("--plot", help="also write a PNG histogram of token lengths here")
    summary.add_argument("--force", action="store_true", help="replace an existing --plot file")
    summary.set_defaults(func=run_summary)
    add_common_options(parser, commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; errors are one line and an exit status of :mod:`lvdata.exit_status` (see --help)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args.func, args, debug=args.debug, prog=f"{parser.prog} {args.command}")


def run_summary(args: argparse.Namespace) -> int:
    """Print the dataset summary (and write the --plot PNG); return the exit status."""
    if args.plot and Path(args.plot).exists() and not args.force:
        raise FileExistsError(f"{args.plot} exists; not overwriting it (pass --force to replace it)")
    dataset = load_dataset(args.data, seed=args.seed)
    tokenizer = load_tokenizer(args.tokenizer or default_tokenizer_source())
    summary = summarize(dataset, tokenizer, seed=args.seed)
    print(format_summary(summary))
    if args.plot:
        print(f"plot: {plot_token_lengths(summary.token_lengths, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
