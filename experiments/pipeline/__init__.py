"""A whole plan under one budget: the TOML plan, the planner (FLOPs of every stage before any
work), the runner and its stages, ``results.json`` and ``report.md``."""

from experiments.pipeline.plan import Plan, PlanError, StageSpec, load_plan, shipped_plans
from experiments.pipeline.planner import PlanProjection, StageProjection, project
from experiments.pipeline.report import write_report
from experiments.pipeline.results import Results
from experiments.pipeline.runner import PlanOverBudget, dry_run, run_plan
from experiments.pipeline.workspace import PlanWorkspace

__all__ = [
    "Plan", "PlanError", "PlanOverBudget", "PlanProjection", "PlanWorkspace", "Results", "StageProjection",
    "StageSpec", "dry_run", "load_plan", "project", "run_plan", "shipped_plans", "write_report",
]
