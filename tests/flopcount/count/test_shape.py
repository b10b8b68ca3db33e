"""Model shapes: presets, config files, config objects, modules and hub ids."""

import json

import pytest
from transformers import AutoConfig, Qwen2Config, Qwen2ForCausalLM

from flopcount import PRESETS, ModelShape, model_shape


def test_0_5b_preset_matches_the_shipped_config(qwen_assets):
    raw = json.loads((qwen_assets / "config.json").read_text())
    preset = PRESETS["qwen2.5-0.5b"]
    assert preset.hidden_size == raw["hidden_size"] == 896
    assert preset.num_layers == raw["num_hidden_layers"]
    assert preset.num_heads == raw["num_attention_heads"]
    assert preset.num_kv_heads == raw["num_key_value_heads"]
    assert preset.head_dim == raw["hidden_size"] // raw["num_attention_heads"] == 64
    assert preset.intermediate_size == raw["intermediate_size"]
    assert preset.vocab_size == raw["vocab_size"]
    assert preset.tie_word_embeddings == raw["tie_word_embeddings"]
    from_file = model_shape(qwen_assets / "config.json")
    from_dir = model_shape(str(qwen_assets))
    from_config = model_shape(AutoConfig.from_pretrained(qwen_assets))
    for shape in (from_file, from_dir, from_config):
        assert shape == ModelShape(**{**preset.__dict__, "name": shape.name})


def test_presets_vocab_and_tying():
    assert [PRESETS[k].vocab_size for k in ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b")] == \
        [151936, 151936, 151936, 152064]
    assert [PRESETS[k].tie_word_embeddings for k in ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b")] == \
        [True, True, True, False]
    for name, shape in PRESETS.items():
        assert shape.qkv_bias == name.startswith("qwen2.5") and not shape.o_bias and not shape.mlp_bias
        assert shape.qk_norm == name.startswith("qwen3")


@pytest.mark.parametrize("alias, preset", [
    ("Qwen/Qwen2.5-0.5B-Instruct", "qwen2.5-0.5b"),
    ("Qwen/Qwen2.5-1.5B", "qwen2.5-1.5b"),
    ("qwen/qwen2.5-3b-instruct", "qwen2.5-3b"),
    ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
    ("QWEN2.5-0.5B", "qwen2.5-0.5b"),
])
def test_hub_ids_of_the_presets_work_offline(alias, preset):
    assert model_shape(alias) is PRESETS[preset]


def test_module_with_config_and_gqa_widths():
    config = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=96, vocab_size=100, tie_word_embeddings=True)
    shape = model_shape(Qwen2ForCausalLM(config))
    assert (shape.hidden_size, shape.num_layers, shape.num_heads, shape.num_kv_heads, shape.head_dim) == (64, 2, 4, 2, 16)
    assert (shape.q_width, shape.kv_width) == (64, 32)
    assert shape.qkv_bias and not shape.o_bias and shape.tie_word_embeddings


def test_config_json_from_another_family_reads_attention_bias(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
        "intermediate_size": 48, "vocab_size": 10, "attention_bias": False, "head_dim": 8}))
    shape = model_shape(tmp_path)
    assert shape.num_kv_heads == 4 and shape.head_dim == 8 and not shape.qkv_bias and not shape.tie_word_embeddings


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a preset"):
        model_shape("qwen2.5-100b")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        model_shape(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable JSON"):
        model_shape(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 8}))
    with pytest.raises(ValueError, match="num_attention_heads"):
        model_shape(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
        "intermediate_size": 8, "vocab_size": 4, "hidden_act": "gelu"}))
    with pytest.raises(ValueError, match="gelu"):
        model_shape(tmp_path)
    with pytest.raises(TypeError, match="cannot read a model shape"):
        model_shape(3.5)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        ModelShape(hidden_size=8, num_layers=1, num_heads=3, num_kv_heads=2, head_dim=4, intermediate_size=8,
                   vocab_size=4, tie_word_embeddings=False, qkv_bias=False)


def test_sliding_window_settings_whose_layer_types_are_all_full_attention_leave_the_count_dense():
    from transformers import Qwen2Config

    config = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=96, vocab_size=128, use_sliding_window=True, sliding_window=8,
                         max_window_layers=2)
    assert set(config.layer_types) == {"full_attention"}
    assert model_shape(config).sliding_window is None
    sliding = Qwen2Config(**{**config.to_dict(), "max_window_layers": 1, "layer_types": None})
    assert model_shape(sliding).sliding_window == 8


def test_a_size_that_is_not_a_number_is_refused_by_name():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 'big'"):
        model_shape_from({**base_fields(), "hidden_size": "big"})


def test_a_config_without_model_type_is_refused_not_counted_as_qwen2():
    fields = {key: value for key, value in base_fields().items() if key != "model_type"}
    with pytest.raises(ValueError, match="has no model_type"):
        model_shape_from(fields)


def test_mistral_is_counted_without_the_biases_its_modules_never_have():
    from transformers import MistralConfig

    config = MistralConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=96, vocab_size=128, attention_bias=True, mlp_bias=True)
    shape = model_shape(config)
    assert not shape.qkv_bias and not shape.o_bias and not shape.mlp_bias


def base_fields() -> dict:
    return {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 96, "vocab_size": 128}


def model_shape_from(fields: dict) -> ModelShape:
    from flopcount.count.shape import shape_from_config

    return shape_from_config(fields)
