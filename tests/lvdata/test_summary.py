"""The dataset summary: ranges, split, α values and tokens per trajectory under both α rules."""

from __future__ import annotations

import numpy as np
import pytest

from lvdata import LVDataset, Scaler, encode, simulate, summarize, tokenize_texts
from lvdata.summary import Distribution


def test_token_length_distribution_per_trajectory(real_dataset, qwen_tokenizer):
    trajectories, time = real_dataset
    summary = summarize(LVDataset(trajectories, time, source="real"), qwen_tokenizer)
    assert summary.tokens_per_char == 1.0
    # 200 numbers of >= 4 characters ("d.dd") and 199 separators: at least 999 tokens.
    for rule, distribution in summary.token_length_distributions.items():
        assert distribution.min >= 999, rule
        d = distribution
        assert d.min <= d.p5 <= d.median <= d.p95 <= d.max
        assert distribution.max <= 1200, rule  # a few numbers >= 10.00, none >= 100.00 in practice
    per_trajectory = summary.token_lengths["per_trajectory"]
    assert per_trajectory.min() >= 999 + 5  # p95 maps to 10.00: >= 5 of 100 steps have a 5-character number
    texts = encode(trajectories[:5], Scaler.per_trajectory(trajectories[:5]).alpha)
    assert [len(ids) for ids in tokenize_texts(qwen_tokenizer, texts)] == per_trajectory[:5].tolist()


def test_a_simulated_dataset_is_summarised_with_its_split_and_both_rules(qwen_tokenizer):
    trajectories, time = simulate(20, 30, seed=1)
    summary = summarize(LVDataset(trajectories, time, source="simulated"), qwen_tokenizer, seed=3)
    assert (summary.source, summary.n_systems, summary.n_steps, summary.seed) == ("simulated", 20, 30, 3)
    assert summary.time_range == (float(time[0]), float(time[-1]))
    assert sorted(summary.token_lengths) == ["global", "per_trajectory"]
    assert all(lengths.shape == (20,) and lengths.dtype == np.int64 for lengths in summary.token_lengths.values())
    assert len(summary.split.train) + len(summary.split.validation) + len(summary.split.test) == 20
    assert summary.prey.min == pytest.approx(float(trajectories[..., 0].min()))


def test_a_distribution_is_the_five_number_summary():
    d = Distribution.of(np.arange(101))
    assert (d.min, d.p5, d.median, d.p95, d.max) == (0.0, 5.0, 50.0, 95.0, 100.0)
