"""Tokenizer loading, batched tokenization, fixed-length training windows, forecast prompts.

Qwen's tokenizer writes every digit, ``.``, ``,`` and ``;`` as its own token, so an LLMTIME
string of ``c`` characters is ``c`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lvdata.llmtime import DEFAULT_FORMAT, LLMTimeFormat, encode

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # label value the cross-entropy loss skips
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
LOCAL_PATH_PREFIXES = ("/", "./", "../", "~")


class TokenizerLoadError(OSError):
    """No tokenizer could be loaded from the given source."""


def load_tokenizer(source: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local directory or a Hugging Face hub id, with a pad token set.

    A source that exists on disk (or is spelled as a path: absolute, ``./``, ``../``, ``~``)
    is loaded as a local directory; anything else is treated as a hub id. If the tokenizer
    has no pad token, ``<|endoftext|>`` (Qwen's pad, id 151643) or else the eos token is used.

    Raises:
        TokenizerLoadError: the directory is missing or holds no tokenizer files, or the
            hub id could not be resolved (for example offline).
    """
    from transformers import AutoTokenizer  # deferred: importing transformers takes seconds

    path = Path(source).expanduser()
    is_local = path.exists() or str(source).startswith(LOCAL_PATH_PREFIXES)
    if is_local:
        _check_tokenizer_directory(path, source)
    target, kind = (str(path), "local directory") if is_local else (str(source), "hub id")
    try:
        tokenizer = AutoTokenizer.from_pretrained(target)
    except (OSError, ValueError) as error:
        hint = "" if is_local else " (no local directory of that name either)"
        message = f"could not load a tokenizer from {kind} {str(source)!r}{hint}: {error}"
        raise TokenizerLoadError(message) from error
    _ensure_pad_token(tokenizer)
    return tokenizer


def _check_tokenizer_directory(path: Path, source: str | Path) -> None:
    if not path.is_dir():
        raise TokenizerLoadError(f"tokenizer source {str(source)!r}: no such local directory")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        expected = ", ".join(TOKENIZER_FILES)
        raise TokenizerLoadError(f"tokenizer source {str(source)!r}: directory has none of {expected}")


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token is not None:
        return
    if "<|endoftext|>" in tokenizer.get_vocab():
        tokenizer.pad_token = "<|endoftext|>"
    elif tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    else:
        raise TokenizerLoadError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an eos token")


def tokenize_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[np.ndarray]:
    """Token ids of each text as int64 arrays, in one batched call, no special tokens added."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [np.asarray(ids, dtype=np.int64) for ids in encoded]


@dataclass(frozen=True)
class TokenWindows:
    """Fixed-length training examples; every array is int64 ``(W, context)`` except ``source (W,)``.

    ``labels`` equals ``input_ids`` where ``attention_mask`` is 1 and ``IGNORE_INDEX`` (−100)
    on padding, so padding never enters the loss. ``source`` holds the id of the sequence
    (trajectory) each window was cut from.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_real_tokens(self) -> int:
        """Non-padding tokens over all windows (overlapping tokens counted once per window)."""
        return int(self.attention_mask.sum())


def make_windows(
    token_sequences: Sequence[Sequence[int]] | Sequence[np.ndarray],
    context: int,
    stride: int,
    pad_id: int,
    sequence_ids: Sequence[int] | np.ndarray | None = None,
) -> TokenWindows:
    """Cut each token sequence into windows of ``context`` tokens starting every ``stride`` tokens.

    Windows never cross two sequences. Each sequence yields windows starting at
    ``0, stride, 2·stride, ...`` up to and including the first one that reaches its end, so
    every token lands in at least one window; that last window is right-padded with
    ``pad_id`` when shorter than ``context``. Empty sequences yield no window. The plan uses
    ``stride = context // 2`` for training and ``stride = context`` for validation.

    Raises:
        ValueError: ``context < 1``, ``stride`` outside ``1..context`` (a larger stride would
            skip tokens), a negative ``pad_id``, or ``sequence_ids`` of the wrong length.
    """
    if context < 1:
        raise ValueError(f"context must be >= 1 token, got {context}")
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be in 1..context ({context}), got {stride}")
    if pad_id < 0:
        raise ValueError(f"pad_id must be a token id >= 0, got {pad_id}")
    if sequence_ids is None:
        sequence_ids = np.arange(len(token_sequences))
    sequence_ids = np.asarray(sequence_ids, dtype=np.int64)
    if sequence_ids.shape != (len(token_sequences),):
        raise ValueError(
            f"sequence_ids has {sequence_ids.size} entries for {len(token_sequences)} token sequences"
        )

    windows = [np.empty((0, context), dtype=np.int64)]  # (n_windows, context) per sequence
    lengths = [np.empty(0, dtype=np.int64)]  # real (non-pad) tokens per window
    sources = [np.empty(0, dtype=np.int64)]
    for sequence_id, tokens in zip(sequence_ids.tolist(), token_sequences):
        tokens = np.asarray(tokens, dtype=np.int64)
        n_windows = _count_windows(len(tokens), context, stride)
        padded = np.full(max(len(tokens), (n_windows - 1) * stride + context), pad_id, dtype=np.int64)
        padded[: len(tokens)] = tokens
        starts = np.arange(n_windows) * stride  # (n_windows,)
        windows.append(padded[starts[:, None] + np.arange(context)])  # (n_windows, context)
        lengths.append(np.clip(len(tokens) - starts, 0, context))
        sources.append(np.full(n_windows, sequence_id, dtype=np.int64))

    input_ids = np.concatenate(windows)  # (W, context)
    attention_mask = (np.arange(context) < np.concatenate(lengths)[:, None]).astype(np.int64)  # (W, context)
    labels = np.where(attention_mask == 1, input_ids, IGNORE_INDEX)
    return TokenWindows(input_ids, attention_mask, labels, source=np.concatenate(sources))


def _count_windows(length: int, context: int, stride: int) -> int:
    """Windows needed so that the last one, starting at ``(n − 1)·stride``, reaches ``length``."""
    if length == 0:
        return 0
    return max(0, -(-(length - context) // stride)) + 1


def count_windows(lengths: Sequence[int], context: int, stride: int) -> int:
    """How many windows :func:`make_windows` cuts from sequences of ``lengths`` tokens, in closed
    form (nothing is allocated, so any ``context`` is counted in constant memory).

    Raises:
        ValueError: ``context < 1`` or ``stride`` outside ``1..context``, as :func:`make_windows`.
    """
    if context < 1:
        raise ValueError(f"context must be >= 1 token, got {context}")
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be in 1..context ({context}), got {stride}")
    return sum(_count_windows(int(length), context, stride) for length in lengths)


@dataclass(frozen=True)
class ForecastExample:
    """A forecasting task on one trajectory: continue ``prompt_text`` with ``m`` steps.

    ``prompt_text`` encodes the first ``k`` steps and ends with the step separator, so the
    model's continuation starts with step ``k + 1``; ``target_text`` encodes the next ``m``
    steps (no trailing separator). Values are in original units; decode model output with
    the same ``alpha``.
    """

    prompt_text: str
    target_text: str
    prompt_values: np.ndarray  # (k, 2)
    target_values: np.ndarray  # (m, 2)
    alpha: float


def prompt_target_split(
    trajectory: np.ndarray, alpha: float, k: int = 50, m: int = 50, fmt: LLMTimeFormat = DEFAULT_FORMAT
) -> ForecastExample:
    """Cut ``trajectory (T, 2)`` on step boundaries: steps ``[0, k)`` as prompt, ``[k, k + m)`` as target."""
    trajectory = np.asarray(trajectory)
    if trajectory.ndim != 2:
        raise ValueError(f"prompt_target_split expects one trajectory (T, V), got shape {trajectory.shape}")
    if k < 1 or m < 1 or k + m > len(trajectory):
        raise ValueError(f"need k >= 1, m >= 1 and k + m <= T = {len(trajectory)}, got k={k}, m={m}")
    prompt, target = trajectory[:k], trajectory[k : k + m]
    return ForecastExample(
        prompt_text=encode(prompt, alpha, fmt) + fmt.step_sep,
        target_text=encode(target, alpha, fmt),
        prompt_values=prompt.copy(),
        target_values=target.copy(),
        alpha=float(alpha),
    )
