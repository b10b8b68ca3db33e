"""``read_forward``: a forward's work read from its real inputs, priced by the one count."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from flopcount import CountSetup, forward_flops, generation_flops, training_step_flops
from flopcount.integrations import ForwardWork, UnpricedForward, read_forward


def test_a_forward_with_gradients_is_a_training_forward_priced_with_its_backward(tiny_qwen2):
    setup = CountSetup.of(tiny_qwen2().config)
    work = read_forward((), {"input_ids": torch.zeros(3, 64, dtype=torch.long)}, grad=True)
    assert work == ForwardWork("train", 3, 64) and work.tokens == 192
    assert work.flops(setup) == training_step_flops(setup, 3, 64)


def test_a_forward_without_gradients_is_a_validation_forward_of_its_real_shape(tiny_qwen2):
    setup = CountSetup.of(tiny_qwen2().config)
    work = read_forward((torch.zeros(8, 16, dtype=torch.long),), {}, grad=False)
    assert work == ForwardWork("validation", 8, 16)
    assert work.flops(setup) == forward_flops(setup, 16, 8).total


def test_inputs_embeds_give_the_shape_when_there_are_no_input_ids():
    work = read_forward((), {"input_ids": None, "inputs_embeds": torch.zeros(2, 5, 64)}, grad=False)
    assert (work.batch, work.seq_len) == (2, 5)


def test_a_cached_decoding_step_is_generation_with_its_past_and_last_logits(tiny_qwen2):
    model = tiny_qwen2()
    setup = CountSetup.of(model.config)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(torch.zeros(1, 7, dtype=torch.long), cache=cache, use_cache=True)
    work = read_forward((), {"input_ids": torch.zeros(1, 1, dtype=torch.long), "cache": cache,
                             "logits_to_keep": 1}, grad=False)
    assert work == ForwardWork("generation", 1, 1, past_len=7, logits="last")
    assert work.flops(setup) == forward_flops(setup, 1, 1, past_len=7, logits="last").total
    prefill = read_forward((), {"input_ids": torch.zeros(1, 7, dtype=torch.long), "logits_to_keep": 1}, grad=False)
    decode = generation_flops(setup, 7, 2).decode.total
    assert prefill.flops(setup) + work.flops(setup) == generation_flops(setup, 7, 2).prefill.total + decode


@pytest.mark.parametrize("kwargs", [{}, {"input_ids": torch.zeros(4, dtype=torch.long)},
                                    {"input_ids": torch.zeros(0, 3, dtype=torch.long)}])
def test_a_forward_whose_size_cannot_be_read_is_refused(kwargs):
    with pytest.raises(UnpricedForward, match="cannot price"):
        read_forward((), kwargs, grad=False)


def test_a_training_forward_on_a_cache_is_refused():
    with pytest.raises(UnpricedForward, match="not a training step"):
        read_forward((), {"input_ids": torch.zeros(1, 1, dtype=torch.long), "logits_to_keep": 1}, grad=True)
