"""``LoRALinear``: a frozen ``nn.Linear`` plus a trainable low-rank update.

For an input ``x`` of shape ``(..., in_features)``::

    y = base(x) + (alpha / r) * B @ A @ dropout(x)

with ``A`` of shape ``(r, in_features)`` (Kaiming-uniform, as ``nn.Linear`` and peft) and
``B`` of shape ``(out_features, r)`` (zeros), so the update starts at exactly zero while
gradients still reach ``B``. ``alpha`` defaults to ``r`` (scaling 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def resolve_lora_hyperparameters(r: int, alpha: float | None, dropout: float) -> float:
    """Validate LoRA hyperparameters and return ``alpha`` with its default (``r``) applied.

    Raises ``ValueError`` (``TypeError`` for a non-integer rank) naming the bad value.
    """
    if isinstance(r, bool) or not isinstance(r, int):
        raise TypeError(f"LoRA rank r must be an int, got {r!r} ({type(r).__name__})")
    if r < 1:
        raise ValueError(f"LoRA rank r must be >= 1, got {r}")
    if alpha is None:
        alpha = r
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"LoRA alpha must be a positive number or None (meaning r), got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must be a probability in [0, 1), got {dropout!r}")
    return float(alpha)


class LoRALinear(nn.Module):
    """Wrap ``linear`` (whose weight and bias are frozen) with a rank-``r`` LoRA update.

    Attributes:
        base: the wrapped ``nn.Linear``; its parameters have ``requires_grad=False``.
        lora_A: trainable ``(r, in_features)``.
        lora_B: trainable ``(out_features, r)``, zeros at construction.
        r, alpha, scaling: rank, LoRA alpha and ``scaling = alpha / r``.
        dropout: ``nn.Dropout(p)`` on the LoRA branch input, or ``nn.Identity`` when ``p == 0``
            (no tensor op at all, which is what the FLOP model assumes).
        merged: whether ``scaling * B @ A`` is currently folded into ``base.weight``.
    """

    def __init__(self, linear: nn.Linear, r: int, alpha: float | None = None, dropout: float = 0.0):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(linear).__name__}")
        self.alpha = resolve_lora_hyperparameters(r, alpha, dropout)
        self.r = r
        self.scaling = self.alpha / r
        self.base = linear.requires_grad_(False)
        weight = linear.weight
        self.lora_A = nn.Parameter(torch.empty(r, linear.in_features, dtype=weight.dtype, device=weight.device))
        self.lora_B = nn.Parameter(torch.zeros(linear.out_features, r, dtype=weight.dtype, device=weight.device))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        # The exact pre-merge weight, so that unmerge() is bit-for-bit (not a subtraction).
        self.register_buffer("_unmerged_weight", None, persistent=False)
        self.reset_lora_parameters()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @torch.no_grad()
    def reset_lora_parameters(self) -> None:
        """A: Kaiming-uniform with ``a = sqrt(5)`` (bound ``1/sqrt(in_features)``); B: zeros."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        """The update ``scaling * B @ A``, shape ``(out_features, in_features)``."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        # (..., in) -> A -> (..., r) -> B -> (..., out); then the scale, then the add.
        return self.base(x) + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ``scaling * B @ A`` into ``base.weight``; forward then runs the base layer only.

        Meant for inference: while merged, the LoRA parameters do not take part in forward.
        """
        if self.merged:
            raise RuntimeError("LoRALinear.merge(): the LoRA update is already merged; call unmerge() first")
        self._unmerged_weight = self.base.weight.detach().clone()
        self.base.weight.add_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weight saved by ``merge()`` (bit-for-bit)."""
        if not self.merged:
            raise RuntimeError("LoRALinear.unmerge(): the LoRA update is not merged; nothing to unmerge")
        self.base.weight.copy_(self._unmerged_weight)
        self._unmerged_weight = None
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:g}, merged={self.merged}"
