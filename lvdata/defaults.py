"""Where the default dataset and tokenizer come from when the user names none.

The shared directory is ``../shared`` beside the project root, or ``$LLMTIME_SHARED``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvdata.io import load_trajectories
from lvdata.simulate import simulate

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("LLMTIME_SHARED", PROJECT_ROOT.parent / "shared"))
DEFAULT_DATA_PATH = SHARED_DIR / "data" / "lotka_volterra_data.h5"
DEFAULT_TOKENIZER_DIR = SHARED_DIR / "assets" / "qwen2.5-0.5b-instruct"
HUB_MODEL_ID = "Qwen/Qwen2.5-0.5B-Instruct"


@dataclass(frozen=True)
class LVDataset:
    """Trajectories ``(N, T, 2)``, time ``(T,)`` and where they came from (a path or a simulate call)."""

    trajectories: np.ndarray
    time: np.ndarray
    source: str

    @property
    def n_systems(self) -> int:
        return self.trajectories.shape[0]

    @property
    def n_steps(self) -> int:
        return self.trajectories.shape[1]


def load_dataset(path: str | Path | None = None, *, seed: int = 0) -> LVDataset:
    """The dataset at ``path``; if None, the real file when present, else ``simulate(seed=seed)``."""
    if path is None and DEFAULT_DATA_PATH.exists():
        path = DEFAULT_DATA_PATH
    if path is not None:
        trajectories, time = load_trajectories(path)
        return LVDataset(trajectories, time, source=str(path))
    trajectories, time = simulate(seed=seed)
    return LVDataset(trajectories, time, source=f"simulate(n_systems=1000, n_steps=100, seed={seed})")


def default_tokenizer_source() -> str | Path:
    """The shared Qwen2.5 tokenizer directory if present, else the hub id."""
    return DEFAULT_TOKENIZER_DIR if DEFAULT_TOKENIZER_DIR.is_dir() else HUB_MODEL_ID
