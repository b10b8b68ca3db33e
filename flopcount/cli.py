"""Command line: ``python -m flopcount <command> ...``.

Each subcommand is registered by one ``add_*_command(subparsers)`` function that sets
``func`` (called with the parsed arguments, returns the exit status); adding a command is
one import and one call in ``build_parser``.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from flopcount.audit.cli import add_audit_command
from flopcount.count.components import PROJECTIONS
from flopcount.count.conventions import CONVENTIONS
from flopcount.count.engine import forward_flops, generation_flops
from flopcount.count.setup import DEFAULT_LORA_TARGETS, CountSetup
from flopcount.count.workload import TrainingWorkload, estimate_run, steps_that_fit
from flopcount.count.formatting import format_table, flops_text
from flopcount.count.shape import PRESETS
from flopcount.ledger.sqlite_file import LedgerError
from lvdata.exit_status import ErrorKinds, add_common_options, package_version, run_command

# TypeError: CountSetup's checks of a model it cannot read; LedgerError: a damaged or foreign ledger.
ERROR_KINDS = ErrorKinds(bad_input=(TypeError, LedgerError))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flopcount", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_count_command(subparsers)
    add_plan_command(subparsers)
    add_audit_command(subparsers)
    add_common_options(parser, subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; errors are one line and an exit status of :mod:`lvdata.exit_status` (see --help)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args.func, args, debug=args.debug, prog=f"{parser.prog} {args.command}", kinds=ERROR_KINDS)


def add_count_command(subparsers: Any) -> None:
    """``count``: FLOPs of one forward pass, one training step or one generation."""
    p = subparsers.add_parser("count", help="FLOPs of a forward pass, a training step or a generation",
                              description="Count the FLOPs of one forward pass (--mode forward), one training "
                                          "step (train: (1 + backward multiplier) x forward) or one generation "
                                          "(generate: prefill of --seq-len prompt tokens + KV-cached decoding).")
    _add_model_arguments(p)
    p.add_argument("--seq-len", type=int, required=True, help="tokens per sequence (the prompt in generate mode)")
    p.add_argument("--batch", type=int, default=1, help="sequences (default 1)")
    p.add_argument("--mode", choices=("forward", "train", "generate"), default="forward")
    p.add_argument("--past-len", type=int, default=0, help="forward: tokens already in the KV cache")
    p.add_argument("--logits", choices=("all", "last"), default="all", help="forward: lm_head positions")
    p.add_argument("--new-tokens", type=int, help="generate: tokens to generate (required)")
    p.add_argument("--samples", type=int, default=1, help="generate: samples per prompt")
    p.add_argument("--json", action="store_true", help="print a JSON object (total, by_component, ...)")
    p.set_defaults(func=run_count)


def run_count(args: argparse.Namespace) -> int:
    setup = count_setup(args)
    if args.mode == "generate":
        if args.new_tokens is None:
            raise ValueError("--mode generate needs --new-tokens")
        report: Any = generation_flops(setup, args.seq_len, args.new_tokens, args.samples, args.batch)
    else:
        report = forward_flops(setup, args.seq_len, args.batch, past_len=args.past_len, logits=args.logits)
        if args.mode == "train":
            report = report.scaled(1 + setup.convention.backward_multiplier)
    if args.json:
        print(json.dumps({"mode": args.mode, **report.to_dict()}, indent=2))
    else:
        print(f"mode: {args.mode}\n{report}")
    return 0


def add_plan_command(subparsers: Any) -> None:
    """``plan``: FLOPs of a planned run and its share of a budget."""
    p = subparsers.add_parser("plan", help="FLOPs of a planned run and its share of a budget",
                              description="Estimate a planned run: training steps, validation every k steps, "
                                          "generation for evaluation; its share of --budget and the most steps "
                                          "that fit.")
    _add_model_arguments(p)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--grad-accum-steps", type=int, default=1, help="micro-batches of --batch per optimizer step")
    p.add_argument("--eval-every", type=int, default=0, help="validate every k steps (0: never)")
    p.add_argument("--eval-windows", type=int, default=0, help="validation windows of --seq-len per validation")
    p.add_argument("--gen-series", type=int, default=0, help="series forecast by generation")
    p.add_argument("--gen-prompt-len", type=int, default=0)
    p.add_argument("--gen-new-tokens", type=int, default=0)
    p.add_argument("--gen-samples", type=int, default=1)
    p.add_argument("--budget", type=flops_argument, default=10**17, help="FLOP budget, e.g. 1e17 (default)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    setup = count_setup(args)
    plan = TrainingWorkload(steps=args.steps, batch=args.batch, seq_len=args.seq_len,
                            grad_accum_steps=args.grad_accum_steps, eval_every=args.eval_every,
                            eval_windows=args.eval_windows, gen_series=args.gen_series,
                            gen_prompt_len=args.gen_prompt_len, gen_new_tokens=args.gen_new_tokens,
                            gen_samples=args.gen_samples)
    estimate = estimate_run(setup, plan)
    fit = steps_that_fit(setup, plan, args.budget)
    if args.json:
        print(json.dumps({**estimate.to_dict(), "budget": args.budget, "share": estimate.share(args.budget),
                          "steps_that_fit": fit}, indent=2))
        return 0
    rows = [[phase, flops_text(flops), f"{100 * flops / args.budget:.4f}%"]
            for phase, flops in (("training", estimate.training), ("validation", estimate.validation),
                                 ("generation", estimate.generation), ("total", estimate.total))]
    print(f"{estimate.model} | {estimate.convention} convention | {plan.steps} steps of batch {plan.batch} x "
          f"{plan.seq_len} tokens | per step {flops_text(estimate.per_step)} FLOPs\n")
    print(format_table(["phase", "FLOPs", f"share of {args.budget:.3g}"], rows))
    print(f"\nat most {fit} of its {plan.steps} steps fit in {args.budget:.3g} FLOPs")
    return 0


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help=f"preset ({', '.join(PRESETS)}), config.json path or directory, or hub id")
    p.add_argument("--convention", choices=tuple(CONVENTIONS), default="coursework")
    p.add_argument("--lora-rank", type=int, default=0, help="LoRA rank (0: no LoRA)")
    p.add_argument("--lora-targets", type=_target_list,
                   help=f"comma-separated projections (default q_proj,v_proj; from {','.join(PROJECTIONS)}); "
                        "needs --lora-rank")
    p.add_argument("--lm-head-bias", action="store_true", help="count a trainable lm_head bias")


def count_setup(args: argparse.Namespace) -> CountSetup:
    """The ``CountSetup`` named by the model, convention and LoRA arguments; ``--lora-targets``
    without a ``--lora-rank`` is refused rather than ignored."""
    if args.lora_targets is not None and not args.lora_rank:
        raise ValueError(f"--lora-targets {','.join(args.lora_targets)} needs --lora-rank (rank 0 counts no LoRA)")
    targets = DEFAULT_LORA_TARGETS if args.lora_targets is None else args.lora_targets
    return CountSetup.of(args.model, args.convention, lora_rank=args.lora_rank, lora_targets=targets,
                         lm_head_bias=args.lm_head_bias)


def _target_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def flops_argument(text: str) -> int:
    """Parse ``1e17`` or ``100000000000000000`` exactly (no float rounding)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value.to_integral_value() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number of FLOPs, got {text!r}")
    return int(value)
