"""Checking parsed TOML against a dataclass: every refusal is a PlanError naming where and what."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from experiments.pipeline.plan_schema import PlanError, coerce, int_list, section, typed

WHERE = "plan.toml [forecast]"


@dataclass(frozen=True)
class Settings:
    name: str
    samples: int = 5
    top_p: float = 1.0
    greedy: bool = True
    series: int | None = None
    targets: tuple[str, ...] = ("q_proj",)

    def __post_init__(self) -> None:
        if self.top_p > 1:
            raise ValueError(f"top_p must be <= 1, got {self.top_p}")


def test_a_table_becomes_the_dataclass_with_ints_widened_and_arrays_as_tuples():
    settings = section(Settings, {"name": "a", "top_p": 1, "targets": ["q_proj", "v_proj"], "series": 3}, WHERE)
    assert settings == Settings(name="a", top_p=1.0, targets=("q_proj", "v_proj"), series=3)
    assert isinstance(settings.top_p, float)
    assert section(Settings, {"name": "b", "samples": 2}, WHERE, exclude={"greedy"}).samples == 2


@pytest.mark.parametrize("raw, message", [
    ([1, 2], r"plan.toml \[forecast\]: must be a table, got list"),
    ({"name": "a", "sample": 2}, r"unknown key\(s\) \['sample'\]; allowed: \["),
    ({"samples": 2}, r"missing required key\(s\) \['name'\]"),
    ({"name": "a", "greedy": 1}, "greedy must be bool, got int 1"),
    ({"name": "a", "samples": True}, "samples must be int, got bool True"),
    ({"name": "a", "top_p": float("nan")}, "top_p must be a finite number"),
    ({"name": "a", "samples": -1}, "samples must be >= 0, got -1"),
    ({"name": "a", "targets": "q_proj"}, "targets must be an array, got str"),
    ({"name": "a", "targets": ["q_proj", 3]}, r"targets\[1\] must be str, got int 3"),
    ({"name": "a", "top_p": 1.5}, r"plan.toml \[forecast\]: top_p must be <= 1, got 1.5"),  # the class's own check
])
def test_bad_tables_are_refused_naming_the_table_and_the_key(raw, message):
    with pytest.raises(PlanError, match=message):
        section(Settings, raw, WHERE)


def test_the_small_checks_keep_defaults_and_refuse_repeated_or_non_positive_ids():
    assert typed({}, "seed", int, WHERE, default=0) == 0 and typed({"seed": 3}, "seed", int, WHERE, 0) == 3
    assert coerce(2, float, "lr", WHERE) == 2.0 and int_list([972, 3], "test_ids", WHERE) == (972, 3)
    for bad in ([3, 3], [0, 1]):
        with pytest.raises(PlanError, match="test_ids must be distinct positive integers"):
            int_list(bad, "test_ids", WHERE)
