"""Fixtures of the flopcount tests: small real Qwen2 models (random weights)."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def build_tiny_qwen2(attn_implementation: str = "eager", seed: int = 0, **overrides) -> Qwen2ForCausalLM:
    """A 2-layer Qwen2 with GQA (4 query heads, 2 KV heads of 16), vocab 128, eval mode."""
    fields = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=96, vocab_size=128, tie_word_embeddings=True, max_position_embeddings=256)
    torch.manual_seed(seed)
    config = Qwen2Config(**{**fields, **overrides}, attn_implementation=attn_implementation)
    return Qwen2ForCausalLM(config).eval()


@pytest.fixture
def tiny_qwen2():
    return build_tiny_qwen2
