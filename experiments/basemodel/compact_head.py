"""A 14-row output vocabulary for LLMTIME text that computes the full-vocabulary loss exactly.

LLMTIME text is written with 13 characters (digits, ``.``, ``,`` and ``;``), each one token of
Qwen's tokenizer. Give every *other* row of a 151,936-row output layer the same vector ``u``:
each of those ``O = 151,923`` tokens then has the logit ``h·u``, and together they hold the mass
``exp(h·u + log O)``. So a head of 14 rows (the 13 characters plus one shared "other" row whose
logit carries ``+log O``) has the same log-partition function as the full layer, and for every
alphabet target the same cross-entropy, to float rounding:

    full:     logsumexp_v(h·w_v) − h·w_target                                (V = 151,936 rows)
    compact:  logsumexp(h·w_0, ..., h·w_12, h·u + log O) − h·w_target        (14 rows)

A model pretrained with the compact head (:class:`CompactVocabulary`, :func:`compact_config`)
is copied into the full vocabulary by :func:`expand_to_full_vocabulary` (every non-alphabet row
set to ``u``; the embedding is tied, so inputs read the same rows), and is then an ordinary
Qwen2 checkpoint: ``save_pretrained``, ``load_model`` and generation see nothing unusual.

The alphabet's token ids are looked up from the tokenizer, never hard-coded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from experiments.forecasting.grammar import LLMTimeGrammar, alphabet_token_ids
from lvdata import DEFAULT_FORMAT, LLMTimeFormat


@dataclass(frozen=True)
class CompactVocabulary:
    """The alphabet's token ids (one per character of ``characters``, in that order) in a full
    vocabulary of ``vocab_size`` output rows. Compact row ``i < len(characters)`` is character
    ``i``; the last row, :attr:`other_row`, stands for the :attr:`other_count` other tokens."""

    characters: str
    alphabet_ids: tuple[int, ...]
    vocab_size: int

    def __post_init__(self) -> None:
        if len(self.alphabet_ids) != len(self.characters) or len(set(self.alphabet_ids)) != len(self.characters):
            raise ValueError(f"need one distinct token id per character of {self.characters!r}, "
                             f"got {self.alphabet_ids}")
        if not all(0 <= i < self.vocab_size for i in self.alphabet_ids):
            raise ValueError(f"alphabet ids {self.alphabet_ids} fall outside the vocabulary of {self.vocab_size}")

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int, fmt: LLMTimeFormat = DEFAULT_FORMAT) -> CompactVocabulary:
        """The alphabet of ``fmt`` (digits, ``.``, its two separators) as ``tokenizer`` writes it;
        raises ``ValueError`` if a character is not exactly one token."""
        grammar = LLMTimeGrammar(n_steps=1, fmt=fmt)
        return cls(grammar.characters, tuple(alphabet_token_ids(tokenizer, grammar)), int(vocab_size))

    @property
    def n_rows(self) -> int:
        """Rows of the compact head: the characters plus the shared "other" row (14)."""
        return len(self.characters) + 1

    @property
    def other_row(self) -> int:
        return len(self.characters)

    @property
    def other_count(self) -> int:
        """Full-vocabulary rows the shared row stands for (151,923 for Qwen2.5)."""
        return self.vocab_size - len(self.characters)

    def log_multiplicity(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(n_rows,)``: 0 for each character, ``log(other_count)`` (nats) for the shared row.
        Added to the compact logits, it makes their log-sum-exp the full vocabulary's."""
        values = torch.zeros(self.n_rows, dtype=torch.float64)
        values[self.other_row] = math.log(self.other_count)
        return values.to(dtype)

    def row_of_token(self) -> torch.Tensor:
        """int64 ``(vocab_size,)``: the compact row of every full-vocabulary token id."""
        rows = torch.full((self.vocab_size,), self.other_row, dtype=torch.int64)
        rows[list(self.alphabet_ids)] = torch.arange(len(self.characters))
        return rows

    def encode_text(self, text: str) -> np.ndarray:
        """Compact ids (int64) of an LLMTIME text, one per character: what the tokenizer's ids
        map to under :meth:`row_of_token` (one token per character). Refuses other characters."""
        table = np.full(256, -1, dtype=np.int64)
        table[np.frombuffer(self.characters.encode("ascii"), dtype=np.uint8)] = np.arange(len(self.characters))
        ids = table[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
        if (ids < 0).any():
            bad = sorted({text[i] for i in np.flatnonzero(ids < 0)[:10].tolist()})
            raise ValueError(f"text holds characters outside the LLMTIME alphabet {self.characters!r}: {bad}")
        return ids


def compact_config(full: Qwen2Config, vocabulary: CompactVocabulary) -> Qwen2Config:
    """``full``'s architecture with a ``vocabulary.n_rows``-row (tied) vocabulary; no special
    token ids (none of them is an alphabet character)."""
    if full.vocab_size != vocabulary.vocab_size:
        raise ValueError(f"the config has {full.vocab_size} rows but the vocabulary {vocabulary.vocab_size}")
    if not full.tie_word_embeddings:
        raise ValueError("the compact head needs tied input/output embeddings, as Qwen2.5 has")
    config = Qwen2Config.from_dict({**full.to_dict(), "vocab_size": vocabulary.n_rows, "bos_token_id": None,
                                    "eos_token_id": None, "pad_token_id": None})
    return config


def compact_logits(model: Qwen2ForCausalLM, input_ids: torch.Tensor, log_multiplicity: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, T, n_rows)`` of a compact model on compact ids ``(B, T)``, the shared row
    carrying its ``+log(other_count)``: their cross-entropy is the full vocabulary's."""
    return model(input_ids=input_ids).logits + log_multiplicity  # (B, T, n_rows)


@torch.no_grad()
def expand_to_full_vocabulary(compact: Qwen2ForCausalLM, full_config: Qwen2Config,
                              vocabulary: CompactVocabulary) -> Qwen2ForCausalLM:
    """A full-vocabulary copy of ``compact``: every weight as is, the (tied) embedding row of
    each alphabet token its character's row, every other row the shared row. In eval mode."""
    if compact.config.vocab_size != vocabulary.n_rows:
        raise ValueError(f"the compact model has {compact.config.vocab_size} rows, the vocabulary {vocabulary.n_rows}")
    full = Qwen2ForCausalLM(full_config)
    state = {name: value for name, value in compact.state_dict().items()
             if name not in ("model.embed_tokens.weight", "lm_head.weight")}
    missing, unexpected = full.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"model.embed_tokens.weight", "lm_head.weight"}:
        raise ValueError(f"architectures differ: missing {missing}, unexpected {unexpected}")
    rows = compact.get_input_embeddings().weight  # (n_rows, d)
    full.get_input_embeddings().weight.copy_(rows[vocabulary.row_of_token()])  # (V, d)
    if full.get_output_embeddings().weight.data_ptr() != full.get_input_embeddings().weight.data_ptr():
        raise RuntimeError("the full model's output layer is not tied to its embedding")
    return full.eval()


__all__ = ["CompactVocabulary", "compact_config", "compact_logits", "expand_to_full_vocabulary"]
