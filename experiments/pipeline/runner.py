"""Run a plan end to end under one budget and one ledger.

    projection = dry_run(load_plan("coursework"))               # FLOPs per stage, no weights
    results = run_plan(load_plan("demo"), Path("runs/demo"))    # every stage, then report.md

A run directory holds ``ledger.sqlite`` (every FLOP, all stages), ``results.json`` (what each
stage decided and measured), ``stages/<stage>/...`` (checkpoints, metrics, forecasts) and
``report.md`` with its figures. Before any work the planner projects every stage and a plan
that cannot fit what is left of the budget is refused. Running the same plan into the same
directory again resumes it: finished stages are skipped (and never charged twice), unfinished
training runs continue from their latest checkpoint with the steps decided when they started.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from experiments.pipeline.plan import Plan, PlanError, StageSpec, run_configs
from experiments.pipeline.caps import (
    FINISHED_RUN,
    forecast_caps,
    forecast_scoring_caps,
    lost_to_interruptions,
    run_cap,
    scoring_cap,
    spent_by_experiment,
    unfinished_needs,
)
from experiments.pipeline.planner import (
    MEASUREMENT,
    MEASUREMENT_TOKENS,
    DataShapes,
    PlanProjection,
    model_positions,
    plan_model,
    project,
    project_training_stage,
    reserve_flops,
    stage_share,
)
from experiments.data import prepare_data
from experiments.models.loading import model_identity
from experiments.pipeline.report import write_report
from experiments.pipeline.distributed import (FORECAST, STOP, TRAIN, check_batches_split, dispatch, join_process_group,
                                              serve)
from experiments.pipeline.results import RESULTS_FILE, Results
from experiments.pipeline.stages import (
    best_adapter,
    check_adapter,
    forecast_share,
    measure_training_rule,
    run_forecast_stage,
    run_training,
    score_at_common_context,
    score_validation_forecasts,
)
from experiments.pipeline.workspace import LEDGER_FILE, PLAN_SPLITS, PlanWorkspace
from experiments.training.errors import NothingToSelect
from experiments.training.run_dir import ConfigMismatch
from experiments.basemodel import base_summary
from experiments.training.run_lock import DirectoryLock, claim_directory
from flopcount import Ledger

logger = logging.getLogger(__name__)
__all__ = ["LEDGER_FILE", "PLAN_SPLITS", "DataChanged", "ModelChanged", "PlanOverBudget", "check_preconditions",
           "dry_run", "open_run", "run_plan"]
HANDLERS = {TRAIN: lambda run, name, entry: run_training(run, run.plan.stage(name), entry), FORECAST: forecast_share}


class PlanOverBudget(PlanError):
    """The plan's projected FLOPs do not fit its limit, or what is left of it in the ledger."""


class DataChanged(ConfigMismatch):
    """The data a run directory was started on has changed (a resume would mix two data sets)."""


class ModelChanged(ConfigMismatch):
    """The base model a run directory was started on has changed (its adapters were trained on other weights)."""


def dry_run(plan: Plan) -> PlanProjection:
    """Projected FLOPs of every stage of ``plan``; loads the data but no tokenizer or weights."""
    return project(plan, DataShapes.of(plan, prepare_data(plan.data).require_splits(*PLAN_SPLITS)))


def open_run(plan: Plan, out_dir: Path, *, progress: bool = True) -> PlanWorkspace:
    """Bind ``plan`` to ``out_dir``. A new or empty directory becomes this plan's run directory
    (``results.json`` is written at once, so the directory is claimed before anything else is);
    one holding a run of this plan is resumed; anything else is refused untouched
    (``claim_directory``: a file, a stranger's directory, a run of another plan)."""
    fresh = claim_directory(out_dir, RESULTS_FILE, "plan run directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = Results.open(out_dir, plan.name, plan.text)
    if fresh:
        results.save()
    return PlanWorkspace(plan, out_dir, results, progress)


def check_preconditions(run: PlanWorkspace, stages: list[StageSpec]) -> None:
    """Everything that can refuse ``stages`` without spending a FLOP, checked before the first
    charge: the data and the base model's weights are those the run started on (both recorded on
    the first run), every stage's source has finished or runs before it, a finished source's
    adapter reads and fits the base model, and the test prompts plus the forecast fit the model."""
    data = {"source": run.data.source, "values_sha256": run.data.values_digest}
    recorded = run.results.document.get("data")
    if recorded is not None and recorded.get("values_sha256") != data["values_sha256"]:
        raise DataChanged(f"the data changed since this run started in {run.out_dir}: {data['source']} now has "
                          f"values sha256 {data['values_sha256'][:16]}..., the run recorded "
                          f"{recorded.get('values_sha256', '?')[:16]}... ({recorded.get('source')}); resuming would mix "
                          "results of two data sets: restore that data, or run into a new --out directory")
    model = model_identity(run.plan.model.source)
    recorded_model = run.results.document.get("model")
    if recorded_model is not None and recorded_model.get("sha256") != model["sha256"]:
        raise ModelChanged(f"the base model changed since this run started in {run.out_dir}: {model['source']} now has "
                           f"sha256 {model['sha256'][:16]}..., the run recorded {recorded_model['sha256'][:16]}...; its "
                           "adapters were trained on the old weights: restore them, or run into a new --out directory")
    names = [stage.name for stage in stages]
    for index, stage in enumerate(stages):
        if stage.source and not run.results.finished(stage.source) and stage.source not in names[:index]:
            raise PlanError(f"stage {stage.name!r} uses the best setting of {stage.source!r}, which has not finished "
                            f"in {run.out_dir}: run `{run.plan.stage(stage.source).kind}` (or the whole plan with "
                            "`run`) first; nothing was charged")
    for stage in stages:
        if stage.kind == "evaluate" and run.results.finished(stage.source):
            entry, adapter = best_adapter(run, run.results.document["stages"][stage.source])
            check_adapter(stage.name, entry, adapter, run.base_model())
    if any(not stage.trains for stage in stages):
        _check_prompts_fit(run)
    if recorded is None:
        run.results.set("data", data)
    if recorded_model is None:
        run.results.set("model", model)


def _check_prompts_fit(run: PlanWorkspace) -> None:
    """Refuse a forecast whose longest test prompt plus its new tokens exceed the model's positions."""
    plan = run.plan
    limit = model_positions(plan_model(plan))  # None: loading the model itself says what is wrong
    passes = plan.forecast_passes()
    needed = run.shapes.test_prompt_tokens + max(forecast.new_token_bound for forecast in passes)
    if limit is not None and needed > limit:
        raise PlanError(f"plan {plan.name!r}: the longest test prompt ({run.shapes.test_prompt_tokens} tokens of "
                        f"{plan.data.prompt_steps} steps) plus up to {needed - run.shapes.test_prompt_tokens} forecast "
                        f"tokens ({plan.data.forecast_steps} steps) exceed the model's {limit} positions: lower "
                        "data.prompt_steps, data.forecast_steps or data.precision; nothing was charged")


def check_fits(run: PlanWorkspace, projection: PlanProjection) -> None:
    """Refuse, before any work, a plan that cannot fit its limit, or whose unfinished stages
    (the ``"rest"`` stage included) need more than is left in the ledger: the work lost to
    interruptions was more than the reserve and the projections' slack can redo."""
    if not projection.fits:
        raise PlanOverBudget(f"plan {run.plan.name!r} cannot fit its budget: {'; '.join(projection.problems)}; "
                             f"nothing was run\n{projection.to_markdown()}")
    needed = sum(unfinished_needs(run, projection).values())
    remaining = run.remaining()
    if needed > remaining:
        raise PlanOverBudget(_no_longer_fits(run, needed, remaining))


def _no_longer_fits(run: PlanWorkspace, needed: int, remaining: int) -> str:
    """What was lost, and what to do, for a plan whose unfinished stages no longer fit."""
    plan = run.plan
    lost = lost_to_interruptions(run, plan)
    where = ", ".join(f"{name} {flops:.3g}" for name, flops in lost.items()) or "none recorded"
    return (f"plan {plan.name!r} can no longer fit its budget in {run.out_dir}: its unfinished stages need "
            f"{needed:.4g} FLOPs but {remaining:.4g} remain in {run.ledger_path.name}. {sum(lost.values()):.4g} "
            f"FLOPs were lost to interruptions ({where}), more than the reserve ([budget] reserve = "
            f"{plan.budget.reserve:g}, {reserve_flops(plan):.4g} FLOPs) and what the stages' projections leave can "
            "redo. Nothing was run; the results so far are kept. To go on, run the plan into a new --out directory, "
            "with a larger [budget] reserve if interruptions are likely")


def run_plan(plan: Plan, out_dir: Path, *, only: list[str] | None = None, progress: bool = True) -> Results | None:
    """Run every stage of ``plan`` (or those named in ``only``, whose sources must have
    finished), then write the report. Returns the results. Under a launcher of several
    processes rank 0 runs the plan and the others serve it (``pipeline.distributed``); they
    return None."""
    rank, world_size = join_process_group()
    if rank != 0:
        serve(PlanWorkspace(plan, out_dir, Results(out_dir / RESULTS_FILE, {}), progress=False), HANDLERS)
        return None
    check_batches_split(plan, world_size)
    results = _run_plan(plan, out_dir, only, progress)
    dispatch(STOP)  # after a failure rank 0 exits instead, and the launcher stops the others wherever they wait
    return results


def _run_plan(plan: Plan, out_dir: Path, only: list[str] | None, progress: bool) -> Results:
    """Rank 0's run of the plan. The run directory is locked for the whole run (``DirectoryBusy``
    names the pid of a run already in it); every refusal comes before the first FLOP is charged."""
    claim_directory(out_dir, RESULTS_FILE, "plan run directory")  # before the lock file is written there
    with DirectoryLock(out_dir):
        run = open_run(plan, out_dir, progress=progress)
        stages = [stage for stage in plan.stages if only is None or stage.name in only]
        check_preconditions(run, [stage for stage in stages if not run.results.finished(stage.name)])
        projection = project(plan, run.shapes, run.selections())
        check_fits(run, projection)
        run.results.document["plan_summary"] = {
            "description": plan.description, "model": plan.model.source, "data": run.data.source,
            "limit": plan.budget.limit, "convention": plan.budget.convention,
            **base_summary(plan.model.source)}  # llmtime-base: built here on first use
        run.results.set("projection", projection.to_dict())
        if not run.results.finished(MEASUREMENT):
            run_measurement(run)
        for stage in stages:
            if run.results.finished(stage.name):
                logger.info("stage %s: finished earlier, skipped", stage.name)
                continue
            run_stage(run, stage)
        write_report(out_dir)
    return run.results


def run_measurement(run: PlanWorkspace) -> None:
    """Measure backward / forward FLOPs of one LoRA step (charged) before the stages run."""
    record = run.results.stage(MEASUREMENT)
    cap = forecast_caps(run, MEASUREMENT, project(run.plan, run.shapes, run.selections()))[MEASUREMENT]
    record.update(kind="measure", **measure_training_rule(run, MEASUREMENT, MEASUREMENT_TOKENS, cap),
                  status="finished")
    run.results.save()


def run_stage(run: PlanWorkspace, stage: StageSpec) -> None:
    """Run one stage and mark it finished in ``results.json``."""
    record = run.results.stage(stage.name)
    record.update(status="running", kind=stage.kind)
    run.results.save()
    started = time.perf_counter()
    if stage.trains:
        _training_stage(run, stage, record)
    else:
        source = run.results.document["stages"].get(stage.source) if stage.source else None
        caps = forecast_caps(run, stage.name, project(run.plan, run.shapes, run.selections()))
        record.update(run_forecast_stage(run, stage, source, caps))
    record["status"] = "finished"
    record["wall_seconds"] = record.get("wall_seconds", 0.0) + time.perf_counter() - started
    run.results.save()
    logger.info("stage %s: finished in %.1f s", stage.name, record["wall_seconds"])


def _training_stage(run: PlanWorkspace, stage: StageSpec, record: dict[str, Any]) -> None:
    if "runs" not in record:  # decide the steps once; a resumed stage keeps them
        record["runs"] = _decide_runs(run, stage)
        run.results.save()
    for entry in record["runs"]:
        if entry.get("status") in FINISHED_RUN:
            continue
        started = time.perf_counter()
        entry["flops_cap"] = run_cap(run, entry, spent_by_experiment(run))  # its share, plus redoing lost work
        entry.update(run_training(run, stage, entry))
        entry["wall_seconds"] = entry.get("wall_seconds", 0.0) + time.perf_counter() - started
        run.results.save()
    selection = run.plan.selection
    criterion = "lowest validation loss after the run's last step"
    if selection.scores(stage.kind):
        criterion = score_validation_forecasts(run, record, forecast_scoring_caps(run, stage.name, record))
    elif stage.kind == "context":  # losses at different contexts are not comparable: score all at one
        criterion = score_at_common_context(run, stage, record, scoring_cap(run, stage.name, record))
    record["best"] = select_best(stage.name, record["runs"], selection.key(stage.kind), criterion)


def select_best(stage: str, runs: list[dict[str, Any]], key: str, criterion: str) -> dict[str, Any]:
    """The run of lowest ``key`` (a validation loss or forecast error); runs without one are
    listed as missing (``best["missing"]``, with the reason) and logged as a warning, never
    skipped silently. ``best["val_loss"]`` is the loss it was selected by, or (selected by
    forecast error) its own last validation loss; ``best["score"]`` the value of ``key``."""
    scored = [entry for entry in runs if entry.get(key) is not None]
    missing = [{"experiment": entry["experiment"], "status": entry.get("status"),
                "steps_done": entry.get("steps_done"), "stop_reason": entry.get("stop_reason")}
               for entry in runs if entry.get(key) is None]
    for entry in missing:
        logger.warning("stage %s: run %s has no %s (%s after %s steps: %s); it is missing from the selection",
                       stage, entry["experiment"], key.replace("_", " "), entry["status"], entry["steps_done"],
                       entry["stop_reason"] or "no validation")
    if not scored:
        why = "; ".join(f"{entry['experiment']} {entry['status']} after {entry['steps_done']} steps "
                        f"({entry['stop_reason'] or 'no validation'})" for entry in missing)
        raise NothingToSelect(f"stage {stage!r}: no run has a validation loss to select by ({why}); give its runs "
                              "enough steps (or budget_share) to validate at least once, or set eval_every, then "
                              "run into a new --out directory")
    best = min(scored, key=lambda entry: entry[key])
    loss = best.get("val_loss") if key == "selection_forecast_error" else best[key]
    return {"experiment": best["experiment"], "settings": best["settings"], "val_loss": loss, "selected_by": key,
            "score": best[key], "criterion": criterion, "missing": missing}


def _decide_runs(run: PlanWorkspace, stage: StageSpec) -> list[dict[str, Any]]:
    """The runs of a training stage with their steps: fitted to the stage's share of the limit
    (or, for ``"rest"``, what the other stages and the reserve leave), split evenly between the
    runs. Refused (``PlanOverBudget``) when the ledger cannot pay the stage's projection and every
    other unfinished stage's needs (:mod:`experiments.pipeline.caps`); a stage is never shrunk to
    what is left. ``check_fits`` refuses that case before the run starts, so this is its guard."""
    plan, selections = run.plan, run.selections()
    projection = project(plan, run.shapes, selections)
    needs = unfinished_needs(run, projection)
    room = run.remaining() - sum(need for name, need in needs.items() if name != stage.name)
    if room < projection.stage(stage.name).flops:
        raise PlanOverBudget(_no_longer_fits(run, sum(needs.values()), run.remaining()))
    configs = run_configs(plan, stage, selections.get(stage.source))
    runs, _ = project_training_stage(plan_model(plan), plan, stage, configs, run.shapes,
                                     stage_share(plan, stage, projection))
    return [{key: value for key, value in r.to_dict().items() if key != "flops"} | {"projected_flops": r.flops,
            "status": "pending"} for r in runs]
