"""The adapter's file helpers: peft's key names both ways, atomic writes, and clear refusals of
files that are missing, unreadable or of another shape."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from lora.adapter_files import (
    base_model_info,
    check_base_model,
    check_tensors,
    parameter_name,
    peft_key,
    read_json,
    read_tensors,
    staged,
)

NAME = "model.layers.0.self_attn.q_proj.lora_A"


def test_peft_keys_and_parameter_names_are_inverses():
    assert peft_key(NAME) == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    assert parameter_name(peft_key(NAME)) == NAME
    assert parameter_name(peft_key(NAME.replace("lora_A", "lora_B"))) == NAME.replace("lora_A", "lora_B")
    assert parameter_name("model.layers.0.self_attn.q_proj.weight") is None  # not peft's
    with pytest.raises(ValueError, match="is not a LoRA A/B parameter name"):
        peft_key("model.layers.0.self_attn.q_proj.weight")


def test_a_staged_file_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "adapter_config.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), staged(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]
    with staged(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_json_and_tensor_files_are_read_or_refused_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no adapter metadata at"):
        read_json(tmp_path / "missing.json", "adapter metadata")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="invalid adapter metadata .*list.json: not a JSON object"):
        read_json(tmp_path / "list.json", "adapter metadata")
    (tmp_path / "w.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_tensors(tmp_path / "w.safetensors")
    save_file({NAME: torch.zeros(2, 8)}, tmp_path / "ok.safetensors", metadata={"llmtime_save_id": "abc"})
    tensors, metadata = read_tensors(tmp_path / "ok.safetensors")
    assert list(tensors) == [NAME] and metadata == {"llmtime_save_id": "abc"}
    check_tensors(tensors, {NAME: (2, 8)}, tmp_path)
    with pytest.raises(ValueError, match=r"has shape \(2, 8\), the model expects \(4, 8\)"):
        check_tensors(tensors, {NAME: (4, 8)}, tmp_path)
    with pytest.raises(ValueError, match=r"missing tensors \['other'\], unexpected tensors \["):
        check_tensors(tensors, {"other": (2, 8)}, tmp_path)


def test_the_base_model_must_have_the_saved_architecture(make_qwen2, tmp_path):
    model = make_qwen2()
    info = base_model_info(model)
    assert info["class"] == "Qwen2ForCausalLM" and info["hidden_size"] == model.config.hidden_size
    check_base_model(model, info, tmp_path)
    with pytest.raises(ValueError, match="saved from a model with hidden_size=7"):
        check_base_model(model, {**info, "hidden_size": 7}, tmp_path)
