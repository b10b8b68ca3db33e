"""``python -m experiments``: the researcher's commands.

    python -m experiments run --plan demo --out runs/demo            # the whole plan, then report.md
    python -m experiments run --plan coursework --dry-run [--json]   # projected FLOPs, no weights
    python -m experiments sweep --plan coursework --out runs/cw      # one stage (its sources first)
    python -m experiments train --model tiny --steps 50 ...          # one standalone training run
    python -m experiments report --out runs/demo                     # rewrite report.md
    python -m experiments pretrain-base                              # build the demo's llmtime-base model

Every stage command runs the plan's stage of that kind into ``--out`` (the stages it takes its
setting from must have finished there); ``run`` runs them all in order and resumes an
interrupted run directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from experiments.pipeline.plan import STAGE_KINDS, PlanError, load_plan, shipped_plans
from experiments.models.base_cli import add_base_dir_argument, add_pretrain_command, apply_base_dir
from experiments.training.cli import add_train_command
from flopcount import BudgetExceeded, LedgerError, PlanDoesNotFit

_STAGE_HELP = {
    "baseline": "the untrained model and the non-LLM baselines forecast the test split",
    "sweep": "the learning-rate x LoRA-rank grid (one training run per cell)",
    "context": "the context-length sweep with the best grid setting",
    "final": "the final run with the best context's setting",
    "evaluate": "forecast the test split with the final adapter, against the baselines",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)

    run = subparsers.add_parser("run", help="run a whole plan in order (or project it with --dry-run)",
                                description="Run every stage of a plan under one budget and one ledger, "
                                            "then write report.md. Re-running resumes.")
    _plan_arguments(run, out_required=False)
    run.add_argument("--dry-run", action="store_true", help="print the projected FLOPs of every stage and exit")
    run.add_argument("--json", action="store_true", help="with --dry-run: print a JSON object")
    run.set_defaults(func=_run)

    for kind, text in _STAGE_HELP.items():
        stage = subparsers.add_parser(kind, help=text, description=f"Run the plan's {kind} stage: {text}.")
        _plan_arguments(stage, out_required=True)
        stage.add_argument("--stage", help=f"the stage's name, if the plan has several of kind {kind!r}")
        stage.set_defaults(func=_run_stage, kind=kind)

    add_train_command(subparsers)
    add_pretrain_command(subparsers)

    report = subparsers.add_parser("report", help="write report.md of a run directory",
                                   description="Regenerate report.md and its figures from the run "
                                               "directory's ledger and results.json.")
    report.add_argument("--out", type=Path, required=True, help="the run directory")
    report.set_defaults(func=_report)
    return parser


def _plan_arguments(parser: argparse.ArgumentParser, out_required: bool) -> None:
    parser.add_argument("--plan", required=True,
                        help=f"a shipped plan ({', '.join(shipped_plans())}) or a path to a plan TOML file")
    parser.add_argument("--out", type=Path, required=out_required, help="the run directory (created if missing)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_base_dir_argument(parser)


def _run(args: argparse.Namespace) -> int:
    from experiments.pipeline.runner import dry_run, run_plan

    plan = load_plan(args.plan)
    if args.dry_run:
        projection = dry_run(plan)
        if args.json:
            print(json.dumps(projection.to_dict(), indent=2))
        else:
            print(f"plan {plan.name!r}: {plan.description}\n\n{projection.to_markdown()}")
            print("\nfits the budget" if projection.fits else "\nDOES NOT FIT the budget")
        return 0 if projection.fits else 1
    if args.out is None:
        raise SystemExit("error: --out is required unless --dry-run is given")
    run_plan(plan, args.out, progress=not args.no_progress)
    print(f"report: {args.out / 'report.md'}")
    return 0


def _run_stage(args: argparse.Namespace) -> int:
    from experiments.pipeline.runner import run_plan

    plan = load_plan(args.plan)
    candidates = [stage.name for stage in plan.stages if stage.kind == args.kind]
    if args.stage:
        if args.stage not in candidates:
            raise PlanError(f"plan {plan.name!r} has no {args.kind} stage named {args.stage!r}; it has {candidates}")
        candidates = [args.stage]
    if len(candidates) != 1:
        raise PlanError(f"plan {plan.name!r} has {len(candidates)} stages of kind {args.kind!r} ({candidates}): "
                        "name one with --stage")
    run_plan(plan, args.out, only=candidates, progress=not args.no_progress)
    return 0


def _report(args: argparse.Namespace) -> int:
    from experiments.pipeline.report import write_report

    print(write_report(args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    apply_base_dir(args)
    try:
        return args.func(args)
    except (PlanError, PlanDoesNotFit, BudgetExceeded, LedgerError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


__all__ = ["STAGE_KINDS", "build_parser", "main"]
