"""The real dataset end to end: load, encode under both α rules, decode."""

from __future__ import annotations


import numpy as np
import pytest

from lvdata import Scaler, decode, encode, split_indices

EPS = np.finfo(np.float64).eps


def test_real_file_layout(real_dataset):
    trajectories, time = real_dataset
    assert trajectories.shape == (1000, 100, 2) and trajectories.dtype == np.float32
    np.testing.assert_allclose(time, np.linspace(0.0, 200.0, 100))


def test_trajectory_972_is_addressable_by_id(real_dataset):
    trajectories, _ = real_dataset
    split = split_indices(len(trajectories), seed=0, test_ids=[972])
    assert split.which(972) == "test"
    np.testing.assert_array_equal(trajectories[split.test][0], trajectories[972])


@pytest.mark.parametrize("rule", ["per_trajectory", "global"])
def test_every_real_trajectory_round_trips_within_the_bound(real_dataset, rule):
    trajectories, _ = real_dataset
    scaler = Scaler.fit(rule, trajectories, train_ids=split_indices(len(trajectories)).train)
    alphas = scaler.alphas(np.arange(len(trajectories)))
    texts = encode(trajectories, alphas)
    values = trajectories.astype(np.float64)
    worst = 0.0
    for text, alpha, original in zip(texts, alphas, values):
        decoded = decode(text, alpha=alpha)
        assert decoded.diagnostics.ok and decoded.values.shape == (100, 2)
        error = np.abs(decoded.values - original) - 8 * EPS * (np.abs(original) + alpha)
        worst = max(worst, float((error / (0.5e-2 * alpha)).max()))
    assert worst <= 1.0  # in units of the bound 0.5·10^-2·α
