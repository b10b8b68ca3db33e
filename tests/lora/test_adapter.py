"""Adapter files: round trip into a fresh model, the files written, and every refusal
(overwrite, mismatches). peft loading them, and this loading peft's: ``test_peft_files.py``."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lora import (
    ADAPTER_CONFIG,
    ADAPTER_METADATA,
    ADAPTER_WEIGHTS,
    LM_HEAD_BIAS_WEIGHTS,
    LoRAConfig,
    LoRALinear,
    inject,
    injected_config,
    load_adapter,
    lora_state_dict,
    peft_key,
    save_adapter,
)


def trained_like(model, config_kwargs=None, seed=5):
    """Inject and give every adapter tensor random values, as training would."""
    inject(model, **(config_kwargs or {"r": 4}))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in lora_state_dict(model).values():
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model


@pytest.mark.parametrize("config_kwargs", [{"r": 4}, {"r": 2, "alpha": 8, "lm_head_bias": True}])
def test_round_trip_into_a_fresh_model_gives_identical_outputs(make_qwen2, token_batch, tmp_path, config_kwargs):
    trained = trained_like(make_qwen2(), config_kwargs)
    save_adapter(trained, tmp_path / "adapter")

    fresh = make_qwen2()
    assert not torch.equal(fresh(token_batch).logits, trained(token_batch).logits)
    report = load_adapter(fresh, tmp_path / "adapter")
    assert report.config == injected_config(trained)
    assert torch.equal(fresh(token_batch).logits, trained(token_batch).logits)
    assert all(torch.equal(a, b) for a, b in zip(lora_state_dict(fresh).values(), lora_state_dict(trained).values()))


@pytest.mark.parametrize("lm_head_bias", [False, True])
def test_files_hold_only_adapter_tensors_and_the_config(make_qwen2, tmp_path, lm_head_bias):
    model = trained_like(make_qwen2(), {"r": 2, "lm_head_bias": lm_head_bias})
    save_adapter(model, tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())  # and no temporary files left
    lora_names = {name for name in lora_state_dict(model) if ".lora_" in name}
    assert set(load_file(tmp_path / ADAPTER_WEIGHTS)) == {peft_key(name) for name in lora_names}
    document = json.loads((tmp_path / ADAPTER_METADATA).read_text())
    assert (document["format"], document["version"]) == ("llmtime-lora-adapter", 2)
    assert document["lora"] == {"r": 2, "alpha": 2.0, "dropout": 0.0, "targets": ["q_proj", "v_proj"],
                                "lm_head_bias": lm_head_bias}
    assert document["base_model"]["hidden_size"] == model.config.hidden_size
    assert document["peft"]["loadable"] is not lm_head_bias
    if lm_head_bias:  # no peft config: peft refuses the directory rather than drop the bias
        assert written == [ADAPTER_WEIGHTS, ADAPTER_METADATA, LM_HEAD_BIAS_WEIGHTS]
        assert set(load_file(tmp_path / LM_HEAD_BIAS_WEIGHTS)) == {"lm_head.bias"}
        assert "lm_head" in document["peft"]["note"]
    else:
        assert written == [ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_METADATA]
        peft_config = json.loads((tmp_path / ADAPTER_CONFIG).read_text())
        assert {key: peft_config[key] for key in ("peft_type", "task_type", "r", "lora_alpha", "target_modules",
                                                  "bias", "use_rslora", "use_dora")} == {
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 2, "target_modules": ["q_proj", "v_proj"],
            "bias": "none", "use_rslora": False, "use_dora": False}


def test_loading_into_an_already_injected_model_with_the_same_config(make_qwen2, token_batch, tmp_path):
    trained = trained_like(make_qwen2())
    save_adapter(trained, tmp_path)
    fresh = make_qwen2()
    inject(fresh, r=4)
    load_adapter(fresh, tmp_path)
    assert torch.equal(fresh(token_batch).logits, trained(token_batch).logits)


def test_existing_adapter_is_not_overwritten_unless_asked(make_qwen2, tmp_path):
    save_adapter(trained_like(make_qwen2(), seed=1), tmp_path)
    original = (tmp_path / ADAPTER_WEIGHTS).read_bytes()
    other = trained_like(make_qwen2(), seed=2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_adapter(other, tmp_path)
    assert (tmp_path / ADAPTER_WEIGHTS).read_bytes() == original
    save_adapter(other, tmp_path, overwrite=True)
    assert (tmp_path / ADAPTER_WEIGHTS).read_bytes() != original


def test_save_refuses_a_model_without_adapters_or_a_different_config(make_qwen2, tmp_path):
    with pytest.raises(ValueError, match="no LoRA adapters"):
        save_adapter(make_qwen2(), tmp_path)
    model = trained_like(make_qwen2())
    with pytest.raises(ValueError, match="differs from the one injected"):
        save_adapter(model, tmp_path, LoRAConfig(r=8))
    assert list(tmp_path.iterdir()) == []


def test_config_mismatch_with_an_injected_model_is_refused(make_qwen2, tmp_path):
    save_adapter(trained_like(make_qwen2()), tmp_path)
    model = make_qwen2()
    inject(model, r=2)
    with pytest.raises(ValueError, match="already carries LoRA .*r=2.* but the adapter .* has .*r=4"):
        load_adapter(model, tmp_path)


def test_architecture_mismatch_names_the_field_and_leaves_the_model_alone(make_qwen2, tmp_path):
    save_adapter(trained_like(make_qwen2()), tmp_path)
    wider = make_qwen2(hidden_size=96, head_dim=24)
    with pytest.raises(ValueError, match="hidden_size=64.*this model has hidden_size=96"):
        load_adapter(wider, tmp_path)
    assert injected_config(wider) is None
    assert not any(isinstance(m, LoRALinear) for m in wider.modules())


def rewrite_weights(path, edit) -> None:
    """Apply ``edit`` to the stored tensors, keeping the metadata (so only the edit is wrong)."""
    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata=metadata)


def test_tensor_shape_mismatch_names_the_tensor(make_qwen2, tmp_path):
    save_adapter(trained_like(make_qwen2()), tmp_path)
    key = peft_key("model.layers.1.self_attn.v_proj.lora_B")
    rewrite_weights(tmp_path / ADAPTER_WEIGHTS, lambda tensors: tensors.update({key: torch.zeros(64, 4)}))
    with pytest.raises(ValueError, match=rf"{key} .* shape \(64, 4\).*expects \(32, 4\)"):
        load_adapter(make_qwen2(), tmp_path)


def test_missing_tensor_is_named(make_qwen2, tmp_path):
    save_adapter(trained_like(make_qwen2()), tmp_path)
    key = peft_key("model.layers.0.self_attn.q_proj.lora_A")
    rewrite_weights(tmp_path / ADAPTER_WEIGHTS, lambda tensors: tensors.pop(key))
    with pytest.raises(ValueError, match=rf"missing tensors \['{key}'\]"):
        load_adapter(make_qwen2(), tmp_path)


def test_files_from_different_saves_are_detected(make_qwen2, tmp_path):
    save_adapter(trained_like(make_qwen2(), {"r": 4}), tmp_path / "r4")
    save_adapter(trained_like(make_qwen2(), {"r": 2}), tmp_path / "r2")
    (tmp_path / "r2" / ADAPTER_WEIGHTS).replace(tmp_path / "r4" / ADAPTER_WEIGHTS)
    with pytest.raises(ValueError, match="come from different saves"):
        load_adapter(make_qwen2(), tmp_path / "r4")


def test_missing_files_are_reported(make_qwen2, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no adapter config at .*{ADAPTER_CONFIG}"):
        load_adapter(make_qwen2(), tmp_path)
    save_adapter(trained_like(make_qwen2()), tmp_path)
    (tmp_path / ADAPTER_WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match="no adapter weights"):
        load_adapter(make_qwen2(), tmp_path)


def test_loading_into_merged_layers_is_refused(make_qwen2, tmp_path):
    save_adapter(trained_like(make_qwen2()), tmp_path)
    model = trained_like(make_qwen2())
    model.model.layers[0].self_attn.q_proj.merge()
    with pytest.raises(RuntimeError, match="unmerge"):
        load_adapter(model, tmp_path)
