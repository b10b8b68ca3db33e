"""The planner: how many FLOPs each stage of a plan will spend, decided before anything runs.

Every figure comes from the analytic model (``flopcount``) and the plan's shapes; no weights
are loaded, so ``run --plan coursework --dry-run`` works offline. The data's shapes (validation
windows per context, prompt lengths) come from the LLMTIME text itself: Qwen's tokenizer gives
one token per character of that text, so text lengths are token counts.

Training stages get ``budget_share`` of the limit, split evenly between the runs of a sweep
(compute-matched: runs at a longer context take fewer steps); a run takes the steps that share
pays for (validation included), capped at ``max_steps``, or exactly ``steps``. Stages that use
the best setting of an earlier stage are projected with the most expensive candidate, so the
projection is an upper bound; when they run, their steps are fitted to the setting chosen.
``budget_share = "rest"`` gets the limit minus every other stage's projection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from experiments.forecasting.grammar import LLMTimeGrammar
from experiments.pipeline.learning import base_validation_flops
from experiments.pipeline.plan import REST, Plan, StageSpec, run_settings, train_config
from flopcount import (
    estimate_run,
    forward_flops,
    generation_flops,
    max_affordable_steps,
    model_shape,
    training_step_flops,
)
from flopcount.count.shape import ModelShape
from lvdata import LLMTimeFormat, encode, make_windows, per_trajectory_alpha, prompt_target_split


@dataclass(frozen=True)
class DataShapes:
    """Token counts of the plan's data: per-trajectory text lengths of the validation split
    and the longest test prompt, plus the number of test series forecast."""

    validation_lengths: tuple[int, ...]
    test_prompt_tokens: int
    test_series: int

    def validation_windows(self, context: int) -> int:
        """Validation windows at ``context`` (stride = context), as ``lvdata.make_windows`` cuts them."""
        sequences = [np.zeros(n, dtype=np.int64) for n in self.validation_lengths]
        return len(make_windows(sequences, context, context, pad_id=0))


@dataclass(frozen=True)
class RunProjection:
    """One training run: its ledger name, settings, steps and FLOPs (training + validation)."""

    experiment: str
    settings: dict[str, Any]
    steps: int
    flops: int
    eval_windows: int


@dataclass(frozen=True)
class StageProjection:
    name: str
    kind: str
    flops: int
    runs: tuple[RunProjection, ...] = ()
    note: str = ""
    problem: str = ""  # why the stage cannot run as planned (the plan does not fit)


@dataclass(frozen=True)
class PlanProjection:
    """Projected FLOPs of every stage against the plan's ``limit``."""

    plan: str
    limit: int
    stages: tuple[StageProjection, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(stage.flops for stage in self.stages)

    @property
    def problems(self) -> list[str]:
        over = [f"the stages need {self.total:.4g} FLOPs, more than the limit {self.limit:.4g}"]
        return [f"stage {s.name!r}: {s.problem}" for s in self.stages if s.problem] + \
            (over if self.total > self.limit else [])

    @property
    def fits(self) -> bool:
        return not self.problems

    def stage(self, name: str) -> StageProjection:
        return next(stage for stage in self.stages if stage.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "limit": self.limit, "total": self.total, "fits": self.fits,
                "problems": self.problems,
                "stages": [{"name": s.name, "kind": s.kind, "flops": s.flops, "share": s.flops / self.limit,
                            "note": s.note, "runs": [asdict(run) for run in s.runs]} for s in self.stages]}

    def to_markdown(self) -> str:
        lines = ["| stage | kind | runs | steps per run | FLOPs | share of limit | note |",
                 "|---|---|---:|---|---:|---:|---|"]
        for s in self.stages:
            steps = ", ".join(str(run.steps) for run in s.runs) or "-"
            note = f"**{s.problem}**" if s.problem else s.note
            lines.append(f"| {s.name} | {s.kind} | {len(s.runs)} | {steps} | {s.flops:.4g} | "
                         f"{s.flops / self.limit:.2%} | {note} |")
        lines.append(f"| **total** | | | | **{self.total:.4g}** | **{self.total / self.limit:.2%}** | "
                     f"limit {self.limit:.4g} |")
        return "\n".join(lines)


def data_shapes(plan: Plan, trajectories: np.ndarray, alphas: np.ndarray, split) -> DataShapes:
    """The token counts the planner needs, from the encoded text (one token per character).
    ``alphas``: the α of each trajectory's whole text (training and validation windows);
    prompts are scaled as the forecaster scales them (``ExperimentData.forecast_alpha``)."""
    fmt = LLMTimeFormat(precision=plan.data.precision)
    validation = encode(trajectories[split.validation], alphas[split.validation], fmt)
    test_ids = forecast_ids(plan, split)
    k, m = plan.data.prompt_steps, plan.data.forecast_steps
    contexts = trajectories[test_ids, :k]
    prompt_alphas = per_trajectory_alpha(contexts) if plan.data.alpha_rule == "per_trajectory" else alphas[test_ids]
    prompts = [prompt_target_split(trajectories[i], alpha, k=k, m=m, fmt=fmt).prompt_text
               for i, alpha in zip(test_ids.tolist(), prompt_alphas.tolist())]
    return DataShapes(tuple(len(text) for text in validation), max(len(p) for p in prompts), len(test_ids))


def forecast_ids(plan: Plan, split) -> np.ndarray:
    """The test trajectories the plan forecasts: all, or the first ``forecast.series``."""
    ids = np.asarray(split.test)
    return ids[: plan.forecast.series] if plan.forecast.series else ids


def run_name(stage: StageSpec, settings: dict[str, Any]) -> str:
    """Ledger name of a run: the stage, plus the swept values for a sweep or context stage."""
    if stage.kind == "sweep":
        return stage.name + "/" + ",".join(f"{_short(key)}={settings[key]:g}" for key in stage.grid)
    if stage.kind == "context":
        return f"{stage.name}/context={settings['context']}"
    return stage.name


def _short(key: str) -> str:
    return {"learning_rate": "lr", "lora_rank": "r", "lora_alpha": "alpha", "batch_size": "batch"}.get(key, key)


def fit_run(shape: ModelShape, plan: Plan, stage: StageSpec, settings: dict[str, Any], shapes: DataShapes,
            available: int) -> RunProjection:
    """Steps and FLOPs of one run: exactly ``stage.steps``, or as many as ``available`` FLOPs
    pay for up to ``stage.max_steps``."""
    n_windows = shapes.validation_windows(settings["context"])
    eval_windows = min(settings["eval_windows"] or n_windows, n_windows)
    convention, name = plan.budget.convention, run_name(stage, settings)
    if stage.steps:
        steps = stage.steps
    else:  # the RunPlan that train() itself follows (one process), so estimate and charges agree
        longest = train_config(name, settings, stage.max_steps).run_plan(1, eval_windows)
        steps = min(stage.max_steps, max_affordable_steps(shape, longest, max(available, 0), convention))
    flops = estimate_run(shape, train_config(name, settings, steps).run_plan(1, eval_windows), convention).total
    return RunProjection(name, settings, steps, flops, eval_windows)


def forecast_flops(shape: ModelShape, plan: Plan, shapes: DataShapes, lora: dict[str, Any] | None = None) -> int:
    """Upper bound of one forecast of the test split: greedy (constrained and not) and sampled,
    every batch at the longest prompt and the grammar's longest output (also the bound of the
    unconstrained forecast); ``lora``: the adapter's training settings."""
    grammar = LLMTimeGrammar(n_steps=plan.data.forecast_steps, max_int_digits=plan.forecast.max_int_digits,
                             fmt=LLMTimeFormat(precision=plan.data.precision))
    spec, convention = plan.forecast, plan.budget.convention
    adapter = {"lora_rank": lora["lora_rank"], "lora_targets": tuple(lora["lora_targets"])} if lora else {}
    total = 0
    for start in range(0, shapes.test_series, spec.batch_size):
        batch = min(spec.batch_size, shapes.test_series - start)
        passes = [1] * (spec.greedy + spec.unconstrained) + ([spec.samples] if spec.samples else [])
        for samples in passes:
            total += generation_flops(shape, shapes.test_prompt_tokens, grammar.max_new_tokens, samples=samples,
                                      batch=batch, convention=convention, **adapter).total
    return total


MEASUREMENT = "backward-forward"
MEASUREMENT_TOKENS = 64


def measurement_projection(shape: ModelShape, plan: Plan) -> StageProjection:
    """The measured backward/forward check the report shows: one LoRA training step of one
    ``MEASUREMENT_TOKENS``-token window, charged like any training step."""
    lora = {"lora_rank": plan.training.lora_rank, "lora_targets": plan.training.lora_targets}
    flops = training_step_flops(shape, 1, MEASUREMENT_TOKENS, convention=plan.budget.convention, **lora)
    return StageProjection(MEASUREMENT, "measure", flops, note="one LoRA step counted by FlopCounterMode")


def selection_flops(shape: ModelShape, plan: Plan, stage: StageSpec, runs: list[dict[str, Any]],
                    shapes: DataShapes) -> int:
    """FLOPs of choosing the best run of a ``context`` stage: every run's adapter scored on the
    same validation windows at the stage's longest context (0 for other stages)."""
    if stage.kind != "context":
        return 0
    context = max(stage.contexts)
    windows = min(runs[0]["eval_windows"] or shapes.validation_windows(context), shapes.validation_windows(context))
    return len(runs) * forward_flops(shape, context, batch=windows, lora_rank=runs[0]["lora_rank"],
                                     lora_targets=tuple(runs[0]["lora_targets"]),
                                     convention=plan.budget.convention).total


def project(plan: Plan, shapes: DataShapes, selections: dict[str, dict[str, Any]] | None = None) -> PlanProjection:
    """Project every stage. ``selections``: the best setting already chosen by finished
    stages (stage name -> settings); other stages that depend on one use the costliest candidate."""
    shape = model_shape(plan_model(plan))
    selections = selections or {}
    limit = plan.budget.limit
    fixed: dict[str, StageProjection] = {}
    for stage in plan.stages:
        if stage.budget_share == REST:
            continue
        fixed[stage.name] = _project_stage(shape, plan, stage, shapes, selections,
                                           int(stage.budget_share * limit) if stage.trains else 0)
    fixed[MEASUREMENT] = measurement_projection(shape, plan)
    projected = [fixed[MEASUREMENT]]
    for stage in plan.stages:
        if stage.budget_share == REST:
            rest = limit - sum(p.flops for p in fixed.values())
            projected.append(_project_stage(shape, plan, stage, shapes, selections, rest))
        else:
            projected.append(fixed[stage.name])
    return PlanProjection(plan.name, limit, tuple(projected))


def _project_stage(shape: ModelShape, plan: Plan, stage: StageSpec, shapes: DataShapes,
                   selections: dict[str, dict[str, Any]], available: int) -> StageProjection:
    if not stage.source:
        candidates = [None]
    elif stage.source in selections:
        candidates = [selections[stage.source]]
    else:
        candidates = _candidates(plan, stage.source)
    if stage.kind == "baseline":
        return StageProjection(stage.name, stage.kind, forecast_flops(shape, plan, shapes),
                               note="untrained model, greedy + sampled; upper bound")
    if stage.kind == "evaluate":
        flops = max(forecast_flops(shape, plan, shapes, lora) + base_validation_flops(shape, plan, lora, shapes)
                    for lora in candidates)  # + the untrained base on the adapter's validation windows
        return StageProjection(stage.name, stage.kind, flops, note=f"adapter of {stage.source!r}; upper bound")
    options = [run_settings(plan, stage, chosen) for chosen in candidates]
    runs_per_option = len(options[0])
    selecting = [selection_flops(shape, plan, stage, option, shapes) for option in options]
    projections = [[fit_run(shape, plan, stage, settings, shapes, (available - scoring) // runs_per_option)
                    for settings in option] for option, scoring in zip(options, selecting)]
    totals = [sum(run.flops for run in option) + scoring for option, scoring in zip(projections, selecting)]
    costliest = max(range(len(options)), key=totals.__getitem__)
    runs = projections[costliest]
    problem = ""
    if stage.steps == 0 and any(run.steps == 0 for run in runs):
        problem = (f"its share ({max(available, 0):.4g} FLOPs for {runs_per_option} run(s)) does not pay for "
                   "a single training step")
    notes = []
    if selecting[costliest]:
        notes.append(f"incl. {selecting[costliest]:.3g} to score every run at context {max(stage.contexts)}")
    if len(candidates) > 1:
        steps = sorted({run.steps for option in projections for run in option})
        notes.append(f"upper bound over the {len(candidates)} settings {stage.source!r} may select; steps "
                     f"{steps[0]}-{steps[-1]} depending on the one selected (shown: the costliest)")
    note = "; ".join(notes)
    return StageProjection(stage.name, stage.kind, totals[costliest], tuple(runs), note, problem)


def _candidates(plan: Plan, source: str) -> list[dict[str, Any]]:
    """Every setting stage ``source`` could select (recursively through its own ``from``)."""
    stage = plan.stage(source)
    upstream = _candidates(plan, stage.source) if stage.source else [None]
    return [settings for chosen in upstream for settings in run_settings(plan, stage, chosen)]


def plan_model(plan: Plan) -> Any:
    """What ``flopcount.model_shape`` reads the plan's model from (``tiny`` and ``llmtime-base``,
    the tiny architecture pretrained, are a config here: projecting builds nothing)."""
    from experiments.models.loading import BASE_MODEL, TINY_MODEL, tiny_config

    return tiny_config() if plan.model.source in (TINY_MODEL, BASE_MODEL) else plan.model.source

