"""The decoder families the analytic model prices, each traced component by component on a
small real model of its own transformers class (random weights), and every feature it does
not price refused by name."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

import lora
from flopcount import PRESETS, CountSetup, compare_with_trace, forward_flops, generation_flops, model_shape

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
             vocab_size=128, max_position_embeddings=256)


def build(family: str, attention: str = "eager", **overrides):
    torch.manual_seed(0)
    config_class, model_class = {"qwen3": (Qwen3Config, Qwen3ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM),
                                 "mistral": (MistralConfig, MistralForCausalLM)}[family]
    fields = {**SMALL, **({"head_dim": 16} if family == "qwen3" else {}), **overrides}
    return model_class(config_class(**fields, attn_implementation=attention)).eval()


@pytest.mark.parametrize("family", ["qwen3", "llama", "mistral"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("rank", [0, 4])
def test_every_component_of_each_family_matches_the_trace(family, attention, rank):
    model = build(family, attention, tie_word_embeddings=family != "mistral",
                  **({"attention_bias": True} if family == "llama" else {}))
    if rank:
        lora.inject(model, rank, targets=("q_proj", "v_proj", "o_proj"))
    table = compare_with_trace(model, seq_len=7, batch=2)
    assert table.unexplained() == []
    assert all(row.traced == row.analytic for row in table.rows), table.to_markdown()
    if family == "qwen3":
        assert all(row.analytic > 0 for row in table.rows if row.component == "qk_norm" and row.place != "pre")


def test_the_families_differ_where_their_architectures_do():
    qwen3, llama = model_shape(build("qwen3").config), model_shape(build("llama", attention_bias=True).config)
    assert qwen3.qk_norm and not qwen3.qkv_bias
    assert not llama.qk_norm and llama.qkv_bias and llama.o_bias  # attention_bias covers o_proj too
    exact = forward_flops(CountSetup.of(qwen3, "exact"), 8)
    heads = qwen3.num_heads + qwen3.num_kv_heads
    assert exact.component("qk_norm", layer=0).flops == 8 * heads * (3 * 16 + 16 + 2 + 10)  # RMSNorm of hd=16
    assert forward_flops(CountSetup.of(model_shape(build("llama").config), "exact"), 8).component("qk_norm").flops == 0


@pytest.mark.parametrize("preset", ["qwen3-0.6b", "qwen3-8b", "llama-2-7b", "llama-3.2-1b", "llama-3.1-8b",
                                    "mistral-7b-v0.1"])
def test_family_presets_count(preset):
    assert forward_flops(preset, 128).total > 0
    assert model_shape(preset) is PRESETS[preset]


def test_sliding_window_attention_is_refused_once_it_is_active():
    mistral = model_shape(build("mistral", sliding_window=16).config)
    assert mistral.sliding_window == 16
    assert forward_flops(mistral, 16).total > 0  # within the window the dense count is the work
    with pytest.raises(ValueError, match=r"sliding-window attention \(window 16\) is active at 17 keys"):
        forward_flops(mistral, 17)
    with pytest.raises(ValueError, match="sliding-window attention"):
        forward_flops(mistral, 1, past_len=16)
    with pytest.raises(ValueError, match="sliding-window attention"):
        generation_flops(mistral, 10, 8)  # the last decoding step sees 17 keys
    assert model_shape(build("mistral", sliding_window=None).config).sliding_window is None
    qwen = {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 96, "vocab_size": 128, "sliding_window": 8, "use_sliding_window": False}
    assert model_shape_of(qwen).sliding_window is None  # Qwen2 ships a window it does not use
    assert model_shape_of({**qwen, "use_sliding_window": True}).sliding_window == 8


def model_shape_of(fields: dict):
    from flopcount.count.shape import shape_from_config

    return shape_from_config(fields)


@pytest.mark.parametrize("fields, named", [
    ({"model_type": "gpt2"}, "model_type 'gpt2' is not priced"),
    ({"model_type": "llama", "hidden_act": "gelu_pytorch_tanh"}, "hidden_act 'gelu_pytorch_tanh' has no formula"),
    ({"model_type": "mistral", "num_local_experts": 8}, "mixture-of-experts layers (num_local_experts = 8)"),
    ({"model_type": "qwen3", "num_experts": 64}, "mixture-of-experts layers (num_experts = 64)"),
    ({"model_type": "llama", "layer_types": ["full_attention", "chunked_attention"]}, "chunked_attention"),
])
def test_an_unpriced_feature_is_refused_by_name(fields, named):
    base = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 96,
            "vocab_size": 128}
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        model_shape_of({**base, **fields})
