"""Default dataset and tokenizer resolution."""

from __future__ import annotations

import numpy as np

import lvdata.defaults as defaults
from lvdata import load_dataset, save_trajectories, simulate


def test_an_explicit_path_is_loaded(tmp_path):
    trajectories, time = simulate(n_systems=4, n_steps=10, seed=1)
    path = save_trajectories(tmp_path / "mine.h5", trajectories, time)
    dataset = load_dataset(path)
    assert dataset.source == str(path) and (dataset.n_systems, dataset.n_steps) == (4, 10)
    np.testing.assert_array_equal(dataset.trajectories, trajectories)


def test_without_the_real_file_the_default_is_simulated(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "DEFAULT_DATA_PATH", tmp_path / "absent.h5")
    dataset = load_dataset(seed=2)
    assert dataset.source == "simulate(n_systems=1000, n_steps=100, seed=2)"
    np.testing.assert_array_equal(dataset.trajectories, simulate(seed=2)[0])


def test_with_the_real_file_it_is_the_default(real_data_path):
    assert defaults.DEFAULT_DATA_PATH == real_data_path
    assert load_dataset().source == str(real_data_path)


def test_default_tokenizer_is_the_shared_directory(qwen_assets):
    assert defaults.default_tokenizer_source() == qwen_assets
