"""Fixtures for the model tests: a full-vocabulary model made from a compact (14-row) one."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2ForCausalLM

from experiments.models.compact_head import CompactVocabulary, compact_config, expand_to_full_vocabulary
from experiments.models.loading import tiny_config


@pytest.fixture(scope="session")
def vocabulary(qwen_tokenizer) -> CompactVocabulary:
    """The LLMTIME alphabet of the real Qwen2.5 tokenizer in its 151,936-row vocabulary."""
    return CompactVocabulary.from_tokenizer(qwen_tokenizer, tiny_config().vocab_size)


def compact_model(vocabulary: CompactVocabulary, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised ``tiny`` model with the 14-row compact head."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Qwen2ForCausalLM(compact_config(tiny_config(), vocabulary)).eval()


@pytest.fixture
def compact_and_full(vocabulary) -> tuple[Qwen2ForCausalLM, Qwen2ForCausalLM]:
    """A random compact model and its full-vocabulary copy (fresh per test: tests may modify them)."""
    compact = compact_model(vocabulary)
    return compact, expand_to_full_vocabulary(compact, tiny_config(), vocabulary)
