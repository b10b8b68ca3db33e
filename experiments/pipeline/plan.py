"""Experiment plans: one TOML file names the model, the data, the budget and every stage.

    plan = load_plan("coursework")              # a shipped plan (experiments/plans/*.toml)
    plan = load_plan("my_plan.toml")            # or a file of your own

A plan file has the tables ``[model]``, ``[data]``, ``[budget]``, ``[training]`` (defaults for
every training run), ``[forecast]`` (how the test split is forecast), the optional
``[selection]`` (how sweeps pick their best run: validation loss or validation forecast error,
:mod:`experiments.pipeline.selection`) and an array of ``[[stages]]``, run in order. Stage kinds:

- ``baseline``: the untrained model and the non-LLM baselines forecast the test split;
- ``train``: one LoRA run with the training defaults (plus overrides);
- ``sweep``: a grid over training settings (``grid = {learning_rate = [...], lora_rank = [...]}``);
- ``context``: a sweep over ``contexts = [...]`` with the best setting of stage ``from``;
- ``final``: one run with the best setting of stage ``from``;
- ``evaluate``: the trained adapter of stage ``from`` forecasts the test split.

Training stages spend at most ``budget_share`` of the limit (split evenly between the runs of a
sweep), each run taking as many steps as that pays for, up to ``max_steps`` (or exactly
``steps``). ``budget_share = "rest"`` takes what the other stages leave, less ``[budget]
reserve`` (a fraction of the limit, default 0) kept to redo work lost to crashes: every stage is
capped at what it was planned, and a crash's re-runs come out of that reserve (and of what the
stages' projections leave unspent), never out of a later stage's share. Every key is checked:
an unknown key, a wrong type or a missing table is an error naming the file and the key.

Each table parses straight into the type the code uses: ``[training]`` and a stage's
overrides into :class:`~experiments.training.config.TrainConfig`, ``[data]`` into
:class:`~experiments.data.DataConfig`, ``[forecast]`` into
:class:`~experiments.forecasting.held_out.ForecastPlan`; a value those types refuse stops the
plan when it loads, before any FLOP is spent. Unset values are left out of the TOML (None).

Paths in ``[data]`` may start with ``{shared}`` (the ``../shared`` directory beside the project,
or ``$LLMTIME_SHARED``); other relative paths are relative to the plan file.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from experiments.data import DataConfig
from experiments.forecasting.forecast_config import ForecastConfig
from experiments.forecasting.held_out import ForecastPlan
from experiments.pipeline.selection import SelectionPlan
from experiments.pipeline.plan_schema import (
    SCALARS,
    PlanError,
    as_table,
    check_keys,
    coerce,
    int_list,
    list_of,
    section,
    typed,
)
from experiments.training.config import RUN_IDENTITY, BudgetConfig, TrainConfig
from flopcount.ledger.exact import MAX_FLOPS
from flopcount.ledger.values import as_limit
from flopcount.count.conventions import CONVENTIONS
from lvdata.defaults import SHARED_DIR

STAGE_KINDS = ("baseline", "train", "sweep", "context", "final", "evaluate")
TRAINING_STAGES = ("train", "sweep", "context", "final")
REST = "rest"


@dataclass(frozen=True)
class ModelSpec:
    """``source``: hub id, local directory or ``"tiny"``; ``tokenizer``: its source (default:
    the model's; for ``tiny`` the shared Qwen2.5 tokenizer); ``dtype`` of the base weights."""

    source: str
    tokenizer: str | None = None
    dtype: str = "float32"


@dataclass(frozen=True)
class StageSpec:
    """One stage (see the module docstring for the kinds)."""

    name: str
    kind: str
    source: str = ""  # the TOML key ``from``: the stage whose best setting this one uses
    steps: int | None = None
    max_steps: int | None = None
    budget_share: float | str = 0.0
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    contexts: tuple[int, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def trains(self) -> bool:
        return self.kind in TRAINING_STAGES


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    path: Path
    model: ModelSpec
    data: DataConfig
    budget: BudgetConfig  # limit (FLOPs over every experiment of the plan) and convention; ledger: the run's
    training: TrainConfig
    forecast: ForecastPlan
    stages: tuple[StageSpec, ...]
    selection: SelectionPlan = SelectionPlan()  # how sweeps and contexts pick their best run
    text: str = ""  # what identifies the plan in a run directory: the TOML text, plus any --set lines

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"plan {self.name!r} has no stage {name!r}; stages: {[s.name for s in self.stages]}")

    def forecast_passes(self) -> tuple[ForecastConfig, ...]:
        """The ``generate`` passes of a forecasting stage (the runner runs them, the planner
        prices them): the data's context and forecast steps (in time steps) and its LLMTIME
        format (``DataConfig.llmtime_format``, the one the prompts are written in)."""
        return self.forecast.passes(self.data.prompt_steps, self.data.forecast_steps, self.data.llmtime_format())


def shipped_plans() -> dict[str, Path]:
    """Name -> path of the plans shipped in ``experiments/plans``."""
    folder = Path(str(resources.files("experiments") / "plans"))
    return {path.stem: path for path in sorted(folder.glob("*.toml"))}


def load_plan(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Plan:
    """Read and check a plan: a shipped plan's name or a path to a TOML file, with
    ``overrides`` (``"section.key=value"``, the value in TOML syntax; a bare word is a string)
    applied before it is checked, so they are validated exactly like the file."""
    shipped = shipped_plans()
    path = shipped.get(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise PlanError(f"no plan {str(name_or_path)!r}: not a file, and not a shipped plan ({', '.join(shipped)})")
    try:
        text = path.read_text(encoding="utf-8")
        document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: not valid TOML: {error}") from None
    for override in overrides:
        apply_override(document, override, path)
    try:
        plan = parse_plan(document, path)
    except PlanError as error:
        raise PlanError(f"{error}{override_origin(str(error), overrides)}") from None
    lines = "".join(f"\n# --set {override}" for override in overrides)
    return replace(plan, text=text + lines)


def apply_override(document: dict[str, Any], override: str, path: Path) -> None:
    """Set ``section.key`` of a parsed plan to ``value`` (``override`` is ``section.key=value``)."""
    key, equals, raw = override.partition("=")
    section_name, dot, name = key.strip().partition(".")
    if not equals or not dot or not name or "." in name:
        raise PlanError(f"--set {override!r}: expected section.key=value, e.g. training.learning_rate=2e-3")
    if section_name not in SETTABLE_SECTIONS:
        raise PlanError(f"--set {override!r}: section {section_name!r} cannot be set; choose from "
                        f"{', '.join(SETTABLE_SECTIONS)}")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string
    table = document.setdefault(section_name, {})
    if not isinstance(table, dict):
        raise PlanError(f"{path}: [{section_name}] must be a table")
    table[name] = value


def override_origin(message: str, overrides: Sequence[str]) -> str:
    """`` (from --set ...)`` when an error ``message`` about ``[section]``'s ``key`` concerns a
    value an override set, else ``""``: the TOML path alone would point at the wrong place."""
    culprits = []
    for override in overrides:
        section_name, _, name = override.partition("=")[0].strip().partition(".")
        if f"[{section_name}]" in message and re.search(rf"\b{re.escape(name)}\b", message):
            culprits.append(f"--set {override.strip()}")
    return f" (from {', '.join(culprits)})" if culprits else ""


SETTABLE_SECTIONS = ("model", "data", "budget", "training", "forecast", "selection")


def parse_plan(document: dict[str, Any], path: Path) -> Plan:
    """Build a ``Plan`` from a parsed TOML document, checking every key and type."""
    where = str(path)
    check_keys(document, {"name", "description", "model", "data", "budget", "training", "forecast", "selection",
                          "stages"},
               where, required={"model", "budget", "stages"})
    model = section(ModelSpec, document["model"], f"{where} [model]")
    budget_table = as_table(document["budget"], f"{where} [budget]")
    limit = budget_table.get("limit")
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and float(limit).is_integer() and limit > 0:
        try:  # exactly as Budget reads it: 1e27 is 10**27, and a limit no ledger can hold is refused here
            budget_table = {**budget_table, "limit": as_limit(limit)}
        except ValueError:
            raise PlanError(f"{where} [budget]: limit must be a whole number of FLOPs from 1 to {MAX_FLOPS:.4g} "
                            f"(what a ledger holds), got {limit:.4g}") from None
    budget = section(BudgetConfig, budget_table, f"{where} [budget]",
                     exclude={"ledger", "require_fit", "synchronous", "experiment_limit"})
    if budget.limit <= 0:
        raise PlanError(f"{where} [budget]: limit must be a positive number of FLOPs, got {budget.limit}")
    if not 0 <= budget.reserve < 1:
        raise PlanError(f"{where} [budget]: reserve must be a fraction of the limit in [0, 1), got {budget.reserve}")
    if budget.convention not in CONVENTIONS:
        raise PlanError(f"{where} [budget]: convention must be one of {sorted(CONVENTIONS)}, got {budget.convention!r}")
    data_table = dict(as_table(document.get("data", {}), f"{where} [data]"))
    if isinstance(data_table.get("path"), str):
        data_table["path"] = resolve_data_path(data_table["path"], path)
    data = section(DataConfig, data_table, f"{where} [data]", exclude={"fractions"})
    training = section(TrainConfig, document.get("training", {}), f"{where} [training]", exclude=set(RUN_IDENTITY))
    forecast = section(ForecastPlan, document.get("forecast", {}), f"{where} [forecast]")
    selection = section(SelectionPlan, document.get("selection", {}), f"{where} [selection]")
    stages = _stages(document["stages"], training, where)
    shares = sum(s.budget_share for s in stages if isinstance(s.budget_share, float))
    if shares + budget.reserve > 1 + 1e-9:
        raise PlanError(f"{where}: the stages' budget_share ({shares:.3g}) and [budget] reserve ({budget.reserve:.3g}) "
                        "add up to more than 1")
    name = document.get("name", path.stem)
    if not isinstance(name, str) or not isinstance(document.get("description", ""), str):
        raise PlanError(f"{where}: name and description must be strings")
    return Plan(name, document.get("description", ""), path, model, data, budget, training, forecast, stages,
                selection, text=path.read_text(encoding="utf-8") if path.is_file() else "")


def run_configs(plan: Plan, stage: StageSpec, chosen: TrainConfig | None = None) -> list[TrainConfig]:
    """The settings of each run of ``stage`` (experiment name set, steps not yet): the plan's
    defaults, or the best setting ``chosen`` from the stage named in ``from``, then the
    stage's overrides, then its grid or its contexts."""
    base = replace(chosen or plan.training, **stage.overrides)
    if stage.kind == "sweep":
        keys = list(stage.grid)
        settings = [replace(base, **dict(zip(keys, values))) for values in itertools.product(*stage.grid.values())]
    elif stage.kind == "context":
        settings = [replace(base, context=context) for context in stage.contexts]
    else:
        settings = [base]
    return [replace(config, experiment=run_name(stage, config), steps=None) for config in settings]


def run_name(stage: StageSpec, config: TrainConfig) -> str:
    """Ledger name of a run: the stage, plus the swept values for a sweep or context stage."""
    if stage.kind == "sweep":
        return stage.name + "/" + ",".join(f"{_short(key)}={getattr(config, key):g}" for key in stage.grid)
    if stage.kind == "context":
        return f"{stage.name}/context={config.context}"
    return stage.name


def stage_of(experiment: str) -> str:
    """The stage a ledger experiment belongs to, as :func:`run_name` writes it: its name up to the
    first ``/`` (``grid/lr=1e-05,r=2`` -> ``grid``; ``evaluate/base-validation`` -> ``evaluate``)."""
    return experiment.split("/", 1)[0]


def _short(key: str) -> str:
    return {"learning_rate": "lr", "lora_rank": "r", "lora_alpha": "alpha", "batch_size": "batch"}.get(key, key)


def resolve_data_path(text: str, plan_path: Path) -> str:
    """A ``[data]`` path: ``{shared}`` expanded, relative paths taken from the plan's folder.
    Whether the file exists is decided when the data loads (``experiments.data.load_or_simulate``)."""
    resolved = Path(text.replace("{shared}", str(SHARED_DIR))).expanduser()
    return str(resolved if resolved.is_absolute() else plan_path.parent / resolved)


# -- checking ------------------------------------------------------------------------------

_TRAINING_KEYS = {f.name for f in fields(TrainConfig)} - set(RUN_IDENTITY)
_TRAINING_TYPES = {f.name: f.type for f in fields(TrainConfig)}
_STAGE_KEYS = {
    "baseline": {"name", "kind"},
    "train": {"name", "kind", "steps", "max_steps", "budget_share"} | _TRAINING_KEYS,
    "sweep": {"name", "kind", "steps", "max_steps", "budget_share", "grid"} | _TRAINING_KEYS,
    "context": {"name", "kind", "steps", "max_steps", "budget_share", "contexts", "from"},
    "final": {"name", "kind", "steps", "max_steps", "budget_share", "from"},
    "evaluate": {"name", "kind", "from"},
}
_GRID_KEYS = {"learning_rate", "lora_rank", "lora_alpha", "batch_size", "context"}


def _stages(raw: Any, training: TrainConfig, where: str) -> tuple[StageSpec, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
        raise PlanError(f"{where}: 'stages' must be a non-empty array of tables ([[stages]])")
    stages: list[StageSpec] = []
    for index, table in enumerate(raw):
        label = f"{where} [[stages]] #{index + 1}"
        kind = table.get("kind")
        if kind not in STAGE_KINDS:
            raise PlanError(f"{label}: kind must be one of {STAGE_KINDS}, got {kind!r}")
        name = table.get("name", kind)
        label = f"{where} stage {name!r}"
        check_keys(table, _STAGE_KEYS[kind], label, required={"kind"})
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise PlanError(f"{label}: name must be letters, digits, '-' or '_', got {name!r}")
        if any(stage.name == name for stage in stages):
            raise PlanError(f"{label}: two stages are named {name!r}")
        source = table.get("from", "")
        if kind in ("context", "final", "evaluate"):
            earlier = {stage.name: stage for stage in stages}
            if source not in earlier or not earlier[source].trains:
                raise PlanError(f"{label}: 'from' must name an earlier training stage, got {source!r}")
        overrides = {key: table[key] for key in _TRAINING_KEYS & table.keys()}
        overrides = {key: getattr(section(TrainConfig, overrides, label, exclude=set(RUN_IDENTITY)), key)
                     for key in overrides}  # type-checked and coerced
        stage = StageSpec(
            name=name, kind=kind, source=source, overrides=overrides,
            steps=typed(table, "steps", int, label, None), max_steps=typed(table, "max_steps", int, label, None),
            budget_share=_share(table.get("budget_share", 0.0), label),
            grid=_grid(table.get("grid", {}), label) if kind == "sweep" else {},
            contexts=int_list(table.get("contexts", []), "contexts", label) if kind == "context" else (),
        )  # fmt: skip
        if stage.trains:
            if (stage.steps is not None) == (stage.max_steps is not None):
                raise PlanError(f"{label}: give exactly one of steps (exact) or max_steps (up to, fitted to "
                                "the budget)")
            if not (stage.steps or stage.max_steps):
                raise PlanError(f"{label}: steps / max_steps must be >= 1")
            if stage.max_steps and not stage.budget_share:
                raise PlanError(f"{label}: max_steps needs a budget_share (a fraction of the limit, or \"rest\")")
        if kind == "sweep" and not stage.grid:
            raise PlanError(f"{label}: a sweep needs a non-empty grid, e.g. grid = {{ lora_rank = [2, 4, 8] }}")
        if kind == "context" and not stage.contexts:
            raise PlanError(f"{label}: a context stage needs contexts = [...]")
        if stage.trains:
            _check_runs(stage, training, label)
        stages.append(stage)
    shares = [s.budget_share for s in stages if isinstance(s.budget_share, float)]
    if sum(shares) > 1 + 1e-9:
        raise PlanError(f"{where}: the stages' budget_share add up to {sum(shares):.3g} > 1")
    if sum(s.budget_share == REST for s in stages) > 1:
        raise PlanError(f"{where}: only one stage may take budget_share = \"rest\"")
    return tuple(stages)


def _check_runs(stage: StageSpec, training: TrainConfig, label: str) -> None:
    """Build every run's ``TrainConfig`` now, so that a value it refuses (rank 0, context 1,
    ...) stops the plan before any FLOP is spent."""
    try:
        base = replace(training, **stage.overrides)
        for values in itertools.product(*stage.grid.values()):
            replace(base, **dict(zip(stage.grid, values)))
        for context in stage.contexts:
            replace(base, context=context)
    except (TypeError, ValueError) as error:
        raise PlanError(f"{label}: {error}") from None


def _grid(raw: Any, where: str) -> dict[str, tuple[Any, ...]]:
    table = as_table(raw, f"{where} grid")
    check_keys(table, _GRID_KEYS, f"{where} grid")
    grid = {}
    for key, values in table.items():
        expected = SCALARS[_TRAINING_TYPES[key]]
        items = tuple(list_of(values, expected, key, f"{where} grid"))
        if not items or len(set(items)) != len(items):
            raise PlanError(f"{where} grid: {key} must be a non-empty array of distinct values, got {values!r}")
        grid[key] = items
    return grid


def _share(value: Any, where: str) -> float | str:
    if value == REST:
        return REST
    share = coerce(value, float, "budget_share", where)
    if not 0 <= share <= 1:
        raise PlanError(f"{where}: budget_share must be a fraction in [0, 1] or \"rest\", got {value!r}")
    return share
