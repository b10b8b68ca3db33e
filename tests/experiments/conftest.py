"""Fixtures for the experiments tests: the ``tiny`` Qwen2 model, in memory and saved to disk, and a
small pretrained base (``learned_base``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import torch
from transformers import Qwen2ForCausalLM

from experiments.basemodel.compact_head import CompactVocabulary, compact_config, expand_to_full_vocabulary
from experiments.models.loading import build_tiny_model, save_tiny_model, tiny_config


@pytest.fixture(scope="session")
def tiny_model_dir(qwen_assets, tmp_path_factory) -> Path:
    """The ``tiny`` model (seed 0) and the real Qwen2.5 tokenizer, written with ``save_pretrained``.

    Load it with ``experiments.models.loading.load_model`` / ``load_model_and_tokenizer``, the code path
    of the real checkpoint. Session-scoped: treat it as read-only.
    """
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"), tokenizer_source=qwen_assets, seed=0)


@pytest.fixture
def tiny_model():
    """A fresh ``tiny`` model (seed 0, eval mode, parameters not frozen) in memory; tests may modify it."""
    return build_tiny_model(seed=0)


@pytest.fixture(scope="session")
def learned_base(qwen_assets, tmp_path_factory, worker_id) -> Path:
    """A small base pretrained on simulated trajectories (``TEST_RECIPE``), built ONCE per test run:
    pytest-xdist workers share one directory and wait for one build (``ensure_base`` locks it).
    Read-only for the tests; load it with ``load_model``."""
    from experiments.basemodel.cache import ensure_base
    from experiments.basemodel.recipe import TEST_RECIPE

    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # the workers' base directories share this run's parent
        root = root.parent
    return ensure_base(TEST_RECIPE, root / TEST_RECIPE.name, tokenizer_source=qwen_assets, progress=False)



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
