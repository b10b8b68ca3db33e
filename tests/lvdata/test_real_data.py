"""The real dataset end to end: load, encode under both α rules, decode, tokenize, summarise."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lvdata import LVDataset, Scaler, decode, encode, split_indices, summarize, tokenize_texts
from lvdata.defaults import PROJECT_ROOT

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


def test_summary_cli_defaults_to_the_real_data_and_prints_token_lengths(real_data_path, qwen_assets, tmp_path):
    plot = tmp_path / "lengths.png"
    command = [sys.executable, "-m", "lvdata", "summary", "--plot", str(plot)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["dataset", str(real_data_path)]
    assert "1000 trajectories x 100 steps" in result.stdout
    assert "train 800, validation 100, test 100" in result.stdout
    token_table = result.stdout.split("tokens per trajectory")[1].splitlines()
    assert token_table[1].split() == ["rule", "min", "p5", "median", "p95", "max"]
    for rule in ("per_trajectory", "global"):
        row = next(line for line in token_table if line.startswith(rule)).split()
        min_, p5, median, p95, max_ = map(float, row[1:])
        assert 999 <= min_ <= p5 <= median <= p95 <= max_
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_cli_reports_a_bad_file_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    command = [sys.executable, "-m", "lvdata", "summary", "--data", str(bad)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}: not an HDF5 file"


def test_summary_cli_never_overwrites_a_plot_without_force(tmp_path):
    plot = tmp_path / "mine.png"
    plot.write_bytes(b"the user's own figure")
    command = [sys.executable, "-m", "lvdata", "summary", "--data", str(tmp_path / "missing.h5"), "--plot", str(plot)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == 2 and "not overwriting it (pass --force" in result.stderr
    assert plot.read_bytes() == b"the user's own figure"
