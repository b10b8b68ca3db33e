"""``train``: LoRA fine-tuning under a FLOP budget, from the command line.

    python -m experiments.training.cli --model tiny --run-dir runs/demo --experiment demo \\
        --steps 200 --budget 1e17 --ledger runs/ledger.sqlite
    torchrun --nproc_per_node 2 -m experiments.training.cli ...      # DDP (gloo on CPU)

Running the same command again resumes the run directory from its latest checkpoint.
``add_train_command(subparsers)`` registers the same command in a larger CLI; its handler is
the parser's ``func`` default, as in :mod:`flopcount.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from experiments.data import ALPHA_RULES, DataConfig, prepare_data
from experiments.training.distributed import make_accelerator
from experiments.models.loading import TINY_MODEL, load_model_and_tokenizer
from experiments.training.loop import train
from experiments.training.trackers import TRACKERS
from experiments.training.config import LR_SCHEDULES, MIXED_PRECISION, BudgetConfig, TrainConfig
from experiments.training.errors import (  # noqa: F401  (the exit statuses, re-exported)
    EXIT_BAD_INPUT,
    EXIT_BUDGET,
    EXIT_BUSY,
    EXIT_INTERRUPTED,
    EXIT_STATUSES,
    EXIT_STOPPED,
    add_common_options,
    run_command,
)
from flopcount.cli import flops_argument
from flopcount.count.conventions import CONVENTIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` options (every ``TrainConfig``, ``DataConfig`` and ``BudgetConfig`` field)."""
    run = parser.add_argument_group("run")
    run.add_argument("--run-dir", type=Path, required=True, help="checkpoints, metrics.jsonl, run_config.json")
    run.add_argument("--experiment", required=True, help="experiment name in the ledger")
    run.add_argument("--model", default=TINY_MODEL, help="hub id, local model directory, or 'tiny' (default)")
    run.add_argument("--tokenizer", help="tokenizer directory or hub id (default: the model's)")
    run.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is present")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--json", action="store_true", help="print the result as a JSON object")

    budget = parser.add_argument_group("budget")
    budget.add_argument("--budget", type=flops_argument, required=True, help="FLOP limit of the ledger, e.g. 1e17")
    budget.add_argument("--ledger", type=Path, required=True, help="SQLite FLOP ledger (created if missing)")
    budget.add_argument("--convention", choices=tuple(CONVENTIONS), default="coursework")
    budget.add_argument("--allow-partial", action="store_true",
                        help="start even if the budget cannot pay for every step (the run stops cleanly, with a "
                             "checkpoint, when it runs out); by default such a run is refused before it starts")

    defaults = TrainConfig()
    training = parser.add_argument_group("training")
    training.add_argument("--steps", type=int, required=True, help="optimizer steps in total")
    training.add_argument("--batch-size", type=int, default=defaults.batch_size,
                          help="windows per rank per micro-batch (default %(default)s)")
    training.add_argument("--grad-accum-steps", type=int, default=defaults.grad_accum_steps,
                          help="micro-batches per optimizer step, each charged before it runs (default %(default)s)")
    training.add_argument("--context", type=int, default=defaults.context,
                          help="tokens per window (default %(default)s)")
    training.add_argument("--learning-rate", "--lr", type=float, default=defaults.learning_rate,
                          help="peak Adam learning rate (default %(default)s)")
    training.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=defaults.lr_schedule,
                          help="learning-rate schedule after warmup: constant, or linear / cosine decay to 0 at the "
                               "last step (default %(default)s)")
    training.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps,
                          help="optimizer steps of linear warmup from 0 (default %(default)s)")
    training.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=None,
                          help="autocast through accelerate; LoRA weights and Adam state stay float32, FLOP charges "
                               "do not change (default: bf16 on a GPU that supports it, else no)")
    training.add_argument("--lora-rank", type=int, default=defaults.lora_rank, help="default %(default)s")
    training.add_argument("--lora-alpha", type=float, default=None, help="default: the rank (scaling 1)")
    training.add_argument("--lora-targets", default=",".join(defaults.lora_targets),
                          help="comma-separated projections (default %(default)s)")
    training.add_argument("--lm-head-bias", action="store_true", help="also train an lm_head bias")
    training.add_argument("--eval-every", type=int, default=defaults.eval_every,
                          help="validate every k optimizer steps and after the last; 0: never (default %(default)s)")
    training.add_argument("--eval-windows", type=int, default=None, help="default: every validation window")
    training.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every,
                          help="default %(default)s")
    training.add_argument("--keep-checkpoints", type=int, default=defaults.keep_checkpoints,
                          help="newest checkpoints kept (default %(default)s)")
    training.add_argument("--seed", type=int, default=defaults.seed, help="default %(default)s")
    training.add_argument("--report-to", nargs="+", choices=(*TRACKERS, "none"), default=["none"],
                          help="also log every metric and the FLOPs charged to these accelerate trackers, under "
                               "RUN_DIR/trackers (default: none)")
    training.add_argument("--max-grad-norm", type=float, default=None,
                          help="clip the global gradient norm (default: no)")

    data_defaults = DataConfig()
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="HDF5 trajectories (default: simulate --simulate-systems systems)")
    data.add_argument("--simulate-systems", type=int, default=data_defaults.simulate_systems)
    data.add_argument("--simulate-seed", type=int, default=data_defaults.simulate_seed)
    data.add_argument("--split-seed", type=int, default=data_defaults.split_seed)
    data.add_argument("--test-ids", help="comma-separated trajectory ids forming the test split")
    data.add_argument("--alpha-rule", choices=ALPHA_RULES, default=data_defaults.alpha_rule)
    data.add_argument("--precision", type=int, default=data_defaults.precision)


def add_train_command(subparsers: Any) -> None:
    """Register ``train`` (handler: ``run_train``)."""
    parser = subparsers.add_parser("train", help="LoRA fine-tuning under a FLOP budget",
                                   description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.set_defaults(func=run_train)


def configs(args: argparse.Namespace) -> tuple[TrainConfig, DataConfig, BudgetConfig]:
    """The three configurations the parsed arguments describe."""
    if args.steps is not None and args.warmup_steps > args.steps:
        raise ValueError(f"--warmup-steps {args.warmup_steps} is more than --steps {args.steps}: the learning rate "
                         "would never reach --learning-rate")
    targets = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
    test_ids = None if args.test_ids is None else tuple(int(i) for i in args.test_ids.split(","))
    train_config = TrainConfig(
        experiment=args.experiment, steps=args.steps, batch_size=args.batch_size, context=args.context,
        learning_rate=args.learning_rate, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
        lora_targets=targets, lm_head_bias=args.lm_head_bias, eval_every=args.eval_every,
        eval_windows=args.eval_windows, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints, seed=args.seed, max_grad_norm=args.max_grad_norm,
        grad_accum_steps=args.grad_accum_steps, mixed_precision=args.mixed_precision, lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps, report_to=tuple(args.report_to),
    )  # fmt: skip
    data_config = DataConfig(path=args.data, simulate_systems=args.simulate_systems, simulate_seed=args.simulate_seed,
                             split_seed=args.split_seed, test_ids=test_ids, alpha_rule=args.alpha_rule,
                             precision=args.precision)
    budget = BudgetConfig(limit=args.budget, ledger=args.ledger, convention=args.convention,
                          require_fit=not args.allow_partial)
    return train_config, data_config, budget


def exit_status(result) -> int:
    """The exit status of a finished ``train`` call: 0, or why it stopped."""
    if result.status != "stopped":
        return 0
    return EXIT_BUDGET if result.stopped_by_budget else EXIT_STOPPED


def run_train(args: argparse.Namespace) -> int:
    """Load the model and data, train, print the result; the exit status says whether the
    run finished (0), the budget stopped it (4) or something else did (5)."""
    train_config, data_config, budget = configs(args)
    accelerator = make_accelerator(cpu=True if args.cpu else None, mixed_precision=train_config.mixed_precision)
    loaded = load_model_and_tokenizer(args.model, args.tokenizer)
    data = prepare_data(data_config, loaded.tokenizer)
    result = train(loaded.model, data, train_config, args.run_dir, budget, accelerator=accelerator,
                   progress=not args.no_progress)
    if accelerator.is_main_process:
        if args.json:
            print(json.dumps({key: str(value) if isinstance(value, Path) else value
                              for key, value in asdict(result).items()}, indent=2))
        else:
            print(f"{train_config.experiment}: {result.status} after step {result.steps_done}"
                  f"{f' ({result.stop_reason})' if result.stop_reason else ''}; checkpoint {result.checkpoint}")
    return exit_status(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.training.cli", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    add_common_options(parser)
    args = parser.parse_args(argv)
    return run_command(run_train, args, debug=args.debug, prog=parser.prog)


if __name__ == "__main__":
    sys.exit(main())
