"""lora.inject on a small Qwen2: which modules, what is trainable, the report, lm_head bias."""

from __future__ import annotations

import pytest
import torch

from lora import LoRAConfig, LoRALinear, inject, injected_config, lora_state_dict, trainable_parameters


def expected_lora_numel(config, r: int, targets: tuple[str, ...]) -> int:
    """LoRA parameters per the Qwen2 shapes: r * (in + out) for every wrapped projection."""
    h, head_dim = config.hidden_size, config.head_dim
    widths = {  # (in, out) per projection
        "q_proj": (h, config.num_attention_heads * head_dim),
        "k_proj": (h, config.num_key_value_heads * head_dim),
        "v_proj": (h, config.num_key_value_heads * head_dim),
        "o_proj": (config.num_attention_heads * head_dim, h),
        "gate_proj": (h, config.intermediate_size),
        "up_proj": (h, config.intermediate_size),
        "down_proj": (config.intermediate_size, h),
    }
    return config.num_hidden_layers * sum(r * sum(widths[t]) for t in targets)


def test_default_injection_wraps_q_and_v_in_every_layer(make_qwen2, small_qwen2_config):
    model = make_qwen2()
    total_before = sum(p.numel() for p in model.parameters())
    report = inject(model, r=4)

    layers = range(small_qwen2_config.num_hidden_layers)
    assert report.replaced == tuple(f"model.layers.{i}.self_attn.{p}" for i in layers for p in ("q_proj", "v_proj"))
    for name in report.replaced:
        assert isinstance(model.get_submodule(name), LoRALinear)
    assert not isinstance(model.model.layers[0].self_attn.k_proj, LoRALinear)
    assert report.trainable_count == expected_lora_numel(small_qwen2_config, 4, ("q_proj", "v_proj"))
    assert report.total_count == total_before + report.trainable_count
    assert {b.name for b in report.trainable_blocks} == set(trainable_parameters(model))
    assert model.model.layers[1].self_attn.v_proj.lora_B.shape == (32, 4)  # GQA: 2 KV heads x 16


def test_every_base_parameter_is_frozen(make_qwen2):
    model = make_qwen2()
    inject(model, r=2)
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == name.endswith(("lora_A", "lora_B")), name


def test_injection_leaves_outputs_unchanged_at_init(make_qwen2, token_batch):
    model = make_qwen2()
    before = model(token_batch).logits
    inject(model, r=8, alpha=16)
    assert torch.equal(model(token_batch).logits, before)


@pytest.mark.parametrize("targets", [("k_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")])
def test_any_set_of_projections_can_be_targeted(make_qwen2, small_qwen2_config, targets):
    model = make_qwen2()
    report = inject(model, r=3, targets=targets)
    assert len(report.replaced) == small_qwen2_config.num_hidden_layers * len(targets)
    assert report.trainable_count == expected_lora_numel(small_qwen2_config, 3, targets)


def test_unknown_target_lists_the_linear_layers_available(make_qwen2):
    model = make_qwen2()
    with pytest.raises(ValueError, match=r"\['qkv'\] match no nn.Linear.*'down_proj'.*'q_proj'.*'v_proj'"):
        inject(model, r=2, targets=("q_proj", "qkv"))
    assert all(p.requires_grad for p in model.parameters())  # refused before anything changed


def test_second_injection_is_refused(make_qwen2):
    model = make_qwen2()
    inject(model, r=2)
    with pytest.raises(RuntimeError, match="already carries LoRA adapters"):
        inject(model, r=2)


def test_config_object_is_accepted_and_recorded(make_qwen2):
    model = make_qwen2()
    config = LoRAConfig(r=2, alpha=4, targets=["v_proj"])
    report = inject(model, config)
    assert report.config == injected_config(model) == config
    assert config.targets == ("v_proj",) and config.scaling == 2.0
    assert model.model.layers[0].self_attn.v_proj.scaling == 2.0


def test_config_plus_keyword_hyperparameters_is_ambiguous(make_qwen2):
    with pytest.raises(TypeError, match="either a LoRAConfig or keyword"):
        inject(make_qwen2(), LoRAConfig(r=2), alpha=8)


def test_lora_config_resolves_alpha_and_validates():
    assert LoRAConfig(r=4) == LoRAConfig(r=4, alpha=4)
    assert LoRAConfig.from_dict(LoRAConfig(r=2, dropout=0.1, lm_head_bias=True).to_dict()) == LoRAConfig(
        r=2, dropout=0.1, lm_head_bias=True)
    with pytest.raises(ValueError, match="duplicates"):
        LoRAConfig(r=2, targets=("q_proj", "q_proj"))
    with pytest.raises(ValueError, match="non-empty"):
        LoRAConfig(r=2, targets=())
    with pytest.raises(ValueError, match="unknown LoRAConfig fields"):
        LoRAConfig.from_dict({"r": 2, "rank": 2})


def test_report_is_readable(make_qwen2):
    text = str(inject(make_qwen2(), r=4))
    assert "model.layers.1.self_attn.v_proj.lora_B" in text and "(32, 4)" in text
    assert "4 linear layers wrapped" in text
    assert "trainable 1,792 of" in text  # 2 layers x 4 x ((64 + 64) + (64 + 32))


def test_lora_state_dict_holds_the_adapter_tensors_only(make_qwen2):
    model = make_qwen2()
    inject(model, r=2)
    state = lora_state_dict(model)
    assert set(state) == set(trainable_parameters(model))
    assert all(not tensor.requires_grad for tensor in state.values())
    with pytest.raises(ValueError, match="no LoRA adapters"):
        lora_state_dict(make_qwen2())


def test_lm_head_bias_is_trainable_and_leaves_the_tied_weight_alone(make_qwen2, small_qwen2_config):
    model = make_qwen2()
    embedding_before = model.model.embed_tokens.weight.detach().clone()
    report = inject(model, r=2, lm_head_bias=True)

    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    assert not model.lm_head.weight.requires_grad
    assert model.lm_head.bias.requires_grad and model.lm_head.bias.shape == (small_qwen2_config.vocab_size,)
    assert report.lm_head_bias == "lm_head.bias"
    assert report.trainable_count == expected_lora_numel(small_qwen2_config, 2, ("q_proj", "v_proj")) + 128
    assert "lm_head.bias" in lora_state_dict(model)
    assert torch.equal(model.model.embed_tokens.weight, embedding_before)


def test_lm_head_bias_shifts_every_logit_and_gets_gradients(make_qwen2, token_batch):
    model = make_qwen2()
    inject(model, r=2, lm_head_bias=True)
    zero_bias_logits = model(token_batch).logits
    bias = torch.randn(model.lm_head.out_features)
    with torch.no_grad():
        model.lm_head.bias.copy_(bias)
    logits = model(token_batch, labels=token_batch)
    torch.testing.assert_close(logits.logits - zero_bias_logits, bias.expand_as(zero_bias_logits))
    logits.loss.backward()
    assert model.lm_head.bias.grad.abs().sum() > 0
    assert model.model.embed_tokens.weight.grad is None


def test_lm_head_bias_is_off_by_default(make_qwen2):
    model = make_qwen2()
    report = inject(model, r=2)
    assert model.lm_head.bias is None and report.lm_head_bias is None


def test_lm_head_bias_refusals_leave_the_model_unchanged(make_qwen2):
    model = make_qwen2()
    with pytest.raises(ValueError, match="cannot be combined with LoRA on the output projection 'lm_head'"):
        inject(model, r=2, targets=("q_proj", "lm_head"), lm_head_bias=True)
    model.lm_head.bias = torch.nn.Parameter(torch.ones(model.lm_head.out_features))
    with pytest.raises(ValueError, match="lm_head already has a bias"):
        inject(model, r=2, lm_head_bias=True)
    assert injected_config(model) is None and all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
