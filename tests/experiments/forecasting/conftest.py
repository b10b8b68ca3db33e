"""Simulated Lotka-Volterra systems shared by the baseline and physics-fit tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from lvdata import LVParams, sample_params, simulate_system


@dataclass(frozen=True)
class SimulatedSystems:
    """Noise-free damped oscillations of ``systems`` (params, initial state) on ``time``, rounded to
    float32 like the real data: ``trajectories`` (N, T, 2); the first ``k_context`` steps are context."""

    systems: list[tuple[LVParams, np.ndarray]]
    time: np.ndarray
    trajectories: np.ndarray
    k_context: int = 50

    def split(self, rows: slice = slice(None)):
        """(N, T, 2) -> context, context_time, horizon_time, truth."""
        chosen, k = self.trajectories[rows], self.k_context
        return chosen[:, :k], self.time[:k], self.time[k:], chosen[:, k:]


@pytest.fixture(scope="session")
def lv_simulated() -> SimulatedSystems:
    """One hand-picked system and two drawn like lvdata.simulate draws them, on the real data's grid."""
    time = np.linspace(0.0, 200.0, 100)
    systems = [(LVParams(prey_growth=0.3, predation=0.4, predator_death=0.25, conversion=0.15, carrying_capacity=6.0),
                np.array([0.9, 1.1]))]
    systems += list(zip(sample_params(2, np.random.default_rng(7)), np.random.default_rng(8).uniform(0.8, 1.2, (2, 2))))
    trajectories = np.stack([simulate_system(params, initial, time) for params, initial in systems]).astype(np.float32)
    return SimulatedSystems(systems, time, trajectories)
