"""Small Qwen2 models for the LoRA tests: the real architecture (GQA, q/k/v biases, tied
embeddings) with a 128-entry vocabulary so that every test builds its own in milliseconds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


@pytest.fixture(scope="session")
def small_qwen2_config() -> Qwen2Config:
    return Qwen2Config(
        vocab_size=128,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=96,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )


@pytest.fixture
def make_qwen2(small_qwen2_config) -> Callable[..., Qwen2ForCausalLM]:
    """``make_qwen2(seed=0, **config_overrides)``: a fresh model, equal weights for equal seeds."""

    def make(seed: int = 0, **overrides) -> Qwen2ForCausalLM:
        config = Qwen2Config(**{**small_qwen2_config.to_dict(), **overrides})
        torch.manual_seed(seed)
        return Qwen2ForCausalLM(config).eval()

    return make


@pytest.fixture
def token_batch(small_qwen2_config) -> torch.Tensor:
    """Input ids, shape (2, 12)."""
    generator = torch.Generator().manual_seed(123)
    return torch.randint(0, small_qwen2_config.vocab_size, (2, 12), generator=generator)
