"""Command line: ``python -m lvdata summary [--data PATH] [--tokenizer PATH] [--seed N] [--plot PNG]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lvdata.defaults import default_tokenizer_source, load_dataset
from lvdata.io import DatasetError
from lvdata.summary_view import format_summary, plot_token_lengths
from lvdata.summary import summarize
from lvdata.tokens import TokenizerLoadError, load_tokenizer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lvdata", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="dataset summary and token lengths per trajectory")
    summary.add_argument("--data", help="HDF5 dataset (default: ../shared real data, else simulate())")
    summary.add_argument("--tokenizer", help="tokenizer directory or hub id (default: ../shared Qwen2.5)")
    summary.add_argument("--seed", type=int, default=0, help="split seed (and simulate seed) [0]")
    summary.add_argument("--plot", help="also write a PNG histogram of token lengths here")
    summary.add_argument("--force", action="store_true", help="replace an existing --plot file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.plot and Path(args.plot).exists() and not args.force:
        print(f"error: {args.plot} exists; not overwriting it (pass --force to replace it)", file=sys.stderr)
        return 2
    try:
        dataset = load_dataset(args.data, seed=args.seed)
        tokenizer = load_tokenizer(args.tokenizer or default_tokenizer_source())
    except (DatasetError, TokenizerLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = summarize(dataset, tokenizer, seed=args.seed)
    print(format_summary(summary))
    if args.plot:
        print(f"plot: {plot_token_lengths(summary.token_lengths, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
