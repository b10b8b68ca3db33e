"""Checks of the values the ledger stores: FLOPs, steps and tokens as exact ints it can hold."""

from __future__ import annotations

import operator
from typing import Any

from flopcount.ledger.sqlite_file import MAX_FLOPS


def as_count(value: Any, what: str, maximum: int = MAX_FLOPS) -> int:
    """Return ``value`` as an int in ``[0, maximum]``; integral floats such as ``1e17`` pass."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got a bool")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{what} must be a whole number, got {value!r}")
        value = int(value)
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}") from None
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} must be between 0 and {maximum}, got {value}")
    return value


def as_limit(value: Any) -> int:
    """Return a budget limit as a positive int of FLOPs that SQLite can store (< 2**63)."""
    limit = as_count(value, "budget limit (FLOPs)")
    if limit == 0:
        raise ValueError("budget limit (FLOPs) must be positive, got 0")
    return limit
