"""The validation pass: token-weighted mean cross-entropy over held-out windows.

Each rank scores its share of the windows (``indices[rank::world_size]``); the sums of nats
and of target tokens are added over ranks, so the result does not depend on the world size.
Scored with the *unwrapped* model: no DDP hooks, so ranks may run different batch counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from experiments.training.batching import Batch
from experiments.training.distinct_rows import causal_lm_nats, distinct_rows_output


def perplexity(cross_entropy_nats: float) -> float:
    """Perplexity ``exp(ce)`` of a mean cross-entropy in nats per token."""
    if not math.isfinite(cross_entropy_nats) or cross_entropy_nats < 0:
        raise ValueError(f"cross-entropy must be a finite number of nats >= 0, got {cross_entropy_nats}")
    return math.exp(cross_entropy_nats)


@dataclass(frozen=True)
class ValidationMetrics:
    """Validation loss of a training run: mean cross-entropy in nats per (non-padding) token."""

    cross_entropy_nats: float
    n_tokens: int

    def __post_init__(self) -> None:
        perplexity(self.cross_entropy_nats)
        if self.n_tokens <= 0:
            raise ValueError(f"n_tokens must be positive, got {self.n_tokens}")

    @property
    def perplexity(self) -> float:
        return perplexity(self.cross_entropy_nats)

    def to_dict(self) -> dict:
        return {"cross_entropy_nats": self.cross_entropy_nats, "perplexity": self.perplexity,
                "n_tokens": self.n_tokens}


def validation_indices(n_windows: int, eval_windows: int | None, seed: int) -> np.ndarray:
    """Indices of the windows every validation scores, sorted int64: all of them when
    ``eval_windows`` is None or at least ``n_windows``, else a subset of ``eval_windows``
    drawn once from ``seed`` (the same subset at every evaluation of a run)."""
    if n_windows < 1:
        raise ValueError("there are no validation windows: the validation split is empty or too short")
    if eval_windows is not None and eval_windows < 1:
        raise ValueError(f"eval_windows must be >= 1 or None (all), got {eval_windows}")
    if eval_windows is None or eval_windows >= n_windows:
        return np.arange(n_windows, dtype=np.int64)
    chosen = np.random.default_rng([seed, n_windows]).choice(n_windows, size=eval_windows, replace=False)
    return np.sort(chosen).astype(np.int64)


@torch.no_grad()
def loss_sums(model: nn.Module, windows, indices: np.ndarray, batch_size: int,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of target-token cross-entropies (nats) over ``windows[indices]`` and the number of
    target tokens, as float64 / int64 scalar tensors on ``device``; batches of ``batch_size``."""
    was_training = model.training
    model.eval()
    nats = torch.zeros((), dtype=torch.float64, device=device)
    tokens = torch.zeros((), dtype=torch.int64, device=device)
    try:
        with distinct_rows_output(model):  # exact; over the few distinct rows of a frozen head, when it has them
            for start in range(0, len(indices), batch_size):
                batch = Batch.from_windows(windows, indices[start:start + batch_size], device)
                batch_nats, batch_tokens = causal_lm_nats(model, batch.input_ids, batch.attention_mask, batch.labels)
                nats += batch_nats.double()
                tokens += batch_tokens
    finally:
        model.train(was_training)
    return nats, tokens


def validate(model: nn.Module, windows, indices: np.ndarray, batch_size: int, accelerator=None) -> ValidationMetrics:
    """Mean cross-entropy (nats per target token) of ``model`` on ``windows[indices]``, the
    work shared over the ranks of ``accelerator`` (an ``accelerate.Accelerator``; None: one
    process on CPU). Every rank must call it; every rank gets the same result."""
    if accelerator is None:
        rank, world_size, device = 0, 1, torch.device("cpu")
    else:
        rank, world_size, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    nats, tokens = loss_sums(model, windows, indices[rank::world_size], batch_size, device)
    if world_size > 1:
        nats, tokens = accelerator.reduce(nats, "sum"), accelerator.reduce(tokens, "sum")
    if int(tokens) == 0:
        raise ValueError(f"the {len(indices)} validation windows hold no target tokens")
    return ValidationMetrics(cross_entropy_nats=float(nats / tokens), n_tokens=int(tokens))
