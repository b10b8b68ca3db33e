"""LLMTIME scaling: divide populations by α so most scaled values fall in 0..10.

Two rules are in use, both from the 95th percentile (numpy's default linear interpolation):

* ``"per_trajectory"``: each trajectory has its own
  ``α_i = max(p95(prey_i), p95(predator_i)) / 10``, percentiles over that trajectory's steps.
* ``"global"``: one ``α = max(p95(prey), p95(predator)) / 10``, percentiles over every step of
  every *training* trajectory (fit it on the training split only, then apply it to all).

When forecasting, apply the per-trajectory rule to the observed context steps only: an α
computed over the steps to be forecast would tell the model their scale. Text a model is
*trained* on should be scaled the same way (``Scaler.fit(..., steps=k)``): trained on texts
scaled by their whole trajectory, a model learns a scale prior (the rest of the text stays
below ~10) that forecast prompts, scaled by their first ``k`` steps, do not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ScalingRule = Literal["per_trajectory", "global"]
SCALED_PERCENTILE = 95.0
SCALED_TARGET = 10.0  # the p95 value maps to this


def per_trajectory_alpha(trajectories: np.ndarray) -> np.ndarray:
    """``α`` per trajectory for ``trajectories (N, T, 2)``; returns float64 ``(N,)``.

    Raises:
        ValueError: the input is not ``(N, T, 2)``, or a trajectory's α is not positive
            (for example an all-zero trajectory).
    """
    trajectories = _as_batch(trajectories)
    p95 = np.percentile(trajectories, SCALED_PERCENTILE, axis=1)  # (N, 2)
    alpha = p95.max(axis=1) / SCALED_TARGET  # (N,)
    bad = np.flatnonzero(~(alpha > 0) | ~np.isfinite(alpha))
    if bad.size:
        raise ValueError(f"per-trajectory alpha is not positive/finite for trajectories {bad[:10].tolist()}")
    return alpha


def fit_global_alpha(train_trajectories: np.ndarray) -> float:
    """One ``α`` from all steps of the training trajectories ``(N, T, 2)``."""
    trajectories = _as_batch(train_trajectories)
    p95 = np.percentile(trajectories.reshape(-1, 2), SCALED_PERCENTILE, axis=0)  # (2,)
    alpha = float(p95.max() / SCALED_TARGET)
    if not (alpha > 0 and np.isfinite(alpha)):
        raise ValueError(f"global alpha is not positive/finite ({alpha!r}); is the training data all zero?")
    return alpha


@dataclass(frozen=True)
class Scaler:
    """Which scaling rule was used and its α value(s), so runs can record it.

    ``alpha`` is a float for ``"global"`` and a float64 ``(N,)`` array, indexed by trajectory
    id, for ``"per_trajectory"``.
    """

    rule: ScalingRule
    alpha: float | np.ndarray

    @classmethod
    def per_trajectory(cls, trajectories: np.ndarray, steps: int | None = None) -> Scaler:
        """Each trajectory's α from its first ``steps`` steps (None: all of them)."""
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be >= 1 (or None: every step), got {steps}")
        return cls("per_trajectory", per_trajectory_alpha(np.asarray(trajectories)[:, :steps]))

    @classmethod
    def global_fit(cls, train_trajectories: np.ndarray) -> Scaler:
        return cls("global", fit_global_alpha(train_trajectories))

    @classmethod
    def fit(cls, rule: ScalingRule, trajectories: np.ndarray, train_ids: np.ndarray | None = None,
            steps: int | None = None) -> Scaler:
        """Fit ``rule`` on a dataset; the global rule uses only ``train_ids`` (required), the
        per-trajectory rule each trajectory's first ``steps`` steps (None: all)."""
        if rule == "per_trajectory":
            return cls.per_trajectory(trajectories, steps)
        if rule == "global":
            if train_ids is None:
                raise ValueError("the global rule must be fitted on the training split: pass train_ids")
            return cls.global_fit(np.asarray(trajectories)[train_ids])
        raise ValueError(f"unknown scaling rule {rule!r}; expected 'per_trajectory' or 'global'")

    def alphas(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """α of the trajectories ``ids``, float64 ``(len(ids),)``."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.rule == "global":
            return np.full(ids.shape, float(self.alpha))
        return np.asarray(self.alpha, dtype=np.float64)[ids]

    def as_dict(self) -> dict[str, object]:
        """Plain values, for JSON run records."""
        alpha = self.alpha if self.rule == "global" else np.asarray(self.alpha).tolist()
        return {"rule": self.rule, "alpha": alpha}


def _as_batch(trajectories: np.ndarray) -> np.ndarray:
    array = np.asarray(trajectories, dtype=np.float64)
    if array.ndim != 3 or array.shape[-1] != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"expected non-empty trajectories of shape (N, T, 2), got {array.shape}")
    return array
