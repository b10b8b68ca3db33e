"""FlopReport and GenerationReport: lookups, scaling, the JSON-ready dict and the text tables."""

import json

import pytest

from flopcount import COMPONENTS, CountSetup, ModelShape, OpCount, forward_flops, generation_flops

TINY = ModelShape(hidden_size=8, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=4, intermediate_size=16,
                  vocab_size=32, tie_word_embeddings=True, qkv_bias=True, name="tiny")


def test_report_to_dict_is_json_ready():
    report = forward_flops(CountSetup.of(TINY, "exact", lora_rank=2), 3, 2)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["total"] == report.total and list(data["by_component"]) == list(COMPONENTS)
    assert data["by_layer"]["0"] == report.by_layer()[0]
    assert data["lora"] == {"rank": 2, "targets": ["q_proj", "v_proj"], "lm_head_bias": False}
    assert (data["model"], data["convention"], data["batch"], data["seq_len"]) == ("tiny", "exact", 2, 3)
    text = str(report)
    assert "attn_scores" in text and f"{report.total:,}" in text


def test_report_component_lookup_rejects_unknown_names():
    with pytest.raises(KeyError, match="mlp_gelu"):
        forward_flops(TINY, 2).component("mlp_gelu")
    assert forward_flops(TINY, 2).component("lora") == OpCount()


def test_generation_report_dict_and_text():
    report = generation_flops(CountSetup.of(TINY, lora_rank=2), 6, 4, samples=2)
    data = report.to_dict()
    assert data["total"] == report.total == data["prefill"]["total"] + data["decode"]["total"]
    assert sum(data["by_component"].values()) == report.total
    assert "prefill" in str(report) and "decode" in str(report)


def test_scaling_multiplies_every_entry_and_composes():
    report = forward_flops(CountSetup.of(TINY, "exact"), 3, 2)
    tripled = report.scaled(3)
    assert [e.count for e in tripled.entries] == [e.count * 3 for e in report.entries]
    assert tripled.scaled(2).multiplier == 6 and tripled.scaled(2).total == 6 * report.total
    assert tripled.by_primitive() == {k: 3 * v for k, v in report.by_primitive().items()}


def test_a_component_is_found_per_layer_outside_the_layers_or_summed():
    report = forward_flops(TINY, 3)
    per_layer = [report.component("q_proj", layer=i) for i in range(TINY.num_layers)]
    assert report.component("q_proj") == per_layer[0] + per_layer[1]
    assert report.component("q_proj", layer=None) == OpCount()
    assert report.component("lm_head", layer=None) == report.component("lm_head") != OpCount()
    assert sum(report.by_layer().values()) == sum(report.by_component().values()) == report.total
