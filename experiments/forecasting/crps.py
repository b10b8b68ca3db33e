"""Continuous ranked probability score of a sample ensemble (the probabilistic score llmtime reports).

For an ensemble ``x_1 .. x_S`` and an observation ``y`` the empirical CRPS is

    CRPS = mean_i |x_i - y| - 1 / (2 S²) · sum_{i,j} |x_i - x_j|,

the integral of ``(F_S(z) - 1{z >= y})²`` over ``z`` for the ensemble's empirical CDF ``F_S``
(Gneiting & Raftery 2007, eq. 21; ``properscoring.crps_ensemble`` computes the same). It is in
the data's units, lower is better, and for a single member it is the absolute error: a point
forecast's CRPS is its MAE. Malformed samples (NaN) are left out of the ensemble of their step.
"""

from __future__ import annotations

import numpy as np


def crps_ensemble(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """CRPS of every forecast point: ``samples`` ``(..., S)`` against ``truth`` ``(...)``.

    Non-finite samples are dropped from their point's ensemble; a point with no finite sample is NaN.
    The pairwise term uses the sorted ensemble: ``sum_{i,j} |x_i - x_j| = 2 sum_i (2i - S - 1) x_(i)``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if samples.shape[:-1] != truth.shape:
        raise ValueError(f"samples {samples.shape} must be truth's shape {truth.shape} plus a sample axis")
    finite = np.isfinite(samples)
    count = finite.sum(axis=-1)  # (...)
    ordered = np.sort(np.where(finite, samples, np.inf), axis=-1)  # NaN last, as +inf
    rank = np.arange(1, samples.shape[-1] + 1)  # 1-based rank among the finite members
    weight = np.where(rank <= count[..., None], 2 * rank - count[..., None] - 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = 2.0 * np.where(weight != 0, weight * ordered, 0.0).sum(axis=-1)  # sum_{i,j} |x_i - x_j|
        accuracy = np.where(finite, np.abs(samples - truth[..., None]), 0.0).sum(axis=-1) / count
        return np.where(count > 0, accuracy - spread / (2.0 * count**2), np.nan)


def per_trajectory_crps(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(N, 2)`` mean CRPS per trajectory and species over its scorable steps.

    ``samples`` ``(N, S, m, 2)`` and ``truth`` ``(N, m, 2)`` in original units. A step is scorable
    when some sample has a finite value for every species there; a trajectory with none is NaN.
    """
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if samples.ndim != 4 or samples.shape[:1] + samples.shape[2:] != truth.shape:
        raise ValueError(f"samples must be (N, S, m, 2) matching truth {truth.shape}, got {samples.shape}")
    whole = np.isfinite(samples).all(axis=-1, keepdims=True)  # (N, S, m, 1): a sample's step parsed fully
    members = np.where(whole, samples, np.nan).transpose(0, 2, 3, 1)  # (N, m, 2, S)
    scores = crps_ensemble(members, truth)  # (N, m, 2)
    scorable = np.isfinite(scores).all(axis=-1, keepdims=True)  # (N, m, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scorable, scores, 0.0).sum(axis=1) / scorable.sum(axis=1)
