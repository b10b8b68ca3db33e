"""The summary's text table and its token-length histogram."""

from __future__ import annotations

import numpy as np

from lvdata import LVDataset, simulate, summarize
from lvdata.summary_view import format_summary, plot_token_lengths


def test_the_table_has_one_row_per_distribution_and_rule(qwen_tokenizer):
    trajectories, time = simulate(10, 20, seed=2)
    summary = summarize(LVDataset(trajectories, time, source="simulated"), qwen_tokenizer)
    lines = format_summary(summary).splitlines()
    assert lines[0].split() == ["dataset", "simulated"]
    assert lines[1] == "shape          10 trajectories x 20 steps x 2 (prey, predator)"
    assert lines[3].startswith("split (seed 0) train ")
    prey = next(line for line in lines if line.startswith("prey")).split()
    assert float(prey[1]) == round(float(trajectories[..., 0].min()), 4)
    tokens = next(line for line in lines if line.startswith("per_trajectory")).split()
    assert int(float(tokens[1])) == summary.token_lengths["per_trajectory"].min()
    assert lines[-1] == f"tokens per character: {summary.tokens_per_char:.4f}"


def test_the_histogram_is_a_png_in_a_folder_it_makes(tmp_path):
    lengths = {"per_trajectory": np.array([1000, 1001, 1001, 1003]), "global": np.array([999, 1000, 1004, 1004])}
    path = plot_token_lengths(lengths, tmp_path / "figures" / "tokens.png")
    assert path == tmp_path / "figures" / "tokens.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
