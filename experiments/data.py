"""Experiment data: trajectories -> split -> LLMTIME texts -> tokens -> windows, prepared once.

    data = prepare_data(DataConfig(path="../shared/data/lotka_volterra_data.h5"), tokenizer)
    text = prepare_data(config)    # no tokenizer: the same data, token counts from the text (planning)
    data.train_windows(512)        # training split only, stride 256
    data.validation_windows(512)   # validation split only, stride 512
    data.forecast_examples()       # test split prompts / targets for the forecaster

Training and validation read only their own splits; the test split is reached only through
``forecast_examples``. Windows are cached per context length.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lvdata import (
    DatasetError,
    DataSplit,
    ForecastExample,
    LLMTimeFormat,
    Scaler,
    TokenWindows,
    encode,
    load_trajectories,
    per_trajectory_alpha,
    make_windows,
    prompt_target_split,
    simulate,
    split_indices,
    tokenize_texts,
)

ALPHA_RULES = ("per_trajectory", "global")
FALLBACKS = ("error", "simulate")


@dataclass(frozen=True)
class DataConfig:
    """Where the trajectories come from and how they become text.

    ``path``: an HDF5 file in the layout of the real dataset, or None for
    ``lvdata.simulate(simulate_systems, seed=simulate_seed)``; when the file is missing,
    ``fallback = "simulate"`` simulates instead (``"error"``, the default, refuses). The split is
    ``lvdata.split_indices(N, split_seed, fractions, test_ids)``. ``alpha_rule``:
    ``"per_trajectory"`` (each trajectory's α from its first ``prompt_steps`` steps, for every
    text of it: training, validation and forecast prompts alike, so training teaches no scale
    the forecasts cannot know) or ``"global"`` (fitted on the training split); ``precision``
    decimals. ``prompt_steps`` / ``forecast_steps``: the forecasting task (k, m).
    """

    path: str | None = None
    fallback: str = "error"
    simulate_systems: int = 1000
    simulate_seed: int = 0
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    test_ids: tuple[int, ...] | None = None
    alpha_rule: str = "per_trajectory"
    precision: int = 2
    prompt_steps: int = 50
    forecast_steps: int = 50

    def __post_init__(self) -> None:
        if self.path is not None:
            object.__setattr__(self, "path", str(Path(os.fspath(self.path)).expanduser().resolve()))
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        if self.test_ids is not None:
            object.__setattr__(self, "test_ids", tuple(int(i) for i in self.test_ids))
        if self.fallback not in FALLBACKS:
            raise ValueError(f"DataConfig.fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if self.alpha_rule not in ALPHA_RULES:
            raise ValueError(f"DataConfig.alpha_rule must be one of {ALPHA_RULES}, got {self.alpha_rule!r}")
        for name in ("simulate_systems", "prompt_steps", "forecast_steps"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) \
                    or getattr(self, name) < 1:
                raise ValueError(f"DataConfig.{name} must be >= 1, got {getattr(self, name)}")
        self.llmtime_format()  # validates the precision

    def llmtime_format(self) -> LLMTimeFormat:
        """The LLMTIME format the trajectories are written in."""
        return LLMTimeFormat(precision=self.precision)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        data = asdict(self)
        data["fractions"] = list(self.fractions)
        data["test_ids"] = None if self.test_ids is None else list(self.test_ids)
        return data


@dataclass
class ExperimentData:
    """Everything prepared from one ``DataConfig``; arrays are indexed by trajectory id.

    ``trajectories`` ``(N, T, 2)`` in original units, ``time`` ``(T,)``, ``split`` the
    trajectory ids per split, ``scaler`` the α rule and value(s), ``alphas`` ``(N,)`` the α of
    each trajectory, ``texts`` the LLMTIME text of each whole trajectory and ``tokens`` its
    token ids (int64), ``pad_id`` the token windows are padded with. Prepared without a
    tokenizer (for planning), ``tokens`` and ``pad_id`` are None and token counts are read
    from the text: Qwen's tokenizer gives one token per character of LLMTIME text (tested).
    """

    config: DataConfig
    trajectories: np.ndarray
    time: np.ndarray
    split: DataSplit
    scaler: Scaler
    alphas: np.ndarray
    fmt: LLMTimeFormat
    texts: list[str]
    tokens: list[np.ndarray] | None
    pad_id: int | None
    source: str
    _windows: dict[tuple[str, int], TokenWindows] = field(default_factory=dict, repr=False)

    def train_windows(self, context: int) -> TokenWindows:
        """Windows of ``context`` tokens over the training trajectories, stride ``context // 2``."""
        return self._split_windows("train", context, stride=max(context // 2, 1))

    def validation_windows(self, context: int) -> TokenWindows:
        """Windows of ``context`` tokens over the validation trajectories, stride ``context``."""
        return self._split_windows("validation", context, stride=context)

    def forecast_examples(self, split: str = "test") -> list[ForecastExample]:
        """One ``lvdata.ForecastExample`` (first ``prompt_steps`` steps as prompt, the next
        ``forecast_steps`` as target) per trajectory of ``split``, in id order."""
        k, m = self.config.prompt_steps, self.config.forecast_steps
        return [self.forecast_example(i, k, m) for i in getattr(self.split, split).tolist()]

    def forecast_example(self, trajectory_id: int, k: int, m: int) -> ForecastExample:
        """Trajectory ``trajectory_id`` cut into a ``k``-step prompt and an ``m``-step target,
        scaled by :meth:`forecast_alpha` (never by the target it is asked to forecast)."""
        return prompt_target_split(self.trajectories[trajectory_id], self.forecast_alpha(trajectory_id, k), k=k, m=m,
                                   fmt=self.fmt)

    def forecast_alpha(self, trajectory_id: int, k: int) -> float:
        """α for forecasting from the first ``k`` steps. The per-trajectory rule is applied to
        those ``k`` steps only: α from the whole trajectory would tell the model the scale of
        the values it must forecast. The global α was fitted on the training split."""
        if self.scaler.rule == "per_trajectory":
            return float(per_trajectory_alpha(self.trajectories[trajectory_id : trajectory_id + 1, :k])[0])
        return float(self.alphas[trajectory_id])

    @property
    def values_digest(self) -> str:
        """SHA-256 of the trajectories and time values as loaded (shape, dtype and bytes): a
        run records it when it starts and refuses to resume on data that has changed since."""
        digest = hashlib.sha256()
        for array in (self.trajectories, self.time):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def require_splits(self, *names: str) -> ExperimentData:
        """``self``, once every split in ``names`` holds a trajectory (a plan needs validation
        windows and test prompts); else a ``DatasetError`` saying how many systems are needed."""
        empty = [name for name in names if getattr(self.split, name).size == 0]
        if empty:
            n, fractions = len(self.trajectories), self.config.fractions
            smallest = min(fraction for name, fraction in zip(("train", "validation", "test"), fractions)
                           if name in empty)
            needed = f"at least {math.floor(0.5 / smallest) + 1} systems" if smallest > 0 else "non-zero fractions"
            raise DatasetError(f"{self.source}: {n} trajectories split with fractions {fractions} leave the "
                               f"{' and '.join(empty)} split(s) empty; this needs {needed}")
        return self

    def token_lengths(self, split: str) -> list[int]:
        """Tokens of each whole trajectory of ``split``, in id order (from the text when the
        data was prepared without a tokenizer)."""
        ids = getattr(self.split, split).tolist()
        return [len(self.tokens[i]) if self.tokens is not None else len(self.texts[i]) for i in ids]

    def _split_windows(self, split: str, context: int, stride: int) -> TokenWindows:
        key = (split, context)
        if key not in self._windows:
            if self.tokens is None:
                raise ValueError("this data was prepared without a tokenizer (for planning): it has no token windows")
            ids = getattr(self.split, split)
            if ids.size == 0:
                raise ValueError(f"the {split} split is empty (fractions {self.config.fractions}, "
                                 f"{len(self.trajectories)} trajectories)")
            self._windows[key] = make_windows([self.tokens[i] for i in ids.tolist()], context, stride,
                                              self.pad_id, sequence_ids=ids)
        return self._windows[key]


def load_or_simulate(config: DataConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """``(trajectories, time, source)`` of ``config``: its file, or its simulation (when it has
    no path, or the file is missing and ``fallback = "simulate"``). The one place that decides."""
    if config.path is not None and (Path(config.path).exists() or config.fallback == "error"):
        if not Path(config.path).exists():
            raise DatasetError(f"{config.path}: file not found (in a plan, set fallback = \"simulate\" to simulate "
                               "instead)")
        trajectories, time = load_trajectories(config.path)
        return trajectories, time, config.path
    trajectories, time = simulate(config.simulate_systems, seed=config.simulate_seed)
    return trajectories, time, f"simulate(n_systems={config.simulate_systems}, seed={config.simulate_seed})"


def prepare_data(config: DataConfig, tokenizer=None) -> ExperimentData:
    """Load or simulate the trajectories, split them, fit the α rule, encode and (with a
    ``tokenizer``) tokenize. Without one, the result has texts but no tokens: what the
    planner needs to count tokens, prepared by the same code the runner trains on."""
    pad_id = None
    if tokenizer is not None:
        pad_id = getattr(tokenizer, "pad_token_id", None)
        if pad_id is None:
            raise ValueError("the tokenizer has no pad token; load it with lvdata.load_tokenizer, which sets one")
    trajectories, time, source = load_or_simulate(config)
    n_steps = trajectories.shape[1]
    if config.prompt_steps + config.forecast_steps > n_steps:
        raise ValueError(f"prompt_steps + forecast_steps = {config.prompt_steps + config.forecast_steps} "
                         f"exceeds the {n_steps} steps per trajectory of {source}")
    try:
        split = split_indices(len(trajectories), seed=config.split_seed, fractions=config.fractions,
                              test_ids=config.test_ids)
    except ValueError as error:  # test ids out of range or repeated, too few trajectories to train on
        raise DatasetError(f"{source} ({len(trajectories)} trajectories): {error}") from None
    # per trajectory: α of the first prompt_steps, the α a forecast prompt has (never a scale prior)
    scaler = Scaler.fit(config.alpha_rule, trajectories, train_ids=split.train, steps=config.prompt_steps)
    alphas = scaler.alphas(np.arange(len(trajectories)))
    fmt = config.llmtime_format()
    texts = encode(trajectories, alphas, fmt)
    tokens = None if tokenizer is None else tokenize_texts(tokenizer, texts)
    return ExperimentData(config=config, trajectories=trajectories, time=time, split=split, scaler=scaler,
                          alphas=alphas, fmt=fmt, texts=texts, tokens=tokens,
                          pad_id=None if pad_id is None else int(pad_id), source=source)
