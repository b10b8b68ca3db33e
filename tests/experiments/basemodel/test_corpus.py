"""The base's pretraining corpus: general sequences, scaled both ways, as compact-id rows."""

from __future__ import annotations

import numpy as np
import torch

from experiments.basemodel.corpus import (
    IGNORE_INDEX,
    compact_rows,
    pretrain_corpus,
    scaling_alphas,
    corpus_sequences,
)
from experiments.basemodel.recipe import BaseRecipe
from lvdata import per_trajectory_alpha

# 48 + 8 general sequences, rows of 256 tokens (as test_pretrain.py's small build)
SMALL = BaseRecipe(name="small", sequences=48, validation_sequences=8, context=256,
                   batch_size=2, steps=6, warmup_steps=2, eval_every=3, eval_rows=4, checkpoint_every=2)


def test_the_corpus_is_general_sequences_scaled_both_ways(vocabulary):
    trajectories = corpus_sequences(SMALL)
    assert trajectories.shape == (56, 100, 2) and np.isfinite(trajectories).all()
    alphas, by_context = scaling_alphas(trajectories, SMALL)
    assert 0 < by_context.sum() < len(by_context)
    assert np.allclose(alphas[by_context], per_trajectory_alpha(trajectories[by_context, :50]))
    assert np.allclose(alphas[~by_context], per_trajectory_alpha(trajectories[~by_context]))
    corpus = pretrain_corpus(SMALL, vocabulary)
    assert corpus.train.ids.shape == (48, 256) and corpus.validation.ids.shape == (8, 256)
    assert corpus.train.ids.max() < vocabulary.other_row  # only the alphabet: no padding in cut rows
    input_ids, labels = corpus.train.batch(np.array([0, 1]))
    assert torch.equal(input_ids, labels) and input_ids.dtype == torch.int64
    assert not (corpus.train.ids[:, None] == corpus.validation.ids[None]).all(axis=2).any()  # disjoint systems


def test_short_texts_are_padded_and_their_padding_is_not_a_target(vocabulary):
    rows, cut_rows = compact_rows(["0.10,0.20;", "1.25,3.50;0.75,2.00;"], vocabulary, context=16)
    assert len(rows) == 2 and rows.ids.shape == (2, 16) and cut_rows == 1  # the second text is cut
    input_ids, labels = rows.batch(np.array([0]))
    assert (labels[0, 10:] == IGNORE_INDEX).all() and (labels[0, :10] != IGNORE_INDEX).all()
    assert rows.tokens(np.array([0, 1])) == 10 + 16 and input_ids.dtype == torch.int64
