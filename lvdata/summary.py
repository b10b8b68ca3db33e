"""Dataset summary: population ranges, split sizes, α values, token lengths per trajectory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvdata.defaults import LVDataset
from lvdata.llmtime import DEFAULT_FORMAT, LLMTimeFormat, encode
from lvdata.scaling import Scaler
from lvdata.split import DataSplit, split_indices
from lvdata.tokens import tokenize_texts


@dataclass(frozen=True)
class Distribution:
    """Five-number summary (numpy linear-interpolation percentiles) of a set of values."""

    min: float
    p5: float
    median: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> Distribution:
        percentiles = np.percentile(np.asarray(values, dtype=np.float64), [0, 5, 50, 95, 100])
        return cls(*map(float, percentiles))


@dataclass(frozen=True)
class DatasetSummary:
    """What ``python -m lvdata summary`` reports. Token lengths are tokens per whole trajectory."""

    source: str
    n_systems: int
    n_steps: int
    time_range: tuple[float, float]
    prey: Distribution
    predator: Distribution
    seed: int
    split: DataSplit
    global_alpha: float  # fitted on the training split
    per_trajectory_alpha: Distribution
    token_lengths: dict[str, np.ndarray]  # scaling rule -> tokens per trajectory, int64 (N,)
    tokens_per_char: float  # over all encoded trajectories, both rules; 1.0 for Qwen

    @property
    def token_length_distributions(self) -> dict[str, Distribution]:
        return {rule: Distribution.of(lengths) for rule, lengths in self.token_lengths.items()}


def summarize(
    dataset: LVDataset, tokenizer, *, seed: int = 0, fmt: LLMTimeFormat = DEFAULT_FORMAT
) -> DatasetSummary:
    """Summarise ``dataset`` with the default split for ``seed`` and both scaling rules."""
    trajectories = dataset.trajectories
    split = split_indices(dataset.n_systems, seed=seed)
    scalers = {
        "per_trajectory": Scaler.fit("per_trajectory", trajectories),
        "global": Scaler.fit("global", trajectories, train_ids=split.train),
    }
    all_ids = np.arange(dataset.n_systems)
    n_tokens = n_chars = 0
    lengths = {}
    for rule, scaler in scalers.items():
        texts = encode(trajectories, scaler.alphas(all_ids), fmt)
        lengths[rule] = np.array([len(ids) for ids in tokenize_texts(tokenizer, texts)], dtype=np.int64)
        n_tokens += int(lengths[rule].sum())
        n_chars += sum(map(len, texts))
    return DatasetSummary(
        source=dataset.source,
        n_systems=dataset.n_systems,
        n_steps=dataset.n_steps,
        time_range=(float(dataset.time[0]), float(dataset.time[-1])),
        prey=Distribution.of(trajectories[..., 0]),
        predator=Distribution.of(trajectories[..., 1]),
        seed=seed,
        split=split,
        global_alpha=float(scalers["global"].alpha),
        per_trajectory_alpha=Distribution.of(scalers["per_trajectory"].alpha),
        token_lengths=lengths,
        tokens_per_char=n_tokens / n_chars,
    )
