"""lvdata: Lotka-Volterra data -> LLMTIME text -> tokens.

Load or simulate trajectories, split them by trajectory id, scale and encode them as
LLMTIME text (vectorised), decode model output honestly, and cut token streams into
training windows and forecasting prompts.
"""

from lvdata.decoding import DecodeDiagnostics, DecodeResult, decode, decode_steps
from lvdata.defaults import LVDataset, default_tokenizer_source, load_dataset
from lvdata.io import DatasetError, load_trajectories, save_trajectories, validate_trajectories
from lvdata.llmtime import DEFAULT_FORMAT, LLMTimeFormat, encode
from lvdata.scaling import Scaler, ScalingRule, fit_global_alpha, per_trajectory_alpha
from lvdata.simulate import LVParams, lv_rhs, sample_params, simulate, simulate_system, simulate_systems
from lvdata.split import DataSplit, split_indices
from lvdata.summary import DatasetSummary, Distribution, summarize
from lvdata.tokens import (
    IGNORE_INDEX,
    ForecastExample,
    TokenizerLoadError,
    TokenWindows,
    count_windows,
    load_tokenizer,
    make_windows,
    prompt_target_split,
    tokenize_texts,
)

__all__ = [
    "DEFAULT_FORMAT",
    "IGNORE_INDEX",
    "DataSplit",
    "DatasetError",
    "DatasetSummary",
    "DecodeDiagnostics",
    "DecodeResult",
    "Distribution",
    "ForecastExample",
    "LLMTimeFormat",
    "LVDataset",
    "LVParams",
    "Scaler",
    "ScalingRule",
    "TokenWindows",
    "TokenizerLoadError",
    "decode",
    "decode_steps",
    "default_tokenizer_source",
    "encode",
    "fit_global_alpha",
    "load_dataset",
    "load_tokenizer",
    "load_trajectories",
    "lv_rhs",
    "count_windows",
    "make_windows",
    "per_trajectory_alpha",
    "prompt_target_split",
    "sample_params",
    "save_trajectories",
    "simulate",
    "simulate_system",
    "simulate_systems",
    "split_indices",
    "summarize",
    "tokenize_texts",
    "validate_trajectories",
]
