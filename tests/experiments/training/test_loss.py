"""The training loss: token-weighted cross-entropy where padding never counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments.training.loss import IGNORE_INDEX, count_targets, token_cross_entropy
from lora import inject, trainable_parameters

PAD_ID = 151643


def test_token_cross_entropy_sums_next_token_losses_over_labelled_targets_only():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=generator)
    labels = torch.tensor([[1, 2, 3, IGNORE_INDEX, IGNORE_INDEX], [4, 5, 6, 0, 1]])
    expected, count = 0.0, 0
    for b in range(2):
        for t in range(4):  # position t predicts token t + 1
            target = int(labels[b, t + 1])
            if target != IGNORE_INDEX:
                expected -= float(torch.log_softmax(logits[b, t].double(), dim=-1)[target])
                count += 1
    nats, tokens = token_cross_entropy(logits, labels)
    assert int(tokens) == count == 2 + 4 == count_targets(labels.numpy())
    assert float(nats) == pytest.approx(expected, rel=1e-6)


def test_token_cross_entropy_upcasts_half_precision_logits():
    logits = torch.randn(1, 4, 9).to(torch.bfloat16)
    labels = torch.tensor([[0, 1, 2, 3]])
    nats, _ = token_cross_entropy(logits, labels)
    assert nats.dtype == torch.float32
    assert float(nats) == pytest.approx(float(token_cross_entropy(logits.float(), labels)[0]), rel=1e-6)


def _loss_and_gradients(model, input_ids, attention_mask, labels):
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    nats, tokens = token_cross_entropy(logits, labels)
    loss = nats / tokens
    loss.backward()
    return float(loss.detach()), {name: p.grad.clone() for name, p in trainable_parameters(model).items()}


@pytest.fixture
def lora_model(tiny_model):
    inject(tiny_model, r=4)
    with torch.no_grad():  # non-zero B, so that gradients reach every LoRA tensor
        for name, parameter in trainable_parameters(tiny_model).items():
            if name.endswith("lora_B"):
                parameter.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    return tiny_model


def test_padding_changes_neither_the_loss_nor_its_gradients(lora_model):
    real = torch.randint(0, 1000, (1, 10), generator=torch.Generator().manual_seed(2))
    n_pad = 6
    mask = torch.tensor([[1] * 10 + [0] * n_pad])

    def window(pad_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = torch.cat([real, pad_ids], dim=1)
        return input_ids, torch.where(mask == 1, input_ids, IGNORE_INDEX)

    unpadded = _loss_and_gradients(lora_model, real, torch.ones_like(real), real)
    pad_window, pad_labels = window(torch.full((1, n_pad), PAD_ID))
    padded = _loss_and_gradients(lora_model, pad_window, mask, pad_labels)
    junk_window, junk_labels = window(torch.randint(0, 150000, (1, n_pad), generator=torch.Generator().manual_seed(3)))
    other_pads = _loss_and_gradients(lora_model, junk_window, mask, junk_labels)

    for candidate in (padded, other_pads):
        assert candidate[0] == pytest.approx(unpadded[0], rel=1e-6)
        for name, gradient in unpadded[1].items():
            assert gradient.abs().sum() > 0, name
            torch.testing.assert_close(candidate[1][name], gradient, rtol=1e-5, atol=1e-7)

    # The check bites: a loss that labelled the padding would differ.
    labelled_pads = _loss_and_gradients(lora_model, pad_window, mask, pad_window)
    assert not math.isclose(labelled_pads[0], unpadded[0], rel_tol=1e-3)


def test_count_targets_skips_the_first_position_and_padding():
    labels = np.array([[5, 6, 7, IGNORE_INDEX], [8, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    assert count_targets(labels) == 2
