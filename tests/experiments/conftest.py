"""Fixtures for the experiments tests: the ``tiny`` Qwen2 model, in memory and saved to disk, and a
small pretrained base (``learned_base``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.models.loading import build_tiny_model, save_tiny_model


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
    from experiments.models.base_cache import ensure_base
    from experiments.models.base_recipe import TEST_RECIPE

    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # the workers' base directories share this run's parent
        root = root.parent
    return ensure_base(TEST_RECIPE, root / TEST_RECIPE.name, tokenizer_source=qwen_assets, progress=False)
