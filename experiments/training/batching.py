"""The training data order: deterministic, stateless, identical under any interruption.

The training windows are read as an endless *stream*: epoch ``e`` is a permutation of the
``n`` windows seeded by ``(seed, e)``, and stream position ``p`` is window
``permutation(seed, p // n)[p % n]``. Step ``s`` (1-based) of a run with ``world_size`` ranks
of ``batch_size`` windows each uses positions ``[(s-1)·B·W, s·B·W)``; rank ``r`` takes the
``r``-th block of ``B`` of them. A resumed run therefore needs only the step to continue with
exactly the batch it would have seen.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=4)
def _epoch_permutation(n_windows: int, seed: int, epoch: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(n_windows)
    order.setflags(write=False)
    return order


@dataclass(frozen=True)
class WindowOrder:
    """Which training windows each step and rank reads (see the module docstring)."""

    n_windows: int
    seed: int

    def __post_init__(self) -> None:
        if self.n_windows < 1:
            raise ValueError(f"WindowOrder needs at least one training window, got {self.n_windows}")
        if self.seed < 0:
            raise ValueError(f"WindowOrder seed must be >= 0, got {self.seed}")

    def stream(self, start: int, stop: int) -> np.ndarray:
        """Window indices at stream positions ``[start, stop)``, int64 ``(stop - start,)``."""
        positions = np.arange(start, stop)
        epochs, offsets = np.divmod(positions, self.n_windows)
        out = np.empty(positions.shape, dtype=np.int64)
        for epoch in np.unique(epochs):
            chosen = epochs == epoch
            out[chosen] = _epoch_permutation(self.n_windows, self.seed, int(epoch))[offsets[chosen]]
        return out

    def step(self, step: int, batch_size: int, world_size: int = 1) -> np.ndarray:
        """Window indices of training step ``step`` (1-based), int64 ``(world_size, batch_size)``:
        row ``r`` is rank ``r``'s batch."""
        if step < 1:
            raise ValueError(f"training steps are numbered from 1, got {step}")
        size = batch_size * world_size
        return self.stream((step - 1) * size, step * size).reshape(world_size, batch_size)


@dataclass(frozen=True)
class Batch:
    """One rank's batch: int64 tensors ``(B, T)`` on the training device."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_windows(cls, windows, indices: np.ndarray, device: torch.device | str = "cpu") -> Batch:
        """Rows ``indices`` of a ``TokenWindows`` (``input_ids``, ``attention_mask``, ``labels``)."""
        def take(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array[indices])).to(device)

        return cls(take(windows.input_ids), take(windows.attention_mask), take(windows.labels))


def windows_digest(windows) -> str:
    """SHA-256 of a ``TokenWindows``' token ids, mask and labels: a resume must see the same data."""
    digest = hashlib.sha256()
    for array in (windows.input_ids, windows.attention_mask, windows.labels):
        array = np.ascontiguousarray(array, dtype=np.int64)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
