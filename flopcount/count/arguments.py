"""Argument checks shared by the counting functions: clear errors naming the bad value."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from flopcount.count.components import PROJECTIONS
from flopcount.ledger.sqlite_file import MAX_FLOPS, SQLITE_INTEGER_MAX


def check_count(name: str, value: Any, minimum: int) -> None:
    """Raise unless ``value`` is an int (not a bool) ``>= minimum``; ``name`` says which."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_lora(lora_rank: int, lora_targets: Sequence[str]) -> tuple[str, ...]:
    """Validate a LoRA rank and target list; return the targets counted (none at rank 0)."""
    check_count("lora_rank", lora_rank, minimum=0)
    if isinstance(lora_targets, str):
        raise TypeError(f"lora_targets must be a sequence of projection names, got the string {lora_targets!r}")
    targets = tuple(lora_targets)
    unknown = [t for t in targets if t not in PROJECTIONS]
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown}; choose from {', '.join(PROJECTIONS)}")
    if len(set(targets)) != len(targets):
        raise ValueError(f"duplicate LoRA target in {list(targets)}")
    if lora_rank and not targets:
        raise ValueError(f"lora_rank={lora_rank} needs at least one LoRA target")
    return targets if lora_rank else ()


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
