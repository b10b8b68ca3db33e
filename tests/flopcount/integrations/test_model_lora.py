"""A guard prices the LoRA the model really carries, or refuses to start."""

from __future__ import annotations

import pytest
from peft import LoraConfig, get_peft_model

import lora
from flopcount import CountSetup
from flopcount.integrations import ForwardGuard
from flopcount.integrations.model_lora import check_model_lora

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_a_peft_model_is_guarded_with_the_setup_of_its_own_lora(tiny_qwen2):
    model = get_peft_model(tiny_qwen2(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    check_model_lora(model, CountSetup.from_lora(model.config, lora.lora_config_from_peft(model)))
    with pytest.raises(ValueError, match="carries LoRA r=4 on q_proj, v_proj but the CountSetup prices no LoRA"):
        check_model_lora(model, CountSetup.of(model.config))


def test_lora_on_the_embedding_stops_the_guard_before_any_forward(tiny_qwen2, tmp_path):
    model = get_peft_model(tiny_qwen2(), LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"]))
    setup = CountSetup.of(model.config, lora_rank=4, lora_targets=("q_proj",))
    with pytest.raises(ValueError, match="embed_tokens"):
        ForwardGuard(10**12, tmp_path / "ledger.sqlite", "x", setup).attach(model)
    assert not (tmp_path / "ledger.sqlite").exists()


def test_a_model_injected_by_lora_is_read_too(tiny_qwen2):
    model = tiny_qwen2()
    lora.inject(model, r=2, targets=("q_proj",))
    check_model_lora(model, CountSetup.of(model.config, lora_rank=2, lora_targets=("q_proj",)))
    with pytest.raises(ValueError, match="r=2 on q_proj but the CountSetup prices LoRA r=4"):
        check_model_lora(model, CountSetup.of(model.config, lora_rank=4, lora_targets=("q_proj",)))
