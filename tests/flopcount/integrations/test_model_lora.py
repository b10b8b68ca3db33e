"""A guard prices the LoRA the model really carries, or refuses to start."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

import lora
from flopcount import CountSetup, Ledger, generation_flops
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


def test_generate_of_a_peft_model_is_charged_every_forward(tiny_qwen2, tmp_path):
    """``PeftModel.generate`` calls its base model's forward, not its own: the guard on the peft
    model charges those forwards too (none ran uncharged)."""
    model = get_peft_model(tiny_qwen2(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).eval()
    setup = CountSetup.from_lora(model.config, lora.lora_config_from_peft(model))
    ran = []
    model.get_base_model().register_forward_pre_hook(lambda module, args: ran.append(1))
    with ForwardGuard(10**12, tmp_path / "ledger.sqlite", "gen", setup).attach(model):
        model.generate(input_ids=torch.ones(2, 6, dtype=torch.long), attention_mask=torch.ones(2, 6, dtype=torch.long),
                       max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
        with torch.no_grad():
            model(input_ids=torch.ones(1, 5, dtype=torch.long))
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        charges = ledger.charges()
    assert len(ran) == 5 and [c.phase for c in charges] == ["generation"] * 4 + ["validation"]
    assert sum(c.flops for c in charges[:4]) == generation_flops(setup, 6, 4, batch=2).total
