"""Experiment data: splits reach only their own windows; the test split is never windowed."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.data import DataConfig, prepare_data
from experiments.training.loss import IGNORE_INDEX
from lvdata import DatasetError, decode, fit_global_alpha, per_trajectory_alpha


@pytest.fixture(scope="module")
def small_data(qwen_tokenizer):
    return prepare_data(DataConfig(simulate_systems=12, simulate_seed=3, fractions=(0.5, 0.25, 0.25)), qwen_tokenizer)


def test_windows_come_only_from_their_own_split(small_data):
    split = small_data.split
    train, validation = small_data.train_windows(64), small_data.validation_windows(64)
    assert set(train.source.tolist()) == set(split.train.tolist())
    assert set(validation.source.tolist()) == set(split.validation.tolist())
    assert not set(split.test.tolist()) & (set(train.source.tolist()) | set(validation.source.tolist()))


def test_training_windows_overlap_by_half_and_validation_windows_tile(small_data):
    first = int(small_data.split.train[0])
    tokens = small_data.tokens[first]
    train = small_data.train_windows(64)
    rows = train.input_ids[train.source == first]
    np.testing.assert_array_equal(rows[0], tokens[:64])
    np.testing.assert_array_equal(rows[1], tokens[32:96])
    validation = small_data.validation_windows(64)
    held_out = int(small_data.split.validation[0])
    mask = validation.source == held_out
    real = validation.input_ids[mask][validation.attention_mask[mask] == 1]
    np.testing.assert_array_equal(real, small_data.tokens[held_out])  # every token exactly once
    padded = validation.attention_mask == 0
    assert (validation.labels[padded] == IGNORE_INDEX).all()
    assert (validation.input_ids[padded] == small_data.pad_id).all()


def test_windows_are_cached_per_context(small_data):
    assert small_data.train_windows(64) is small_data.train_windows(64)
    assert small_data.train_windows(32) is not small_data.train_windows(64)
    assert small_data.train_windows(32).input_ids.shape[1] == 32


def test_texts_decode_back_to_the_trajectories_and_tokens_are_characters(small_data):
    for index in (0, 7):
        result = decode(small_data.texts[index], alpha=float(small_data.alphas[index]), fmt=small_data.fmt)
        assert result.diagnostics.ok
        bound = 0.5 * 10**-small_data.config.precision * small_data.alphas[index] + 1e-6
        assert np.abs(result.values - small_data.trajectories[index]).max() <= bound
        assert len(small_data.tokens[index]) == len(small_data.texts[index])


def test_alpha_rules(small_data, qwen_tokenizer):
    """Per trajectory, every text is scaled by the α of the first prompt_steps steps (what a forecast
    prompt has), not of the whole trajectory (a scale prior forecasts cannot know)."""
    k = small_data.config.prompt_steps
    np.testing.assert_allclose(small_data.alphas, per_trajectory_alpha(small_data.trajectories[:, :k]))
    assert not np.allclose(small_data.alphas, per_trajectory_alpha(small_data.trajectories))
    for i in small_data.split.test.tolist():  # training text and forecast prompt: one scale
        assert small_data.forecast_example(i, k, 10).alpha == small_data.alphas[i]
    global_rule = prepare_data(DataConfig(simulate_systems=12, simulate_seed=3, fractions=(0.5, 0.25, 0.25),
                                          alpha_rule="global"), qwen_tokenizer)
    expected = fit_global_alpha(global_rule.trajectories[global_rule.split.train])  # training split only
    np.testing.assert_allclose(global_rule.alphas, expected)
    assert global_rule.scaler.rule == "global"


def test_forecast_examples_cover_the_test_split(small_data):
    examples = small_data.forecast_examples()
    assert len(examples) == len(small_data.split.test)
    for example, trajectory_id in zip(examples, small_data.split.test.tolist()):
        np.testing.assert_array_equal(example.target_values, small_data.trajectories[trajectory_id, 50:100])
        assert example.alpha == per_trajectory_alpha(small_data.trajectories[trajectory_id : trajectory_id + 1, :50])[0]


def test_the_forecast_target_never_sets_the_prompt_or_its_scale(small_data):
    """A forecast prompt and its α depend on the context steps only: scaling the target by 3
    changes neither (α from the whole trajectory would leak the target's scale)."""
    trajectory_id = int(small_data.split.test[0])
    before = small_data.forecast_example(trajectory_id, 50, 50)
    original = small_data.trajectories[trajectory_id].copy()
    small_data.trajectories[trajectory_id, 50:] *= 3.0
    try:
        after = small_data.forecast_example(trajectory_id, 50, 50)
    finally:
        small_data.trajectories[trajectory_id] = original
    assert (after.prompt_text, after.alpha) == (before.prompt_text, before.alpha)
    np.testing.assert_allclose(after.target_values, 3.0 * before.target_values)


def test_real_dataset_with_pinned_test_trajectory(real_data_path, qwen_tokenizer):
    data = prepare_data(DataConfig(path=str(real_data_path), test_ids=(972, 3)), qwen_tokenizer)
    assert data.trajectories.shape == (1000, 100, 2)
    assert data.split.test.tolist() == [3, 972] and len(data.split.validation) == 100
    validation = data.validation_windows(512)
    assert set(validation.source.tolist()) == set(data.split.validation.tolist())
    assert 972 not in set(data.train_windows(512).source.tolist())


def test_bad_configs_are_refused_with_the_field_named(qwen_tokenizer):
    with pytest.raises(ValueError, match="alpha_rule"):
        DataConfig(alpha_rule="median")
    with pytest.raises(ValueError, match="precision"):
        DataConfig(precision=0)
    with pytest.raises(ValueError, match="prompt_steps \\+ forecast_steps = 160"):
        prepare_data(DataConfig(simulate_systems=3, prompt_steps=80, forecast_steps=80), qwen_tokenizer)
    with pytest.raises(DatasetError, match="lv.h5: file not found"):
        prepare_data(DataConfig(path="/nonexistent/lv.h5"), qwen_tokenizer)
