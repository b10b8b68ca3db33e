"""The base's pretraining text: general two-variable sequences as LLMTIME rows of compact token ids.

The sequences come from :mod:`experiments.basemodel.families` (oscillators, walks, epidemics,
Lotka–Volterra only far outside the real ranges...), never from the real file, so the base
knows numbers and the format but not the task's dynamics. Each is scaled by its per-trajectory
α, from the whole sequence or (for a fraction of them, as forecast prompts are) from its first
steps only, encoded as LLMTIME text and written as compact ids (one per character;
:mod:`experiments.basemodel.compact_head`), one sequence per row of ``context`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from experiments.basemodel.recipe import BaseRecipe
from experiments.basemodel.compact_head import CompactVocabulary
from experiments.basemodel.families import general_sequences
from lvdata import LLMTimeFormat, encode, per_trajectory_alpha

IGNORE_INDEX = -100


@dataclass(frozen=True)
class CompactRows:
    """``ids`` uint8 ``(N, context)`` compact ids, right-padded with the shared row, and
    ``lengths`` int64 ``(N,)`` the real tokens of each row."""

    ids: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, labels)`` int64 ``(B, context)`` of rows ``indices``; labels are −100 on
        padding. Rows are right-padded, so causal attention needs no mask: no real position
        ever attends to a padded one."""
        ids = torch.from_numpy(self.ids[indices].astype(np.int64))  # (B, T)
        real = torch.arange(ids.shape[1]) < torch.from_numpy(self.lengths[indices])[:, None]  # (B, T)
        return ids, torch.where(real, ids, IGNORE_INDEX)

    def targets(self, indices: np.ndarray) -> int:
        """Next-token targets the loss scores in rows ``indices`` (real tokens after the first)."""
        return int(np.maximum(self.lengths[indices] - 1, 0).sum())

    def tokens(self, indices: np.ndarray) -> int:
        """Real (non-padding) tokens in rows ``indices``."""
        return int(self.lengths[indices].sum())


@dataclass(frozen=True)
class PretrainCorpus:
    """The training and validation rows of a recipe, and what the trajectories looked like."""

    train: CompactRows
    validation: CompactRows
    context_scaled: int  # training rows scaled by the α of their first ``context_alpha_steps`` steps
    truncated: int  # rows (training and validation) whose text was longer than ``context`` tokens


SEQUENCE_TIME = np.linspace(0.0, 200.0, 100)  # the real data's grid


def corpus_sequences(recipe: BaseRecipe) -> np.ndarray:
    """float32 ``(sequences + validation_sequences, 100, 2)``: the training sequences, then the
    validation ones (another stream of the same families), from ``general_sequences``."""
    train, _ = general_sequences(recipe.sequences, recipe.seed, SEQUENCE_TIME, stream=0)
    validation, _ = general_sequences(recipe.validation_sequences, recipe.seed, SEQUENCE_TIME, stream=1)
    return np.concatenate([train, validation])


def scaling_alphas(trajectories: np.ndarray, recipe: BaseRecipe) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas (N,), context_scaled (N,) bool)``: a random ``context_alpha_fraction`` of the
    trajectories (seeded by the recipe) take the α of their first ``context_alpha_steps``
    steps, the others the α of the whole trajectory."""
    rng = np.random.default_rng([recipe.seed, 1])
    context_scaled = rng.random(len(trajectories)) < recipe.context_alpha_fraction
    whole = per_trajectory_alpha(trajectories)
    first = per_trajectory_alpha(trajectories[:, : recipe.context_alpha_steps])
    return np.where(context_scaled, first, whole), context_scaled


def compact_rows(texts: list[str], vocabulary: CompactVocabulary, context: int) -> tuple[CompactRows, int]:
    """Each text's first ``context`` compact ids as one row; also how many texts were cut."""
    ids = np.full((len(texts), context), vocabulary.other_row, dtype=np.uint8)
    lengths = np.empty(len(texts), dtype=np.int64)
    for row, text in enumerate(texts):
        encoded = vocabulary.encode_text(text[:context])
        ids[row, : len(encoded)] = encoded
        lengths[row] = len(encoded)
    return CompactRows(ids, lengths), sum(len(text) > context for text in texts)


def pretrain_corpus(recipe: BaseRecipe, vocabulary: CompactVocabulary) -> PretrainCorpus:
    """Generate, scale, encode and cut the recipe's rows (about 10 s for 24,000 sequences)."""
    trajectories = corpus_sequences(recipe)
    alphas, context_scaled = scaling_alphas(trajectories, recipe)
    texts = encode(trajectories, alphas, LLMTimeFormat(precision=recipe.precision))
    rows, truncated = compact_rows(texts, vocabulary, recipe.context)
    n = recipe.sequences
    split = (CompactRows(rows.ids[:n], rows.lengths[:n]), CompactRows(rows.ids[n:], rows.lengths[n:]))
    return PretrainCorpus(*split, context_scaled=int(context_scaled[:n].sum()),
                          truncated=truncated)


__all__ = ["CompactRows", "PretrainCorpus", "compact_rows", "pretrain_corpus", "scaling_alphas",
           "corpus_sequences"]
