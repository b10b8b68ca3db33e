"""Parity with peft: same base weights and same A/B give the same logits and the same gradients."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lora import inject, lora_state_dict, trainable_parameters


def peft_name(ours: str) -> str:
    """``model.layers.0.self_attn.q_proj.lora_A`` -> peft's ``base_model.model.<...>.lora_A.default.weight``."""
    return f"base_model.model.{ours}.default.weight"


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # raised inside peft
@pytest.mark.parametrize(("r", "alpha"), [(4, 4), (4, 8), (2, 1)])
def test_same_logits_and_gradients_as_peft(make_qwen2, token_batch, r, alpha):
    ours, theirs = make_qwen2(seed=3), make_qwen2(seed=3)
    report = inject(ours, r=r, alpha=alpha)
    theirs = get_peft_model(
        theirs, LoraConfig(r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    )
    their_params = dict(theirs.named_parameters())
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, tensor in lora_state_dict(ours).items():
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)  # non-zero B too
            their_params[peft_name(name)].copy_(tensor)

    assert {peft_name(n) for n in trainable_parameters(ours)} == {n for n, p in their_params.items() if p.requires_grad}
    assert report.trainable_count == theirs.get_nb_trainable_parameters()[0]

    our_out = ours(token_batch, labels=token_batch)
    their_out = theirs(input_ids=token_batch, labels=token_batch)
    torch.testing.assert_close(our_out.logits, their_out.logits, rtol=1e-6, atol=1e-6)

    our_out.loss.backward()
    their_out.loss.backward()
    for name, parameter in trainable_parameters(ours).items():
        assert parameter.grad.abs().sum() > 0, name
        torch.testing.assert_close(parameter.grad, their_params[peft_name(name)].grad, rtol=1e-5, atol=1e-7)


def test_nonzero_adapters_change_the_logits(make_qwen2, token_batch):
    """Guards the parity test against comparing two unchanged base models."""
    base_logits = make_qwen2(seed=3)(token_batch).logits
    model = make_qwen2(seed=3)
    inject(model, r=4)
    with torch.no_grad():
        for tensor in lora_state_dict(model).values():
            tensor.normal_(0, 0.2)
    assert (model(token_batch).logits - base_logits).abs().max() > 1e-3
