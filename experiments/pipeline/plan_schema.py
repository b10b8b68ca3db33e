"""Checking parsed TOML against dataclass fields: unknown or missing keys, wrong types.

Every error is a ``PlanError`` naming where (file and table) and what was wrong.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields
from typing import Any


class PlanError(ValueError):
    """A plan file that cannot be run as written; the message names the file and the key."""


SCALARS = {"int": int, "float": float, "str": str, "bool": bool,
           "str | None": str, "int | None": int, "float | None": float}  # None: the key is left out
TUPLES = {"tuple[str, ...]": str, "tuple[int, ...]": int, "tuple[int, ...] | None": int}


def section(cls: type, raw: Any, where: str, exclude: set[str] = frozenset()) -> Any:
    """``cls(**raw)`` after checking the keys against ``cls``'s fields (less ``exclude``) and
    each value's type; a value ``cls`` itself refuses is a ``PlanError`` naming ``where``."""
    table = as_table(raw, where)
    known = {f.name: f for f in fields(cls) if f.name not in exclude}
    required = {f.name for f in known.values() if f.default is MISSING and f.default_factory is MISSING}
    check_keys(table, set(known), where, required=required)
    values = {}
    for key, value in table.items():
        annotation = known[key].type
        if annotation in TUPLES:
            values[key] = tuple(list_of(value, TUPLES[annotation], key, where))
        else:
            values[key] = coerce(value, SCALARS[annotation], key, where)
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise PlanError(f"{where}: {error}") from None


def as_table(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: must be a table, got {type(raw).__name__}")
    return raw


def check_keys(table: dict[str, Any], allowed: set[str], where: str, required: set[str] = frozenset()) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise PlanError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(required - set(table))
    if missing:
        raise PlanError(f"{where}: missing required key(s) {missing}")


def coerce(value: Any, expected: type, key: str, where: str) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
        raise PlanError(f"{where}: {key} must be {expected.__name__}, got {type(value).__name__} {value!r}")
    if expected is float and not math.isfinite(value):
        raise PlanError(f"{where}: {key} must be a finite number, got {value!r}")
    if expected in (int, float) and value < 0:
        raise PlanError(f"{where}: {key} must be >= 0, got {value!r}")
    return value


def typed(table: dict[str, Any], key: str, expected: type, where: str, default: Any) -> Any:
    return coerce(table[key], expected, key, where) if key in table else default


def list_of(value: Any, item_type: type, key: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PlanError(f"{where}: {key} must be an array, got {type(value).__name__} {value!r}")
    return [coerce(item, item_type, f"{key}[{i}]", where) for i, item in enumerate(value)]


def int_list(value: Any, key: str, where: str) -> tuple[int, ...]:
    items = tuple(list_of(value, int, key, where))
    if any(item < 1 for item in items) or len(set(items)) != len(items):
        raise PlanError(f"{where}: {key} must be distinct positive integers, got {list(items)}")
    return items
