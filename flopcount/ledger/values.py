"""Checks of the values the ledger stores: FLOPs, steps and tokens as exact ints it can hold."""

from __future__ import annotations

import operator
from decimal import Decimal
from typing import Any

from flopcount.ledger.sqlite_file import MAX_FLOPS, SQLITE_INTEGER_MAX


def as_count(value: Any, what: str, maximum: int = MAX_FLOPS) -> int:
    """Return ``value`` as an int in ``[0, maximum]``; integral floats such as ``1e17`` pass.

    A float above ``2**63 - 1`` stands for the decimal number it is written as: ``1e27`` is
    ``10**27``, not its binary value ``1000000000000000013287555072`` (ten charges of ``1e26``
    then fill a limit of ``1e27`` exactly). Below that, a float keeps its binary value, exact
    for every integer up to ``2**53`` and what ledgers made before big counts stored.
    """
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got a bool")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{what} must be a whole number, got {value!r}")
        value = int(Decimal(repr(value))) if abs(value) > SQLITE_INTEGER_MAX else int(value)
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}") from None
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} must be between 0 and {maximum}, got {value}")
    return value


def as_limit(value: Any) -> int:
    """Return a budget limit as a positive int of FLOPs that a ledger can store (<= ``MAX_FLOPS``)."""
    limit = as_count(value, "budget limit (FLOPs)")
    if limit == 0:
        raise ValueError("budget limit (FLOPs) must be positive, got 0")
    return limit
