"""What each unfinished stage of a plan still needs, the cap of every experiment it charges,
and what crashes have cost.

Every experiment a plan charges is capped (``Budget(experiment_limit=...)``) at what it has
spent so far plus what it still needs to finish:

- a training run: the steps after its latest checkpoint and their validations (a fresh run:
  the FLOPs the planner gave it);
- a forecast stage (``baseline``, ``evaluate`` and its base-model validation) and the
  backward/forward measurement: the whole projection again, since they start afresh;
- the selection scoring of a stage (loss at a common context, or validation forecasts): the
  runs not scored yet.

So a crash's re-runs are paid on top of the stage's own share, out of the FLOPs no stage is
planned to spend: the plan's reserve (``[budget] reserve``, a fraction of the limit the
``"rest"`` stage leaves) plus whatever the projections leave unspent; never out of a later
stage's share. Before any work the runner checks that the needs of every unfinished stage
(the ``"rest"`` stage included) fit what the ledger has left; a plan that no longer fits is
refused, saying how many FLOPs were lost to interruptions (:func:`lost_to_interruptions`).
"""

from __future__ import annotations

from typing import Any

from experiments.pipeline.learning import BASE_VALIDATION, base_validation_flops
from experiments.pipeline.plan import Plan, stage_of
from experiments.pipeline.planner import (
    MEASUREMENT,
    PlanProjection,
    StageProjection,
    forecast_flops,
    plan_model,
    run_selection_flops,
)
from experiments.pipeline.results import run_config
from experiments.pipeline.stages import stage_dir
from experiments.pipeline.workspace import PlanWorkspace
from experiments.training.checkpoint import latest_checkpoint
from flopcount import Ledger, audit_report, estimate_run, remaining_cost

FINISHED_RUN = ("finished", "stopped")


def spent_by_experiment(run: PlanWorkspace) -> dict[str, int]:
    """FLOPs charged per experiment so far (empty before the ledger exists)."""
    if not run.ledger_path.exists():
        return {}
    with Ledger(run.ledger_path, run.plan.budget.limit) as ledger:
        return ledger.spent_by_experiment()


def run_need(run: PlanWorkspace, entry: dict[str, Any]) -> int:
    """FLOPs the training run ``entry`` (of ``results.json``) still charges to finish: the steps
    after its latest checkpoint and their validations."""
    config = run_config(entry)
    setup = config.count_setup(plan_model(run.plan), run.plan.budget.convention)
    estimate = estimate_run(setup, config.workload(1, entry["eval_windows"]))
    checkpoint = latest_checkpoint(stage_dir(run, entry["experiment"]))
    return remaining_cost(estimate, config.steps, checkpoint.step if checkpoint else 0)


def run_cap(run: PlanWorkspace, entry: dict[str, Any], spent: dict[str, int]) -> int:
    """The cap of a training run: what it spent plus what it still needs."""
    return spent.get(entry["experiment"], 0) + run_need(run, entry)


def _scoring_need(run: PlanWorkspace, record: dict[str, Any]) -> int:
    """FLOPs a stage's selection scoring still needs: that of every run not scored yet."""
    stage, runs = run.plan.stage(record["name"]), record["runs"]
    per_run = run_selection_flops(plan_model(run.plan), run.plan, stage, [run_config(e) for e in runs], run.shapes)
    key = run.plan.selection.key(stage.kind)
    return sum(flops for flops, entry in zip(per_run, runs) if entry.get(key) is None)


def stage_need(run: PlanWorkspace, projected: StageProjection) -> int:
    """FLOPs the unfinished stage ``projected`` still needs to finish (0 once finished)."""
    if run.results.finished(projected.name):
        return 0
    record = run.results.document["stages"].get(projected.name, {})
    if "runs" not in record:  # not decided yet (or not a training stage): the projection
        return projected.flops
    pending = [entry for entry in record["runs"] if entry.get("status") not in FINISHED_RUN]
    return sum(run_need(run, entry) for entry in pending) + _scoring_need(run, {**record, "name": projected.name})


def unfinished_needs(run: PlanWorkspace, projection: PlanProjection) -> dict[str, int]:
    """Stage name -> FLOPs it still needs, for every unfinished stage of ``projection``."""
    return {stage.name: need for stage in projection.stages if (need := stage_need(run, stage))}


def forecast_caps(run: PlanWorkspace, stage_name: str, projection: PlanProjection) -> dict[str, int]:
    """Experiment -> cap for a stage that starts afresh when re-run: the measurement, a
    ``baseline`` or an ``evaluate`` stage (its generation and its base-model validation)."""
    spent, plan = spent_by_experiment(run), run.plan
    if stage_name == MEASUREMENT:
        return {MEASUREMENT: spent.get(MEASUREMENT, 0) + projection.stage(MEASUREMENT).flops}
    stage, model = plan.stage(stage_name), plan_model(plan)
    chosen = run.selections().get(stage.source) if stage.source else None
    lora = chosen.lora_config() if chosen is not None else None
    caps = {stage.name: spent.get(stage.name, 0) + forecast_flops(model, plan, run.shapes, lora)}
    if stage.kind == "evaluate":
        validation = f"{stage.name}/{BASE_VALIDATION}"
        caps[validation] = spent.get(validation, 0) + base_validation_flops(model, plan, chosen, run.shapes)
    return caps


def forecast_scoring_caps(run: PlanWorkspace, stage_name: str, record: dict[str, Any]) -> dict[str, int]:
    """Experiment -> cap of each run's validation forecast (``<run>/selection``): what it spent
    plus its projection (a forecast starts afresh when it is re-run)."""
    stage, runs, spent = run.plan.stage(stage_name), record["runs"], spent_by_experiment(run)
    per_run = run_selection_flops(plan_model(run.plan), run.plan, stage, [run_config(e) for e in runs], run.shapes)
    experiments = [run.plan.selection.experiment(entry["experiment"]) for entry in runs]
    return {name: spent.get(name, 0) + flops for name, flops in zip(experiments, per_run)}


def scoring_cap(run: PlanWorkspace, stage_name: str, record: dict[str, Any]) -> int:
    """The cap of a stage's selection scoring (``<stage>/selection``)."""
    experiment = f"{stage_name}/selection"
    return spent_by_experiment(run).get(experiment, 0) + _scoring_need(run, {**record, "name": stage_name})


def lost_to_interruptions(run: PlanWorkspace, plan: Plan) -> dict[str, int]:
    """Experiment -> FLOPs lost to interruptions so far: the audit's lost work, and everything
    an unfinished stage that starts afresh (a forecast, the measurement) has spent."""
    if not run.ledger_path.exists():
        return {}
    lost = {}
    for row in audit_report(run.ledger_path).rows:
        stage = stage_of(row.name)
        trains = stage != MEASUREMENT and any(s.name == stage and s.trains for s in plan.stages)
        restarts = not run.results.finished(stage) and not trains
        if flops := row.total if restarts else row.lost:
            lost[row.name] = flops
    return lost
