"""Argument checks shared by the counting functions: clear errors naming the bad value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flopcount.count.components import PROJECTIONS


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
