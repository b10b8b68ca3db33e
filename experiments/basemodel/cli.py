"""``python -m experiments pretrain-base``: build (or find) the ``llmtime-base`` model.

    python -m experiments pretrain-base                     # the demo's base, in the cache directory
    python -m experiments pretrain-base --recipe test --out /tmp/base --steps 100
    python -m experiments run --plan demo --out runs/demo --base-dir /data/llmtime-base

The base is reused when its recipe is unchanged, resumed when a build was interrupted, and
rebuilt when the recipe changed. Its FLOPs go to ``ledger.sqlite`` in the base's directory
(the base's own ledger: it stands in for pretraining, outside every plan's budget).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

from experiments.basemodel.cache import ENV_VAR, default_base_dir, ensure_base
from experiments.basemodel.recipe import RECIPES
from experiments.basemodel.pretrain import read_record


def add_base_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--base-dir``: where the ``llmtime-base`` model source is cached (sets ``$LLMTIME_BASE_DIR``)."""
    parser.add_argument("--base-dir", type=Path, default=None,
                        help=f"directory of the cached llmtime-base model (default ${ENV_VAR}, else "
                             "~/.cache/llmtime-budget/llmtime-base)")


def apply_base_dir(args: argparse.Namespace) -> None:
    """Make ``--base-dir`` the cache of this process (and of any process it starts)."""
    if getattr(args, "base_dir", None) is not None:
        os.environ[ENV_VAR] = str(args.base_dir.expanduser().resolve())


def add_pretrain_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain-base", help="build the llmtime-base model (pretrained on general numeric sequences)",
        description="Build (or find) the llmtime-base model: the tiny Qwen2 architecture pretrained from random "
                    "initialisation on LLMTIME text of general two-variable sequences (oscillators, walks, epidemics; "
                    "never the real data's dynamics), saved with save_pretrained. "
                    "Reused when its recipe is unchanged, resumed after an interruption, rebuilt when the recipe "
                    "changed; its FLOPs go to the ledger.sqlite in its directory.")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="demo",
                        help="demo: the demo plan's base (default); test: the short one the tests build")
    parser.add_argument("--out", type=Path, default=None,
                        help="the base's directory (default: --base-dir, then the cache directory); needed with "
                             "--steps or --seed, which make another recipe")
    add_base_dir_argument(parser)
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's training steps")
    parser.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    parser.add_argument("--rebuild", action="store_true", help="delete a base of ours there and build it again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the base's record as JSON")
    parser.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    recipe = RECIPES[args.recipe]
    overrides = {name: value for name in ("steps", "seed") if (value := getattr(args, name)) is not None}
    if overrides and args.out is None:  # another recipe: never in place of the recipe's own base
        flags = " and ".join(f"--{name}" for name in overrides)
        raise ValueError(f"pretrain-base: {flags} make a base of another recipe; give it a directory of its own "
                         "with --out (the default directory holds the recipe's own base)")
    recipe = replace(recipe, **overrides)
    apply_base_dir(args)
    directory = args.out or args.base_dir or default_base_dir(recipe)
    directory = ensure_base(recipe, directory, progress=not args.no_progress, rebuild=args.rebuild)
    record = read_record(directory)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(describe_record(record, directory))
    return 0


def describe_record(record: dict, directory: Path) -> str:
    """A few lines on a finished base: where, what, FLOPs (ledger and analytic), losses, speed."""
    flops, losses = record["flops"], record["losses"]
    analytic, ledger = flops["analytic"], flops["ledger"]
    return "\n".join([
        f"base {record['name']} (recipe {record['recipe_hash']}): {directory}",
        f"  {record['steps']} steps, {record['tokens']:,} tokens, {record['recipe']['sequences']:,} general "
        f"sequences, seed {record['seed']}",
        f"  FLOPs ({analytic['convention']} convention, full vocabulary): ledger {ledger['total']:.6g} "
        f"(useful {ledger['useful']:.6g}, re-runs {ledger['rerun']:.6g}); analytic count {analytic['total']:.6g}; "
        f"the 14-row head's own arithmetic {analytic['compact_total']:.4g}",
        f"  loss (nats/token): first step {losses['first_train']:.3f}, final training {losses['final_train']:.3f}, "
        f"validation (held-out general sequences) {losses['final_validation']:.3f}",
        f"  built in {record['wall_seconds']:.0f} s of compute at {record['tokens_per_second']:,.0f} tokens/s "
        f"({record['threads']} thread(s))",
    ])


__all__ = ["add_base_dir_argument", "add_pretrain_command", "apply_base_dir", "describe_record"]
