"""The distinct-rows loss of a frozen output layer: exact (value and LoRA gradients), detected
rather than assumed, never used where it would be wrong, and invisible to the FLOP charges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.data import DataConfig, prepare_data
from experiments.training import distinct_rows
from experiments.training.distinct_rows import (
    DistinctRowsHead,
    causal_lm_nats,
    distinct_rows_output,
    find_distinct_rows,
    installed_head,
)
from experiments.models.loading import build_tiny_model, load_model
from experiments.training.config import BudgetConfig, TrainConfig
from experiments.training.loop import train
from flopcount import Ledger
from lora import LoRAConfig, inject, trainable_parameters


def frozen(model):
    return model.requires_grad_(False)


def with_random_lora(model, seed: int = 1):
    """LoRA on q/v with seeded non-zero A and B, so the adapter changes the logits."""
    inject(model, LoRAConfig(r=4))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in trainable_parameters(model).values():
            parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def batch(qwen_tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, labels)`` with −100 labels on padding."""
    encoded = [qwen_tokenizer.encode(text, add_special_tokens=False) for text in texts]
    length = max(map(len, encoded))
    ids = torch.full((len(texts), length), qwen_tokenizer.pad_token_id)
    mask = torch.zeros((len(texts), length), dtype=torch.int64)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)], mask[row, : len(tokens)] = torch.tensor(tokens), 1
    return ids, mask, torch.where(mask == 1, ids, -100)


TEXTS = ["1.25,0.50;1.30,0.48;1.37,0.47;1.45,0.46;1.52,0.47", "0.98,2.10;0.91,2.03;0.85,1.96",
         "prey 1.25, predator 0.50; then 1.30"]  # the last has targets outside the alphabet


def loss_and_grads(model, inputs, reference: bool = False) -> tuple[float, dict[str, torch.Tensor]]:
    """Mean nats and the LoRA gradients: ``causal_lm_nats``, or (``reference``) the full logits'
    cross-entropy computed here in float64."""
    model.zero_grad(set_to_none=True)
    if reference:
        input_ids, attention_mask, labels = inputs
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.double()  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 labels[:, 1:].reshape(-1), ignore_index=-100)
    else:
        nats, tokens = causal_lm_nats(model, *inputs)
        loss = nats / tokens
    loss.backward()
    return float(loss.detach()), {name: p.grad.clone() for name, p in trainable_parameters(model).items()}


def test_rows_are_grouped_exactly(compact_and_full, vocabulary):
    _, full = compact_and_full
    weight = full.lm_head.weight.detach()
    found = find_distinct_rows(weight, max_distinct=100)
    assert found.n_distinct == 14 and sorted(found.counts.tolist()) == [1] * 13 + [151_923]
    assert torch.equal(found.rows[found.row_of_token], weight)
    alphabet = found.row_of_token[list(vocabulary.alphabet_ids)]
    assert len(set(alphabet.tolist())) == 13  # every character its own row

    near = weight.clone()
    near[100, -1] = torch.nextafter(near[100, -1], torch.tensor(1.0))  # one ulp off in the last element
    near[5000] = near[7]  # a copy of an alphabet-free row far away: still the shared row
    regrouped = find_distinct_rows(near)
    assert regrouped.n_distinct == 15
    assert regrouped.row_of_token[100] != regrouped.row_of_token[101]
    assert torch.equal(regrouped.rows[regrouped.row_of_token], near)


def test_distinct_rows_are_not_searched_for_a_layer_of_distinct_rows():
    weight = build_tiny_model().lm_head.weight.detach()
    assert find_distinct_rows(weight, max_distinct=weight.shape[0] // 4) is None
    assert find_distinct_rows(weight[:300]).n_distinct == 300


def test_the_head_is_installed_only_inside_the_block_and_only_once(compact_and_full):
    _, full = compact_and_full
    model = frozen(full)
    original = model.lm_head
    with distinct_rows_output(model) as head:
        assert isinstance(head, DistinctRowsHead) and model.lm_head is head and installed_head(model) is head
        with distinct_rows_output(model) as inner:
            assert inner is head
        assert model.lm_head is head
        assert not any("lm_head" in name for name, _ in model.named_parameters())  # nothing new to train
        assert set(model.state_dict()) == set(full.state_dict())  # its buffers are not saved
    assert model.lm_head is original and installed_head(model) is None


@pytest.mark.parametrize("case", ["distinct rows", "trainable lm_head", "lm_head bias", "unfrozen embedding"])
def test_the_fast_path_is_refused_where_it_would_be_wrong(compact_and_full, case):
    _, full = compact_and_full
    model = frozen(build_tiny_model()) if case == "distinct rows" else frozen(full)
    if case == "trainable lm_head":
        model.lm_head.weight.requires_grad_(True)
    elif case == "lm_head bias":
        inject(model, LoRAConfig(r=2, lm_head_bias=True))
    elif case == "unfrozen embedding":  # tied: the embedding is the output layer
        model.get_input_embeddings().weight.requires_grad_(True)
    with distinct_rows_output(model) as head:
        assert head is None and installed_head(model) is None


@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_loss_and_lora_gradients_equal_the_full_vocabulary_ones(qwen_tokenizer, compact_and_full, dtype, rel):
    _, full = compact_and_full
    model = with_random_lora(frozen(full.to(dtype)))
    inputs = batch(qwen_tokenizer, TEXTS)
    reference_loss, reference_grads = loss_and_grads(model, inputs, reference=True)  # 151,936 logits, float64 loss
    full_loss, _ = loss_and_grads(model, inputs)  # the full-logit path of the training loop
    with distinct_rows_output(model) as head:
        assert head is not None
        fast_loss, fast_grads = loss_and_grads(model, inputs)
    assert fast_loss == pytest.approx(reference_loss, rel=rel)
    assert full_loss == pytest.approx(reference_loss, rel=1e-4)
    assert reference_grads.keys() == fast_grads.keys() and len(reference_grads) == 8
    for name, gradient in reference_grads.items():
        scale = gradient.abs().max()
        assert scale > 0, name
        assert (fast_grads[name] - gradient).abs().max() <= 10 * rel * scale, name


def test_a_training_run_is_charged_the_same_with_and_without_the_fast_path(
        compact_and_full, qwen_tokenizer, real_data_path, tmp_path, monkeypatch):
    _, full = compact_and_full
    full.save_pretrained(tmp_path / "base")
    data = prepare_data(DataConfig(path=real_data_path, forecast_steps=10), qwen_tokenizer)
    config = TrainConfig("charges", steps=4, batch_size=2, context=48, learning_rate=1e-3, eval_every=2,
                         eval_windows=3, checkpoint_every=4)
    used = []
    head_loss = DistinctRowsHead.token_cross_entropy
    monkeypatch.setattr(DistinctRowsHead, "token_cross_entropy",
                        lambda self, *args: used.append(1) or head_loss(self, *args))

    def run(name: str):
        result = train(load_model(tmp_path / "base"), data, config, tmp_path / name,
                       BudgetConfig(10**15, tmp_path / f"{name}.sqlite"), progress=False)
        with Ledger(tmp_path / f"{name}.sqlite") as ledger:
            charged = [(c.phase, c.step, c.flops, c.tokens) for c in ledger.charges()]
        return result, charged

    fast, fast_charges = run("fast")
    calls_fast = len(used)
    monkeypatch.setattr(distinct_rows, "MIN_COMPACTION", 10**9)  # the full-logit path, same model
    slow, slow_charges = run("full")
    assert calls_fast == 4 + 2 * 2 and len(used) == calls_fast  # 4 steps, 2 validations of 2 batches
    assert fast_charges == slow_charges and len(fast_charges) == 6
    assert fast.flops_charged == slow.flops_charged
    assert fast.last_val_loss == pytest.approx(slow.last_val_loss, rel=1e-4)
    assert np.isfinite(fast.final_train_loss)


def test_full_logits_for_generation_are_the_output_layers(qwen_tokenizer, compact_and_full):
    _, full = compact_and_full
    model = frozen(full)
    input_ids, attention_mask, _ = batch(qwen_tokenizer, TEXTS)
    with torch.no_grad():
        reference = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (3, T, 151936)
        with distinct_rows_output(model, full_logits=True) as head:
            assert head.full_logits
            fast = model(input_ids=input_ids, attention_mask=attention_mask).logits
            with pytest.raises(RuntimeError, match="other kind"), distinct_rows_output(model):
                pass
    assert fast.shape == reference.shape
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)


def test_forecasts_are_the_same_with_and_without_the_fast_path(qwen_tokenizer, compact_and_full, monkeypatch):
    from experiments.forecasting.generate import ForecastConfig, forecast_series
    from lvdata import prompt_target_split, simulate

    _, full = compact_and_full
    model = with_random_lora(frozen(full))
    trajectories, _ = simulate(3, seed=4)
    examples = [prompt_target_split(t, 0.25, k=10, m=3) for t in trajectories]
    config = ForecastConfig(k=10, m=3, batch_size=3, max_int_digits=2)
    fast = forecast_series(model, qwen_tokenizer, examples, config, progress=False)
    monkeypatch.setattr(distinct_rows, "MIN_COMPACTION", 10**9)
    slow = forecast_series(model, qwen_tokenizer, examples, config, progress=False)
    assert fast.texts == slow.texts
    np.testing.assert_array_equal(fast.values, slow.values)
