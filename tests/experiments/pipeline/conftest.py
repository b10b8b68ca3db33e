"""Miniature plans for the pipeline tests: one writer, so the settings every test shares are
written once and each test file states only its stages and what it changes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

# every stage kind in miniature: a sweep of two cells, two contexts, a final that takes the rest
MINI_STAGES = """
[[stages]]
kind = "baseline"

[[stages]]
name = "grid"
kind = "sweep"
grid = { lora_rank = [1, 2] }
max_steps = 3
budget_share = 0.3

[[stages]]
name = "context"
kind = "context"
from = "grid"
contexts = [16, 32]
max_steps = 3
budget_share = 0.2

[[stages]]
name = "final"
kind = "final"
from = "context"
max_steps = 4
budget_share = "rest"

[[stages]]
name = "evaluate"
kind = "evaluate"
from = "final"
"""

# the tiny model on 30 simulated systems: a training step takes milliseconds
DATA = {"simulate_systems": 30, "prompt_steps": 20, "forecast_steps": 4}
TRAINING = {"batch_size": 2, "context": 32, "learning_rate": 1e-3, "lora_rank": 2, "eval_every": 2,
            "eval_windows": 4, "checkpoint_every": 2}
FORECAST = {"series": 2, "samples": 2, "batch_size": 2, "max_int_digits": 2, "plot_series": 1}

PlanWriter = Callable[..., Path]


def toml_table(name: str, values: dict[str, object]) -> str:
    """``[name]`` and its ``values`` (numbers, strings, booleans: JSON writes them as TOML does) as TOML."""
    return f"[{name}]\n" + "".join(f"{key} = {json.dumps(item)}\n" for key, item in values.items())


def miniature_plan(path: Path, tokenizer: Path, stages: str = MINI_STAGES, *, name: str = "mini",
                   limit: float = 2e12, reserve: float | None = None, training: dict | None = None,
                   forecast: dict | None = None, selection: dict | None = None) -> Path:
    """Write a plan on the tiny model to ``path``: ``stages`` (TOML ``[[stages]]``), the shared
    data, training and forecast settings updated by ``training`` / ``forecast`` (``forecast={}``
    for the defaults; None: no ``[forecast]`` table), ``selection`` (a ``[selection]`` table; None:
    none, selection by validation loss), a ``limit`` of FLOPs and its ``reserve``."""
    budget = {"limit": limit, **({} if reserve is None else {"reserve": reserve})}
    tables = [f'name = "{name}"\ndescription = "a plan in miniature, for the tests"\n',
              toml_table("model", {"source": "tiny", "tokenizer": str(tokenizer)}), toml_table("data", DATA),
              toml_table("budget", budget), toml_table("training", {**TRAINING, **(training or {})})]
    if forecast is not None:
        tables.append(toml_table("forecast", {**FORECAST, **forecast}))
    if selection is not None:
        tables.append(toml_table("selection", selection))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tables) + stages)
    return path


@pytest.fixture(scope="session")
def write_plan(qwen_assets) -> PlanWriter:
    """:func:`miniature_plan` with the shared tokenizer: ``write_plan(path, stages, **settings)``."""
    def write(path: Path, stages: str = MINI_STAGES, **settings) -> Path:
        return miniature_plan(path, qwen_assets, stages, **settings)
    return write


@pytest.fixture(scope="session")
def write_mini_plan(write_plan) -> Callable[..., Path]:
    """The miniature plan of every stage (``MINI_STAGES``) at ``directory / "mini.toml"``."""
    def write(directory: Path, limit: float = 2e12) -> Path:
        return write_plan(directory / "mini.toml", MINI_STAGES, limit=limit, forecast={})
    return write
