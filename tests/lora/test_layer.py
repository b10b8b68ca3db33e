"""LoRALinear: initialisation, the forward formula, shapes, gradients, dropout, merge/unmerge."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lora import LoRALinear


def make_layer(in_features=16, out_features=8, r=4, alpha=None, dropout=0.0, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return LoRALinear(nn.Linear(in_features, out_features, dtype=dtype), r, alpha=alpha, dropout=dropout)


def randomise_b(layer: LoRALinear, seed: int = 1) -> None:
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=torch.Generator().manual_seed(seed)))


def test_output_equals_base_exactly_at_init():
    layer = make_layer()
    x = torch.randn(3, 5, 16)
    assert torch.equal(layer.lora_B, torch.zeros(8, 4))
    assert torch.equal(layer(x), layer.base(x))


def test_a_is_kaiming_uniform_with_bound_one_over_sqrt_fan_in():
    layer = make_layer(in_features=400, out_features=8, r=8)
    bound = 1 / math.sqrt(400)
    assert layer.lora_A.abs().max() <= bound
    # uniform(-b, b) has std b / sqrt(3); 3200 samples put the estimate within a few percent
    assert layer.lora_A.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_forward_is_base_plus_scaled_low_rank_update():
    layer = make_layer(r=4, alpha=8)
    randomise_b(layer)
    x = torch.randn(2, 7, 16)
    update = x @ layer.lora_A.T @ layer.lora_B.T  # (2, 7, 8)
    torch.testing.assert_close(layer(x), layer.base(x) + 2.0 * update)
    assert layer.scaling == 2.0


def test_alpha_defaults_to_rank():
    layer = make_layer(r=6)
    assert (layer.alpha, layer.scaling) == (6.0, 1.0)


@pytest.mark.parametrize(
    ("in_features", "out_features"),
    [(64, 32), (896, 128)],  # v_proj of the tiny model and of Qwen2.5-0.5B: narrower than hidden (GQA)
)
def test_shapes_for_the_narrow_gqa_v_proj(in_features, out_features):
    layer = make_layer(in_features, out_features, r=4)
    randomise_b(layer)
    assert layer.lora_A.shape == (4, in_features)
    assert layer.lora_B.shape == (out_features, 4)
    assert layer(torch.randn(2, 3, in_features)).shape == (2, 3, out_features)


def test_real_config_v_proj_is_896_to_128(qwen_assets):
    config = json.loads((qwen_assets / "config.json").read_text())
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    v_proj = nn.Linear(config["hidden_size"], config["num_key_value_heads"] * head_dim)
    layer = LoRALinear(v_proj, r=8)
    assert (layer.in_features, layer.out_features) == (896, 128)
    assert layer.lora_B.shape == (128, 8)


def test_only_a_and_b_are_trainable_and_gradients_reach_b_first():
    layer = make_layer()
    assert [name for name, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]
    layer(torch.randn(4, 16)).pow(2).sum().backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    assert layer.lora_B.grad.abs().sum() > 0  # B = 0 but A != 0: B learns from the first step
    assert torch.equal(layer.lora_A.grad, torch.zeros_like(layer.lora_A))  # dL/dA = B^T (...) = 0 at init


def test_lora_tensors_follow_the_base_dtype():
    layer = make_layer(dtype=torch.float64)
    assert layer.lora_A.dtype == layer.lora_B.dtype == torch.float64


def test_zero_dropout_is_identity_and_executes_no_op():
    assert isinstance(make_layer(dropout=0.0).dropout, nn.Identity)


def test_dropout_applies_to_the_lora_branch_only_in_training():
    layer = make_layer(dropout=0.5)
    randomise_b(layer)
    x = torch.randn(5, 16)
    layer.train()
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)
    dropped = F.dropout(x, 0.5, training=True)
    expected = layer.base(x) + F.linear(F.linear(dropped, layer.lora_A), layer.lora_B) * layer.scaling
    assert torch.equal(out, expected)
    assert not torch.equal(dropped, x)
    layer.eval()
    assert torch.equal(layer(x), layer.base(x) + F.linear(F.linear(x, layer.lora_A), layer.lora_B))


def test_merge_matches_unmerged_output_and_unmerge_is_exact():
    layer = make_layer(r=4, alpha=8)
    randomise_b(layer)
    x = torch.randn(3, 16)
    weight_before, out_before = layer.base.weight.detach().clone(), layer(x)
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), out_before, rtol=1e-5, atol=1e-5)
    assert not torch.equal(layer.base.weight, weight_before)
    layer.unmerge()
    assert not layer.merged
    assert torch.equal(layer.base.weight, weight_before)
    assert torch.equal(layer(x), out_before)


def test_merge_in_float64_is_exact_to_1e_12():
    layer = make_layer(r=4, alpha=3, dtype=torch.float64)
    randomise_b(layer)
    x = torch.randn(6, 16, dtype=torch.float64)
    unmerged = layer(x)
    layer.merge()
    assert (layer(x) - unmerged).abs().max().item() < 1e-12


def test_double_merge_and_unmerge_without_merge_are_refused():
    layer = make_layer()
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"r": 0}, ValueError, "r must be >= 1"),
        ({"r": 2.0}, TypeError, "must be an int"),
        ({"r": True}, TypeError, "must be an int"),
        ({"r": 2, "alpha": -1.0}, ValueError, "alpha must be a positive"),
        ({"r": 2, "dropout": 1.0}, ValueError, r"dropout must be a probability in \[0, 1\)"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        LoRALinear(nn.Linear(4, 4), **kwargs)


def test_only_linear_layers_can_be_wrapped():
    with pytest.raises(TypeError, match="wraps an nn.Linear, got Conv1d"):
        LoRALinear(nn.Conv1d(4, 4, 1), r=2)
