"""Experiment plans: one TOML file names the model, the data, the budget and every stage.

    plan = load_plan("coursework")              # a shipped plan (experiments/plans/*.toml)
    plan = load_plan("my_plan.toml")            # or a file of your own

A plan file has the tables ``[model]``, ``[data]``, ``[budget]``, ``[training]`` (defaults for
every training run), ``[forecast]`` (how the test split is forecast) and an array of
``[[stages]]``, run in order. Stage kinds:

- ``baseline``: the untrained model and the non-LLM baselines forecast the test split;
- ``train``: one LoRA run with the training defaults (plus overrides);
- ``sweep``: a grid over training settings (``grid = {learning_rate = [...], lora_rank = [...]}``);
- ``context``: a sweep over ``contexts = [...]`` with the best setting of stage ``from``;
- ``final``: one run with the best setting of stage ``from``;
- ``evaluate``: the trained adapter of stage ``from`` forecasts the test split.

Training stages spend at most ``budget_share`` of the limit (split evenly between the runs of a
sweep), each run taking as many steps as that pays for, up to ``max_steps`` (or exactly
``steps``). ``budget_share = "rest"`` takes what the other stages leave. Every key is checked:
an unknown key, a wrong type or a missing table is an error naming the file and the key.

Paths in ``[data]`` may start with ``{shared}`` (the ``../shared`` directory beside the project,
or ``$LLMTIME_SHARED``); other relative paths are relative to the plan file.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from experiments.data import ALPHA_RULES, DataConfig
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
from experiments.training.config import TrainConfig
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
class DataSpec:
    """Where the trajectories come from: ``path`` (an HDF5 file), and when ``fallback =
    "simulate"``, ``lvdata.simulate`` if that file is missing (``path`` empty: always simulate)."""

    path: str = ""
    fallback: str = "error"
    simulate_systems: int = 1000
    simulate_seed: int = 0
    split_seed: int = 0
    test_ids: tuple[int, ...] = ()
    alpha_rule: str = "per_trajectory"
    precision: int = 2
    prompt_steps: int = 50
    forecast_steps: int = 50


@dataclass(frozen=True)
class BudgetSpec:
    """``limit`` in FLOPs over every experiment of the plan, priced by ``convention``."""

    limit: int
    convention: str = "coursework"


@dataclass(frozen=True)
class TrainingSpec:
    """Defaults of every training run (see ``experiments.TrainConfig``)."""

    batch_size: int = 4
    context: int = 512
    learning_rate: float = 1e-5
    lora_rank: int = 4
    lora_alpha: float = 0.0  # 0: alpha = rank
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    eval_every: int = 100
    eval_windows: int = 0  # 0: every validation window
    checkpoint_every: int = 100
    seed: int = 0


@dataclass(frozen=True)
class ForecastSpec:
    """How the test split is forecast: ``series`` trajectories (0: all), greedy and/or
    ``samples`` sampled continuations at ``temperature``, ``batch_size`` prompts at a time, all
    with LLMTIME-constrained decoding; ``unconstrained`` adds a greedy forecast without the
    grammar, to measure how often the model breaks the format on its own."""

    series: int = 0
    greedy: bool = True
    unconstrained: bool = True
    samples: int = 5
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    max_int_digits: int = 2
    seed: int = 0
    plot_series: int = 3


@dataclass(frozen=True)
class StageSpec:
    """One stage (see the module docstring for the kinds)."""

    name: str
    kind: str
    source: str = ""  # the TOML key ``from``: the stage whose best setting this one uses
    steps: int = 0
    max_steps: int = 0
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
    data: DataSpec
    budget: BudgetSpec
    training: TrainingSpec
    forecast: ForecastSpec
    stages: tuple[StageSpec, ...]

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"plan {self.name!r} has no stage {name!r}; stages: {[s.name for s in self.stages]}")

    def data_config(self) -> DataConfig:
        """The ``DataConfig`` of this plan, with its path resolved (None: simulate)."""
        return DataConfig(
            path=resolve_data_path(self), simulate_systems=self.data.simulate_systems,
            simulate_seed=self.data.simulate_seed, split_seed=self.data.split_seed,
            test_ids=self.data.test_ids or None, alpha_rule=self.data.alpha_rule, precision=self.data.precision,
            prompt_steps=self.data.prompt_steps, forecast_steps=self.data.forecast_steps,
        )  # fmt: skip


def shipped_plans() -> dict[str, Path]:
    """Name -> path of the plans shipped in ``experiments/plans``."""
    folder = Path(str(resources.files("experiments") / "plans"))
    return {path.stem: path for path in sorted(folder.glob("*.toml"))}


def load_plan(name_or_path: str | Path) -> Plan:
    """Read and check a plan: a shipped plan's name or a path to a TOML file."""
    shipped = shipped_plans()
    path = shipped.get(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise PlanError(f"no plan {str(name_or_path)!r}: not a file, and not a shipped plan ({', '.join(shipped)})")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: not valid TOML: {error}") from None
    return parse_plan(document, path)


def parse_plan(document: dict[str, Any], path: Path) -> Plan:
    """Build a ``Plan`` from a parsed TOML document, checking every key and type."""
    where = str(path)
    check_keys(document, {"name", "description", "model", "data", "budget", "training", "forecast", "stages"},
                where, required={"model", "budget", "stages"})
    model = section(ModelSpec, document["model"], f"{where} [model]")
    budget_table = as_table(document["budget"], f"{where} [budget]")
    limit = budget_table.get("limit")
    if isinstance(limit, float) and limit.is_integer():
        budget_table = {**budget_table, "limit": int(limit)}
    budget = section(BudgetSpec, budget_table, f"{where} [budget]")
    if budget.limit <= 0:
        raise PlanError(f"{where} [budget]: limit must be a positive number of FLOPs, got {budget.limit}")
    if budget.convention not in CONVENTIONS:
        raise PlanError(f"{where} [budget]: convention must be one of {sorted(CONVENTIONS)}, got {budget.convention!r}")
    data = section(DataSpec, document.get("data", {}), f"{where} [data]")
    if data.alpha_rule not in ALPHA_RULES:
        raise PlanError(f"{where} [data]: alpha_rule must be one of {ALPHA_RULES}, got {data.alpha_rule!r}")
    if data.fallback not in ("error", "simulate"):
        raise PlanError(f"{where} [data]: fallback must be 'error' or 'simulate', got {data.fallback!r}")
    training = section(TrainingSpec, document.get("training", {}), f"{where} [training]")
    forecast = section(ForecastSpec, document.get("forecast", {}), f"{where} [forecast]")
    stages = _stages(document["stages"], where)
    name = document.get("name", path.stem)
    if not isinstance(name, str) or not isinstance(document.get("description", ""), str):
        raise PlanError(f"{where}: name and description must be strings")
    plan = Plan(name, document.get("description", ""), path, model, data, budget, training, forecast, stages)
    check_values(plan)
    return plan


def check_values(plan: Plan) -> None:
    """Build every run's ``TrainConfig`` and the forecast and data configs now, so that a value
    they refuse (rank 0, context 1, ...) stops the plan before any FLOP is spent."""
    from experiments.forecasting.generate import ForecastConfig

    where = str(plan.path)
    for stage in plan.stages:
        for settings in run_settings(plan, stage) if stage.trains else ():
            try:
                train_config(stage.name, settings, steps=max(stage.steps, stage.max_steps))
            except (TypeError, ValueError) as error:
                raise PlanError(f"{where} stage {stage.name!r}: {error}") from None
    spec = plan.forecast
    if not (spec.greedy or spec.samples):
        raise PlanError(f"{where} [forecast]: set greedy = true or samples >= 1 (or both)")
    try:
        ForecastConfig(k=plan.data.prompt_steps, m=plan.data.forecast_steps, batch_size=spec.batch_size,
                       max_int_digits=spec.max_int_digits, temperature=spec.temperature, top_p=spec.top_p)
        DataConfig(simulate_systems=plan.data.simulate_systems, alpha_rule=plan.data.alpha_rule,
                   precision=plan.data.precision, prompt_steps=plan.data.prompt_steps,
                   forecast_steps=plan.data.forecast_steps)
    except (TypeError, ValueError) as error:
        raise PlanError(f"{where} [forecast] / [data]: {error}") from None


def run_settings(plan: Plan, stage: StageSpec, chosen: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The training settings of each run of ``stage``: the plan's defaults, the best setting
    ``chosen`` from the stage named in ``from`` (if any), the stage's overrides, then its grid."""
    base = {**asdict(plan.training), **(chosen or {}), **stage.overrides}
    if stage.kind == "sweep":
        keys = list(stage.grid)
        return [{**base, **dict(zip(keys, values))} for values in itertools.product(*stage.grid.values())]
    if stage.kind == "context":
        return [{**base, "context": context} for context in stage.contexts]
    return [base]


def train_config(experiment: str, settings: dict[str, Any], steps: int) -> TrainConfig:
    """The ``TrainConfig`` of one planned run."""
    return TrainConfig(
        experiment=experiment, steps=steps, batch_size=settings["batch_size"], context=settings["context"],
        learning_rate=settings["learning_rate"], lora_rank=settings["lora_rank"],
        lora_alpha=settings["lora_alpha"] or None, lora_targets=tuple(settings["lora_targets"]),
        eval_every=settings["eval_every"], eval_windows=settings["eval_windows"] or None,
        checkpoint_every=settings["checkpoint_every"], seed=settings["seed"],
    )  # fmt: skip




def resolve_data_path(plan: Plan) -> str | None:
    """The plan's data file, or None to simulate; a missing file is an error unless the plan
    falls back to simulation."""
    if not plan.data.path:
        return None
    path = Path(plan.data.path.replace("{shared}", str(SHARED_DIR)))
    if not path.is_absolute():
        path = plan.path.parent / path
    if path.is_file():
        return str(path)
    if plan.data.fallback == "simulate":
        return None
    raise PlanError(f"{plan.path} [data]: data file {path} does not exist (set fallback = \"simulate\" "
                    f"to simulate instead)")


# -- checking ------------------------------------------------------------------------------

_TRAINING_FIELDS = {f.name: f.type for f in fields(TrainingSpec)}
_TRAINING_KEYS = set(_TRAINING_FIELDS)
_STAGE_KEYS = {
    "baseline": {"name", "kind"},
    "train": {"name", "kind", "steps", "max_steps", "budget_share"} | _TRAINING_KEYS,
    "sweep": {"name", "kind", "steps", "max_steps", "budget_share", "grid"} | _TRAINING_KEYS,
    "context": {"name", "kind", "steps", "max_steps", "budget_share", "contexts", "from"},
    "final": {"name", "kind", "steps", "max_steps", "budget_share", "from"},
    "evaluate": {"name", "kind", "from"},
}
_GRID_KEYS = {"learning_rate", "lora_rank", "lora_alpha", "batch_size", "context"}


def _stages(raw: Any, where: str) -> tuple[StageSpec, ...]:
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
        section(TrainingSpec, overrides, label)  # type-checks the overrides
        stage = StageSpec(
            name=name, kind=kind, source=source, overrides=overrides,
            steps=typed(table, "steps", int, label, 0), max_steps=typed(table, "max_steps", int, label, 0),
            budget_share=_share(table.get("budget_share", 0.0), label),
            grid=_grid(table.get("grid", {}), label) if kind == "sweep" else {},
            contexts=int_list(table.get("contexts", []), "contexts", label) if kind == "context" else (),
        )  # fmt: skip
        if stage.trains:
            if (stage.steps > 0) == (stage.max_steps > 0):
                raise PlanError(f"{label}: give exactly one of steps (exact) or max_steps (up to, fitted to "
                                "the budget)")
            if stage.max_steps and not stage.budget_share:
                raise PlanError(f"{label}: max_steps needs a budget_share (a fraction of the limit, or \"rest\")")
        if kind == "sweep" and not stage.grid:
            raise PlanError(f"{label}: a sweep needs a non-empty grid, e.g. grid = {{ lora_rank = [2, 4, 8] }}")
        if kind == "context" and not stage.contexts:
            raise PlanError(f"{label}: a context stage needs contexts = [...]")
        stages.append(stage)
    shares = [s.budget_share for s in stages if isinstance(s.budget_share, float)]
    if sum(shares) > 1 + 1e-9:
        raise PlanError(f"{where}: the stages' budget_share add up to {sum(shares):.3g} > 1")
    if sum(s.budget_share == REST for s in stages) > 1:
        raise PlanError(f"{where}: only one stage may take budget_share = \"rest\"")
    return tuple(stages)


def _grid(raw: Any, where: str) -> dict[str, tuple[Any, ...]]:
    table = as_table(raw, f"{where} grid")
    check_keys(table, _GRID_KEYS, f"{where} grid")
    grid = {}
    for key, values in table.items():
        expected = SCALARS[_TRAINING_FIELDS[key]]
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
