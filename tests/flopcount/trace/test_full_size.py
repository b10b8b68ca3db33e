"""The full Qwen2.5-0.5B architecture (shipped config.json, random float32 weights) against the
analytic exact count: fvcore trace, FlopCounterMode matmul counts, forward-hook shapes and the
measured backward / forward ratio of a LoRA step.

Most checks use the real widths with 2 layers (built once per module); one builds all 24.
"""

import copy
import dataclasses

import pytest
import torch
from transformers import AutoConfig, Qwen2ForCausalLM

import lora
from flopcount import CountSetup, PRESETS, check_matmul_flops, compare_with_trace, forward_flops, measure_backward_ratio, \
    model_shape, record_linear_shapes, width_mismatches

pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.trace` is deprecated:DeprecationWarning")


def build_real_width(qwen_assets, layers: int) -> Qwen2ForCausalLM:
    config = AutoConfig.from_pretrained(qwen_assets, attn_implementation="eager")
    config.num_hidden_layers = layers
    config.torch_dtype = torch.float32
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).float().eval()


@pytest.fixture(scope="module")
def two_layers(qwen_assets):
    return build_real_width(qwen_assets, layers=2)


@pytest.fixture(scope="module")
def two_layers_lora(two_layers):
    model = copy.deepcopy(two_layers)
    lora.inject(model, 8, targets=("q_proj", "v_proj"))
    return model


def ids(batch, seq_len, seed=0):
    return torch.randint(0, 151936, (batch, seq_len), generator=torch.Generator().manual_seed(seed))


def test_the_real_widths_are_the_0_5b_preset(two_layers):
    shape = model_shape(two_layers)
    assert (shape.hidden_size, shape.num_heads, shape.num_kv_heads, shape.head_dim, shape.intermediate_size,
            shape.vocab_size) == (896, 14, 2, 64, 4864, 151936)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("seq_len, batch", [(1, 1), (7, 2), (33, 1)])
def test_trace_matches_layer_by_layer(two_layers, attention, seq_len, batch):
    two_layers.set_attn_implementation(attention)
    table = compare_with_trace(two_layers, seq_len, batch)
    assert table.unexplained() == []
    assert all(r.traced == r.analytic for r in table.matmul_rows())  # every matmul component exactly
    assert table.max_layer_error() < 0.01  # each layer within 1% (in fact 0)
    assert all(r.macs_match for r in table.matmul_rows() if r.fvcore_macs is not None)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_trace_matches_with_lora(two_layers_lora, attention):
    two_layers_lora.set_attn_implementation(attention)
    table = compare_with_trace(two_layers_lora, 16, 2)
    lora_rows = [r for r in table.rows if r.component == "lora" and r.place in ("0", "1")]
    # q: 896 -> 8 -> 896, v: 896 -> 8 -> 128 (real GQA width), for 32 tokens
    q = 32 * 8 * (2 * 896 - 1) + 32 * 896 * (2 * 8 - 1) + 2 * 32 * 896
    v = 32 * 8 * (2 * 896 - 1) + 32 * 128 * (2 * 8 - 1) + 2 * 32 * 128
    assert [r.traced for r in lora_rows] == [q + v, q + v]
    assert table.unexplained() == [] and all(r.traced == r.analytic for r in table.rows)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_flop_counter_mode_matmuls_match_the_analytic_widths(two_layers_lora, attention):
    two_layers_lora.set_attn_implementation(attention)
    checks = check_matmul_flops(two_layers_lora, ids(2, 12))
    assert [c for c in checks if not c.ok] == []
    # FlopCounterMode's 2*m*n*p is twice our mul count of each product
    report = forward_flops(CountSetup.of("qwen2.5-0.5b", "exact"), 12, 2)
    k_proj = next(c for c in checks if c.module == "model.layers.1.self_attn.k_proj")
    assert k_proj.measured == 2 * report.component("k_proj", layer=1)["mul"] == 2 * 24 * 896 * 128


def test_hooks_see_the_widths_exact_assumes_and_coursework_overstates(two_layers_lora):
    recorded = record_linear_shapes(two_layers_lora, ids(1, 10))
    shape = model_shape(two_layers_lora)
    assert recorded["model.layers.0.self_attn.k_proj"].out_features == 128
    assert recorded["model.layers.0.self_attn.v_proj.base"].out_features == 128
    assert width_mismatches(shape, recorded, tokens=10, convention="exact") == []
    coursework = width_mismatches(shape, recorded, tokens=10, convention="coursework")
    assert sorted(coursework) == sorted(
        f"model.layers.{i}.self_attn.{name}: runs 896 -> 128, coursework assumes 896 -> 896"
        for i in range(2) for name in ("k_proj", "v_proj.base"))
    assert width_mismatches(shape, recorded, tokens=11) != []  # the row count is checked too


def test_backward_over_forward_of_a_lora_step_is_measured(two_layers_lora):
    two_layers_lora.set_attn_implementation("eager")
    measured = measure_backward_ratio(two_layers_lora, ids(2, 32))
    checks = check_matmul_flops(two_layers_lora, ids(2, 32))
    assert measured.forward == next(c.measured for c in checks if c.module == "")  # real counts
    assert measured.assumed == 2
    # frozen base: no weight gradients for the base layers, so well under the 2x rule
    assert 0.5 < measured.ratio < 2.0
    assert all(p.grad is None for p in two_layers_lora.parameters())  # nothing left behind


@pytest.mark.slow  # ~13 s alone on 2 cores, above 20 s when the machine is busy
def test_full_depth_0_5b_matches(qwen_assets):
    model = build_real_width(qwen_assets, layers=24)  # ~2 GB, ~10 s to build
    assert dataclasses.replace(model_shape(model), name="qwen2.5-0.5b") == PRESETS["qwen2.5-0.5b"]
    table = compare_with_trace(model, 8, 1)
    assert sorted({r.place for r in table.rows}, key=str) == sorted(["pre", "post", *map(str, range(24))], key=str)
    assert table.unexplained() == [] and all(r.traced == r.analytic for r in table.rows)
    assert "| 23 " in table.to_markdown()
