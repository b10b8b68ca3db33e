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
``budget_share = "rest"`` gets the limit minus every other stage's projection and minus the
reserve (``[budget] reserve`` of the limit), which no stage is planned to spend: it pays for
work redone after crashes (see :mod:`experiments.pipeline.caps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from experiments.data import ExperimentData
from experiments.forecasting.forecast_config import ForecastConfig
from experiments.pipeline.plan import REST, Plan, StageSpec, run_configs
from experiments.training.config import TrainConfig
from flopcount import CountSetup, estimate_run, forward_flops, generation_flops, steps_that_fit, training_step_flops
from lora import LoRAConfig
from lvdata import count_windows
from experiments.pipeline.learning import base_validation_flops


@dataclass(frozen=True)
class DataShapes:
    """Token counts of the plan's data: per-trajectory token lengths of the validation split,
    the longest test prompt and the number of test series forecast, and the same two for the
    validation trajectories a selection by forecast error forecasts."""

    validation_lengths: tuple[int, ...]
    test_prompt_tokens: int
    test_series: int
    selection_prompt_tokens: int = 0
    selection_series: int = 0

    @classmethod
    def of(cls, plan: Plan, data: ExperimentData) -> DataShapes:
        """The shapes of ``data`` (prepared with or without a tokenizer: the same code the runner
        trains and forecasts with, so prompts are scaled exactly as the forecaster scales them)."""
        k, m = plan.data.prompt_steps, plan.data.forecast_steps

        def prompts(ids: list[int]) -> list[int]:
            return [len(data.forecast_example(i, k, m).prompt_text) for i in ids]

        test = prompts(plan.forecast.forecast_ids(data.split.test).tolist())
        selection = prompts(plan.selection.validation_ids(data.split.validation).tolist())
        return cls(tuple(data.token_lengths("validation")), max(test), len(test), max(selection, default=0),
                   len(selection))

    def validation_windows(self, context: int) -> int:
        """Validation windows at ``context`` (stride = context), as ``lvdata.make_windows`` cuts them."""
        return count_windows(self.validation_lengths, context, context)

    def eval_windows(self, config: TrainConfig) -> int:
        """Validation windows a run of ``config`` scores per validation."""
        available = self.validation_windows(config.context)
        return min(config.eval_windows or available, available)


@dataclass(frozen=True)
class RunProjection:
    """One training run: its config (experiment name and steps set) and FLOPs (training +
    validation), with ``eval_windows`` validation windows per validation."""

    config: TrainConfig
    flops: int
    eval_windows: int

    @property
    def steps(self) -> int:
        return self.config.steps

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.config.experiment, "settings": self.config.settings(),
                "steps": self.config.steps, "flops": self.flops, "eval_windows": self.eval_windows}


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
    """Projected FLOPs of every stage against the plan's ``limit``, less ``reserve`` FLOPs
    kept for re-runs after crashes."""

    plan: str
    limit: int
    stages: tuple[StageProjection, ...] = field(default_factory=tuple)
    reserve: int = 0

    @property
    def total(self) -> int:
        return sum(stage.flops for stage in self.stages)

    @property
    def problems(self) -> list[str]:
        kept = f" less the reserve {self.reserve:.4g}" if self.reserve else ""
        over = [f"the stages need {self.total:.4g} FLOPs, more than the limit {self.limit:.4g}{kept}"]
        return [f"stage {s.name!r}: {s.problem}" for s in self.stages if s.problem] + \
            (over if self.total + self.reserve > self.limit else [])

    @property
    def fits(self) -> bool:
        return not self.problems

    def stage(self, name: str) -> StageProjection:
        return next(stage for stage in self.stages if stage.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"plan": self.plan, "limit": self.limit, "reserve": self.reserve, "total": self.total, "fits": self.fits,
                "problems": self.problems,
                "stages": [{"name": s.name, "kind": s.kind, "flops": s.flops, "share": s.flops / self.limit,
                            "note": s.note, "runs": [run.to_dict() for run in s.runs]} for s in self.stages]}

    def to_markdown(self) -> str:
        lines = ["| stage | kind | runs | steps per run | FLOPs | share of limit | note |",
                 "|---|---|---:|---|---:|---:|---|"]
        for s in self.stages:
            steps = ", ".join(str(run.config.steps) for run in s.runs) or "-"
            note = f"**{s.problem}**" if s.problem else s.note
            lines.append(f"| {s.name} | {s.kind} | {len(s.runs)} | {steps} | {s.flops:.4g} | "
                         f"{s.flops / self.limit:.2%} | {note} |")
        if self.reserve:
            lines.append(f"| (reserve) | | | | {self.reserve:.4g} | {self.reserve / self.limit:.2%} | "
                         "kept to redo work lost to crashes |")
        lines.append(f"| **total** | | | | **{self.total:.4g}** | **{self.total / self.limit:.2%}** | "
                     f"limit {self.limit:.4g} |")
        return "\n".join(lines)


def fit_run(model: Any, plan: Plan, stage: StageSpec, config: TrainConfig, shapes: DataShapes,
            available: int) -> RunProjection:
    """Steps and FLOPs of one run of ``config`` on ``model``: exactly ``stage.steps``, or as
    many as ``available`` FLOPs pay for up to ``stage.max_steps`` (:func:`flopcount.steps_that_fit`
    of the workload ``train()`` itself follows on one process, so estimate and charges agree)."""
    setup, eval_windows = config.count_setup(model, plan.budget.convention), shapes.eval_windows(config)
    steps = stage.steps
    if steps is None:
        longest = config.for_run(config.experiment, stage.max_steps).workload(1, eval_windows)
        steps = steps_that_fit(setup, longest, max(available, 0))
    config = config.for_run(config.experiment, steps)
    return RunProjection(config, estimate_run(setup, config.workload(1, eval_windows)).total, eval_windows)


def forecast_flops(model: Any, plan: Plan, shapes: DataShapes, lora: LoRAConfig | None = None) -> int:
    """Upper bound of one forecast of the test split with ``lora`` (None: the base model): every
    pass of ``plan.forecast_passes()``, every batch at the longest prompt and the pass's token
    bound (also the bound of the unconstrained pass)."""
    return _generation_bound(CountSetup.from_lora(model, lora, plan.budget.convention), plan.forecast_passes(),
                             shapes.test_series, shapes.test_prompt_tokens)


def selection_forecast_flops(model: Any, plan: Plan, shapes: DataShapes, lora: LoRAConfig | None) -> int:
    """Upper bound of scoring one run by its validation forecast error (``[selection]``): its
    pass over the selection's validation trajectories, every batch at the longest prompt."""
    forecast = plan.selection.forecast_config(plan.data.prompt_steps, plan.data.forecast_steps,
                                              plan.data.llmtime_format())
    return _generation_bound(CountSetup.from_lora(model, lora, plan.budget.convention), (forecast,),
                             shapes.selection_series, shapes.selection_prompt_tokens)


def _generation_bound(setup: CountSetup, passes: tuple[ForecastConfig, ...], series: int, prompt_tokens: int) -> int:
    """FLOPs of ``passes`` over ``series`` prompts of at most ``prompt_tokens`` tokens, in batches
    of each pass's ``batch_size``, every row running to the pass's token bound."""
    total = 0
    for forecast in passes:
        for start in range(0, series, forecast.batch_size):
            batch = min(forecast.batch_size, series - start)
            total += generation_flops(setup, prompt_tokens, forecast.new_token_bound,
                                      samples=forecast.samples, batch=batch).total
    return total


MEASUREMENT = "backward-forward"
MEASUREMENT_TOKENS = 64


def measurement_projection(model: Any, plan: Plan) -> StageProjection:
    """The measured backward/forward check the report shows: one LoRA training step of one
    ``MEASUREMENT_TOKENS``-token window, charged like any training step."""
    flops = training_step_flops(plan.training.count_setup(model, plan.budget.convention), 1, MEASUREMENT_TOKENS)
    return StageProjection(MEASUREMENT, "measure", flops, note="one LoRA step counted by FlopCounterMode")


def selection_flops(model: Any, plan: Plan, stage: StageSpec, runs: list[TrainConfig], shapes: DataShapes) -> int:
    """FLOPs of choosing the best run of ``stage``: :func:`run_selection_flops` of every run."""
    return sum(run_selection_flops(model, plan, stage, runs, shapes))


def run_selection_flops(model: Any, plan: Plan, stage: StageSpec, runs: list[TrainConfig],
                        shapes: DataShapes) -> list[int]:
    """FLOPs of scoring each of ``runs`` to choose the best: its validation forecast (a plan
    selecting by forecast error, in a sweep or context stage); else, in a context stage, one
    forward of the same validation windows at the stage's longest context; else 0."""
    if plan.selection.scores(stage.kind):
        return [selection_forecast_flops(model, plan, shapes, config.lora_config()) for config in runs]
    if stage.kind != "context":
        return [0] * len(runs)
    scoring = selection_config(stage, runs)
    setup = scoring.count_setup(model, plan.budget.convention)
    return [forward_flops(setup, scoring.context, batch=shapes.eval_windows(scoring)).total] * len(runs)


def selection_config(stage: StageSpec, runs: list[TrainConfig]) -> TrainConfig:
    """How the runs of a context stage are scored, as the ledger experiment
    ``<stage>/selection`` (one step per run): the first run's settings at the stage's longest
    context."""
    return replace(runs[0], context=max(stage.contexts), experiment=f"{stage.name}/selection", steps=len(runs))


def project(plan: Plan, shapes: DataShapes, selections: dict[str, TrainConfig] | None = None) -> PlanProjection:
    """Project every stage. ``selections``: the best setting already chosen by finished
    stages (stage name -> config); other stages that depend on one use the costliest candidate."""
    model = plan_model(plan)
    selections = selections or {}
    limit = plan.budget.limit
    fixed: dict[str, StageProjection] = {}
    for stage in plan.stages:
        if stage.budget_share == REST:
            continue
        fixed[stage.name] = _project_stage(model, plan, stage, shapes, selections,
                                           int(stage.budget_share * limit) if stage.trains else 0)
    fixed[MEASUREMENT] = measurement_projection(model, plan)
    projected = [fixed[MEASUREMENT]]
    for stage in plan.stages:
        if stage.budget_share == REST:
            rest = rest_flops(plan, [p.flops for p in fixed.values()])
            projected.append(_project_stage(model, plan, stage, shapes, selections, rest))
        else:
            projected.append(fixed[stage.name])
    return PlanProjection(plan.name, limit, tuple(projected), reserve_flops(plan))


def reserve_flops(plan: Plan) -> int:
    """FLOPs of the plan's reserve: ``[budget] reserve`` of the limit, planned for no stage."""
    return int(plan.budget.reserve * plan.budget.limit)


def rest_flops(plan: Plan, others: list[int]) -> int:
    """FLOPs of the ``budget_share = "rest"`` stage: the limit less the reserve and the other
    stages' projections ``others``."""
    return plan.budget.limit - reserve_flops(plan) - sum(others)


def stage_share(plan: Plan, stage: StageSpec, projection: PlanProjection) -> int:
    """The most a training stage is planned to spend: its ``budget_share`` of the limit, or
    (``"rest"``) what the other stages of ``projection`` and the reserve leave."""
    if stage.budget_share == REST:
        return rest_flops(plan, [p.flops for p in projection.stages if p.name != stage.name])
    return int(stage.budget_share * plan.budget.limit)


def project_training_stage(model: Any, plan: Plan, stage: StageSpec, runs: list[TrainConfig], shapes: DataShapes,
                           available: int) -> tuple[list[RunProjection], int]:
    """The runs of a training stage fitted to ``available`` FLOPs (the selection scoring taken
    first, the rest split evenly between the runs), and the scoring's FLOPs."""
    scoring = selection_flops(model, plan, stage, runs, shapes)
    share = (available - scoring) // len(runs)
    return [fit_run(model, plan, stage, config, shapes, share) for config in runs], scoring


def _project_stage(model: Any, plan: Plan, stage: StageSpec, shapes: DataShapes,
                   selections: dict[str, TrainConfig], available: int) -> StageProjection:
    if not stage.source:
        candidates: list[TrainConfig | None] = [None]
    elif stage.source in selections:
        candidates = [selections[stage.source]]
    else:
        candidates = _candidates(plan, stage.source)
    if stage.kind == "baseline":
        return StageProjection(stage.name, stage.kind, forecast_flops(model, plan, shapes),
                               note=f"untrained model: {', '.join(f.method_name for f in plan.forecast_passes())}; "
                                    "upper bound")
    if stage.kind == "evaluate":
        flops = max(forecast_flops(model, plan, shapes, chosen.lora_config())
                    + base_validation_flops(model, plan, chosen, shapes)  # the untrained base, same windows
                    for chosen in candidates)
        return StageProjection(stage.name, stage.kind, flops, note=f"adapter of {stage.source!r}; upper bound")
    options = [project_training_stage(model, plan, stage, run_configs(plan, stage, chosen), shapes, available)
               for chosen in candidates]
    totals = [sum(run.flops for run in runs) + scoring for runs, scoring in options]
    costliest = max(range(len(options)), key=totals.__getitem__)
    runs, scoring = options[costliest]
    problem = context_problem(model, stage, [run.config for option, _ in options for run in option], shapes)
    if not problem and stage.steps is None and any(run.config.steps == 0 for run in runs):
        problem = (f"its share ({max(available, 0):.4g} FLOPs for {len(runs)} run(s)) does not pay for "
                   "a single training step")
    notes = []
    if scoring and plan.selection.scores(stage.kind):
        notes.append(f"incl. {scoring:.3g} to forecast {shapes.selection_series} validation trajectories per run")
    elif scoring:
        notes.append(f"incl. {scoring:.3g} to score every run at context {max(stage.contexts)}")
    if len(candidates) > 1:
        steps = sorted({run.config.steps for option, _ in options for run in option})
        notes.append(f"upper bound over the {len(candidates)} settings {stage.source!r} may select; steps "
                     f"{steps[0]}-{steps[-1]} depending on the one selected (shown: the costliest)")
    return StageProjection(stage.name, stage.kind, totals[costliest], tuple(runs), "; ".join(notes), problem)


def context_problem(model: Any, stage: StageSpec, runs: list[TrainConfig], shapes: DataShapes) -> str:
    """Why the contexts (tokens) of ``runs`` cannot train, naming the plan key that sets them:
    longer than the model's positions, or than every validation trajectory (no window is filled). "" if none."""
    key = ("contexts" if stage.kind == "context" else "grid context" if "context" in stage.grid
           else "context (its override)" if "context" in stage.overrides else "training.context")
    longest, positions = max(run.context for run in runs), model_positions(model)
    if positions is not None and longest > positions:
        return f"{key} = {longest} tokens is longer than the model's {positions} positions (max_position_embeddings)"
    if shapes.validation_lengths and longest > max(shapes.validation_lengths):
        return (f"{key} = {longest} tokens is longer than every validation trajectory (the longest has "
                f"{max(shapes.validation_lengths)} tokens): no window can be filled; lower it")
    return ""


def model_positions(model: Any) -> int | None:
    """The model's ``max_position_embeddings`` (tokens), read from a config or a local / cached
    model's config.json (never the network); None where it cannot be read."""
    if isinstance(model, str):
        from transformers import AutoConfig

        try:
            model = AutoConfig.from_pretrained(model, local_files_only=True)
        except (OSError, ValueError):
            return None
    return getattr(model, "max_position_embeddings", None)


def _candidates(plan: Plan, source: str) -> list[TrainConfig]:
    """Every setting stage ``source`` could select (recursively through its own ``from``)."""
    stage = plan.stage(source)
    upstream = _candidates(plan, stage.source) if stage.source else [None]
    return [config for chosen in upstream for config in run_configs(plan, stage, chosen)]


def plan_model(plan: Plan) -> Any:
    """What ``flopcount.model_shape`` reads the plan's model from (``tiny`` and ``llmtime-base``,
    the tiny architecture pretrained, are a config here: projecting builds nothing)."""
    from experiments.models.loading import BASE_MODEL, TINY_MODEL, tiny_config

    return tiny_config() if plan.model.source in (TINY_MODEL, BASE_MODEL) else plan.model.source

