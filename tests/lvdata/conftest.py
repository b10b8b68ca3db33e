"""Fixtures for the lvdata tests."""

from __future__ import annotations

import numpy as np
import pytest

from lvdata import load_trajectories


@pytest.fixture(scope="session")
def real_dataset(real_data_path) -> tuple[np.ndarray, np.ndarray]:
    """The real ``(trajectories (1000, 100, 2) float32, time (100,))``, loaded once."""
    return load_trajectories(real_data_path)
