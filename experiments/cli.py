"""``python -m experiments``: the researcher's commands.

    python -m experiments run --plan demo --out runs/demo            # the whole plan, then report.md
    python -m experiments run --plan coursework --dry-run [--json]   # projected FLOPs, no weights
    python -m experiments sweep --plan coursework --out runs/cw      # one stage (its sources first)
    python -m experiments train --model tiny --steps 50 ...          # one standalone training run
    python -m experiments report --out runs/demo                     # rewrite report.md
    python -m experiments pretrain-base                              # build the demo's llmtime-base model

Every stage command runs the plan's stage of that kind into ``--out`` (the stages it takes its
setting from must have finished there); ``run`` runs them all in order and resumes an
interrupted run directory. ``--set section.key=value`` (repeatable) changes one plan value,
checked exactly like the TOML; ``--data`` and ``--model`` point at your own files. The data
file is found from ``--data``, then ``$LLMTIME_DATA``, then the plan's ``[data]`` path; a path
given by ``--data`` or ``$LLMTIME_DATA`` must exist (the plan's ``fallback`` does not apply to it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from experiments.pipeline.plan import STAGE_KINDS, PlanError, load_plan, shipped_plans
from experiments.training.cli import EXIT_BUDGET, EXIT_STOPPED, add_train_command
from experiments.training.errors import add_common_options, run_command
from experiments.basemodel.cli import add_base_dir_argument, add_pretrain_command, apply_base_dir
from lvdata import DatasetError
from lvdata.exit_status import package_version

DATA_ENV = "LLMTIME_DATA"

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
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)

    run = subparsers.add_parser("run", help="run a whole plan in order (or project it with --dry-run)",
                                description="Run every stage of a plan under one budget and one ledger, "
                                            "then write report.md. Re-running resumes.")
    _plan_arguments(run, out_required=False)
    run.add_argument("--dry-run", action="store_true", help="print the projected FLOPs of every stage and exit")
    run.add_argument("--json", action="store_true",
                     help="print a JSON object: the projection (--dry-run) or every stage's status and FLOPs")
    run.set_defaults(func=_run)

    for kind, text in _STAGE_HELP.items():
        stage = subparsers.add_parser(kind, help=text, description=f"Run the plan's {kind} stage: {text}.")
        _plan_arguments(stage, out_required=True)
        stage.add_argument("--stage", help=f"the stage's name, if the plan has several of kind {kind!r}")
        stage.add_argument("--json", action="store_true", help="print every stage's status and FLOPs as JSON")
        stage.set_defaults(func=_run_stage, kind=kind)

    add_train_command(subparsers)
    add_pretrain_command(subparsers)

    report = subparsers.add_parser("report", help="write report.md of a run directory",
                                   description="Regenerate report.md and its figures from the run "
                                               "directory's ledger and results.json.")
    report.add_argument("--out", type=Path, required=True, help="the run directory")
    report.set_defaults(func=_report)
    add_common_options(parser, subparsers)
    return parser


def _plan_arguments(parser: argparse.ArgumentParser, out_required: bool) -> None:
    parser.add_argument("--plan", required=True,
                        help=f"a shipped plan ({', '.join(shipped_plans())}) or a path to a plan TOML file")
    parser.add_argument("--out", type=Path, required=out_required, help="the run directory (created if missing)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one plan value (TOML syntax; repeatable), e.g. training.learning_rate=2e-3")
    parser.add_argument("--data", help=f"the HDF5 trajectories (default: ${DATA_ENV}, then the plan's [data] path)")
    parser.add_argument("--model", help="a hub id or a local model directory (default: the plan's [model] source)")
    add_base_dir_argument(parser)


DATA_SEARCH = f"the data file is found from --data, then ${DATA_ENV}, then the plan's [data] path"


def plan_of(args: argparse.Namespace):
    """The plan with ``--data`` (or ``$LLMTIME_DATA``), ``--model`` and every ``--set`` applied.
    A data file named by ``--data`` or ``$LLMTIME_DATA`` must exist; one named by the plan must
    exist unless the plan's ``fallback = "simulate"``. ``DatasetError`` says where the path came from."""
    overrides = list(args.overrides)
    data = data_path_of(args)
    if data:
        overrides.append(f"data.path={json.dumps(data)}")
    if args.model:
        model = Path(args.model).expanduser()
        overrides.append(f"model.source={json.dumps(str(model.resolve()) if model.exists() else args.model)}")
    plan = load_plan(args.plan, overrides)
    path = plan.data.path
    if not data and path is not None and not Path(path).exists() and plan.data.fallback == "error":
        origin = ("--set data.path" if any(o.strip().startswith("data.path") for o in args.overrides)
                  else "the plan's [data] path")
        raise DatasetError(f"{path} (from {origin}): file not found; pass --data PATH or set ${DATA_ENV}, or set "
                           f"fallback = \"simulate\" in the plan's [data] to simulate instead ({DATA_SEARCH})")
    return plan


def data_path_of(args: argparse.Namespace) -> str | None:
    """The data file of ``--data``, else of ``$LLMTIME_DATA`` (resolved), else None (the plan's)."""
    for origin, value in (("--data", args.data), (f"${DATA_ENV}", os.environ.get(DATA_ENV))):
        if value:
            path = Path(value).expanduser().resolve()
            if not path.exists():  # (one that exists but is no HDF5 file is refused when it loads)
                raise DatasetError(f"{path} (from {origin}): file not found; {DATA_SEARCH}, and a path given by "
                                   "--data or the variable is never replaced by simulated data")
            return str(path)
    return None


def _summary(plan, out: Path) -> dict:
    """What ran: every stage's status and the FLOPs the ledger holds for it."""
    from experiments.pipeline.report import stage_flops
    from experiments.pipeline.results import LEDGER_FILE, Results
    from flopcount import audit_report

    audit, stages = audit_report(out / LEDGER_FILE), Results.read(out).document["stages"]
    return {"plan": plan.name, "out": str(out), "limit": audit.limit, "spent": audit.total,
            "stages": [{"name": name, "kind": record.get("kind"), "status": record.get("status"),
                        "flops": stage_flops(audit, name),
                        "runs": [{"experiment": e["experiment"], "status": e.get("status"),
                                  "stop_reason": e.get("stop_reason"),
                                  "stopped_by_budget": e.get("stopped_by_budget", False)}
                                 for e in record.get("runs", [])]}
                       for name, record in stages.items()]}


def _finish(plan, out: Path, as_json: bool) -> int:
    """Print what ran (``--json``: the summary) and the exit status of the runs' outcome."""
    summary = _summary(plan, out)
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"report: {out / 'report.md'}")
    stopped = [run for stage in summary["stages"] for run in stage["runs"] if run["status"] == "stopped"]
    if any(run["stopped_by_budget"] for run in stopped):
        return EXIT_BUDGET
    return EXIT_STOPPED if stopped else 0


def _run(args: argparse.Namespace) -> int:
    from experiments.pipeline.runner import dry_run, run_plan

    plan = plan_of(args)
    if args.dry_run:
        projection = dry_run(plan)
        if args.json:
            print(json.dumps(projection.to_dict(), indent=2))
        else:
            print(f"plan {plan.name!r}: {plan.description}\n\n{projection.to_markdown()}")
            print("\nfits the budget" if projection.fits else "\nDOES NOT FIT the budget")
        return 0 if projection.fits else EXIT_BUDGET
    if args.out is None:
        raise PlanError("--out is required unless --dry-run is given")
    if run_plan(plan, args.out, progress=not args.no_progress) is None:
        return 0  # a rank other than 0 of a multi-process run: rank 0 reports
    return _finish(plan, args.out, args.json)


def _run_stage(args: argparse.Namespace) -> int:
    from experiments.pipeline.runner import run_plan

    plan = plan_of(args)
    candidates = [stage.name for stage in plan.stages if stage.kind == args.kind]
    if args.stage:
        if args.stage not in candidates:
            raise PlanError(f"plan {plan.name!r} has no {args.kind} stage named {args.stage!r}; it has {candidates}")
        candidates = [args.stage]
    if len(candidates) != 1:
        raise PlanError(f"plan {plan.name!r} has {len(candidates)} stages of kind {args.kind!r} ({candidates}): "
                        "name one with --stage")
    if run_plan(plan, args.out, only=candidates, progress=not args.no_progress) is None:
        return 0  # a rank other than 0 of a multi-process run: rank 0 reports
    return _finish(plan, args.out, args.json)


def _report(args: argparse.Namespace) -> int:
    from experiments.pipeline.report import write_report
    from experiments.pipeline.results import Results
    from experiments.training.run_lock import DirectoryLock

    Results.read(args.out)  # a run directory (refused untouched otherwise), and not one a run is writing to
    with DirectoryLock(args.out):
        print(write_report(args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command; map the project's errors to one line and an exit status (see --help)."""
    from experiments.pipeline.runner import PlanOverBudget

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    apply_base_dir(args)
    return run_command(args.func, args, debug=args.debug, over_budget=(PlanOverBudget,))


__all__ = ["STAGE_KINDS", "build_parser", "main"]
