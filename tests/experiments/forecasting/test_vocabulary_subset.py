"""Generation over a vocabulary subset: the same logits for the tokens kept, the same forecasts,
the model restored, and refused where it would not be exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lvdata
from experiments.forecasting import generate
from experiments.forecasting.generate import ForecastConfig, forecast_series
from experiments.forecasting.grammar import LLMTimeGrammar, alphabet_token_ids
from experiments.forecasting.vocabulary_subset import VocabularySubset, subset_is_exact, vocabulary_subset
from experiments.models.loading import build_tiny_model
from flopcount import Budget, Ledger

K, M = 4, 3


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=1)


def test_ids_map_to_subset_ids_in_their_order_and_back():
    subset = VocabularySubset.of([151645, 15, 13, 15, 26], vocab_size=151936)
    assert subset.real_ids.tolist() == [13, 15, 26, 151645] and len(subset) == 4
    ids = subset.to_subset(torch.tensor([[26, 13], [151645, 15]]))
    assert ids.tolist() == [[2, 0], [3, 1]]
    assert torch.equal(subset.to_real(ids), torch.tensor([[26, 13], [151645, 15]]))
    with pytest.raises(KeyError, match=r"\[14\]"):
        subset.to_subset([13, 14])
    with pytest.raises(KeyError, match=r"\[151646\]"):
        subset.to_subset([151646])
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        VocabularySubset.of([3, 100], vocab_size=100)


def test_inside_the_block_the_kept_tokens_have_their_full_vocabulary_logits_and_the_model_is_restored(model):
    input_ids = torch.tensor([[13, 15, 17, 26, 11], [16, 16, 13, 18, 26]])  # (2, 5) real ids
    subset = VocabularySubset.of(torch.cat([input_ids.flatten(), torch.tensor([151645, 0])]), 151936)
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        full = model(input_ids).logits  # (2, 5, V)
        with vocabulary_subset(model, subset):
            kept = model(subset.to_subset(input_ids)).logits  # (2, 5, K)
            assert set(model.state_dict()) < set(state)  # adds no buffer to a state dict (lacks the embedding)
    assert kept.shape == (2, 5, len(subset))
    torch.testing.assert_close(kept, full[..., subset.real_ids], rtol=1e-5, atol=1e-5)
    assert model.get_input_embeddings() is embedding and model.get_output_embeddings() is head
    assert head.weight is embedding.weight  # still tied
    assert all(torch.equal(tensor, state[name]) for name, tensor in model.state_dict().items())


def examples(seed: int, n: int) -> list[lvdata.ForecastExample]:
    trajectories = np.random.default_rng(seed).uniform(0.5, 12.0, size=(n, K + M, 2))
    return [lvdata.prompt_target_split(t, 1.0, k=K, m=M) for t in trajectories]


@pytest.mark.parametrize("config", [
    ForecastConfig(k=K, m=M, max_int_digits=2, batch_size=3),
    ForecastConfig(k=K, m=M, max_int_digits=2, batch_size=3, do_sample=True, samples=3, top_p=0.9, seed=4),
], ids=["greedy", "sampled"])
def test_constrained_forecasts_over_a_vocabulary_subset_are_the_full_vocabularys(model, qwen_tokenizer,
                                                                                   config, monkeypatch):
    chosen = examples(5, 5)
    job = generate.ForecastJob.prepare(model, qwen_tokenizer, chosen, config)
    assert job.generator.subset is not None and len(job.generator.subset) < 20
    over_subset = forecast_series(model, qwen_tokenizer, chosen, config, progress=False)
    monkeypatch.setattr(generate, "subset_is_exact", lambda model: False)
    assert generate.ForecastJob.prepare(model, qwen_tokenizer, chosen, config).generator.subset is None
    full = forecast_series(model, qwen_tokenizer, chosen, config, progress=False)
    assert over_subset.texts == full.texts and all(text.count(";") == M for row in full.texts for text in row)
    np.testing.assert_array_equal(over_subset.generated_tokens, full.generated_tokens)


def short_number_model(qwen_tokenizer) -> nn.Module:
    """A tiny model whose untied output layer has a bias for ``0 . , ;``: every number it writes is
    ``0.00``, so its rows stop at their 3rd step separator, 6 tokens before the grammar's bound."""
    model = build_tiny_model(seed=3)
    tied = model.get_output_embeddings()
    head = nn.Linear(tied.in_features, tied.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(tied.weight)
        head.bias.zero_()
        head.bias[[qwen_tokenizer.encode(c, add_special_tokens=False)[0] for c in "0.,;"]] = 30.0
    model.set_output_embeddings(head.requires_grad_(False))
    return model


def test_rows_that_stop_early_are_the_same_length_and_charged_the_same_as_over_every_token(
        qwen_tokenizer, tmp_path, monkeypatch):
    model = short_number_model(qwen_tokenizer)
    config = ForecastConfig(k=K, m=M, max_int_digits=2, batch_size=2, do_sample=True, samples=2, seed=1)
    chosen = examples(3, 6)  # 3 calls of 2 trajectories
    outputs, charges = [], []
    for path in ("subset", "full"):
        if path == "full":
            monkeypatch.setattr(generate, "subset_is_exact", lambda model: False)
        with Budget(10**13, tmp_path / f"{path}.sqlite", "forecast", model) as budget:
            outputs.append(forecast_series(model, qwen_tokenizer, chosen, config, budget=budget, progress=False))
        with Ledger(tmp_path / f"{path}.sqlite") as ledger:
            charges.append([(charge.flops, charge.tokens) for charge in ledger.charges()])
    over_subset, full = outputs
    assert all(text == "0.00,0.00;" * M for row in over_subset.texts for text in row)
    assert [batch.new_tokens for batch in over_subset.batches] == [10 * M] * 3 and 10 * M < config.new_token_bound
    assert over_subset.texts == full.texts
    np.testing.assert_array_equal(over_subset.generated_tokens, full.generated_tokens)
    assert [b.new_tokens for b in over_subset.batches] == [b.new_tokens for b in full.batches]
    assert charges[0] == charges[1] and len(charges[0]) == 3


def test_the_grammar_over_a_vocabulary_subset_allows_the_same_tokens_state_by_state(qwen_tokenizer):
    grammar = LLMTimeGrammar(n_steps=2, max_int_digits=2)
    alphabet = alphabet_token_ids(qwen_tokenizer, grammar)
    subset = VocabularySubset.of([*alphabet, 151645, 151643, 872], 151936)  # 872: a prose token
    full = generate.LLMTimeLogitsProcessor(grammar, qwen_tokenizer, eos_token_id=151645)
    over_subset = generate.LLMTimeLogitsProcessor(grammar, qwen_tokenizer, eos_token_id=151645, subset=subset)
    written = torch.tensor([[alphabet[0]]])  # (1, 1) a prompt token, then the text below
    for char in "12.34,0.50;3.00,":
        allowed_full = full(written, torch.zeros(1, 151936)).isfinite()[0].nonzero().squeeze(1)
        allowed_subset = over_subset(subset.to_subset(written), torch.zeros(1, len(subset))).isfinite()[0]
        assert torch.equal(subset.to_real(allowed_subset.nonzero().squeeze(1)), allowed_full), char
        written = torch.cat([written, torch.tensor([[alphabet[grammar.characters.index(char)]]])], dim=1)


def test_the_model_is_restored_after_an_error_and_a_nested_block_is_refused(model):
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    subset = VocabularySubset.of([13, 15, 151645], 151936)
    with pytest.raises(RuntimeError, match="inside"), vocabulary_subset(model, subset):
        raise RuntimeError("a failure inside the block")
    assert model.get_input_embeddings() is embedding and model.get_output_embeddings() is head
    with vocabulary_subset(model, subset):
        with pytest.raises(ValueError, match="already generating over a vocabulary subset"):
            with vocabulary_subset(model, subset):
                pass
    assert model.get_input_embeddings() is embedding and model.get_output_embeddings() is head
    assert head.weight is embedding.weight


def test_an_unconstrained_forecast_keeps_the_whole_vocabulary(model, qwen_tokenizer):
    config = ForecastConfig(k=K, m=M, constrained=False)
    assert generate.ForecastJob.prepare(model, qwen_tokenizer, examples(6, 2), config).generator.subset is None


class ScaledHead(nn.Module):
    """An output layer that is not a plain ``nn.Linear``: its logits are not one row's product each."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.linear(hidden)
        return logits - logits.mean(dim=-1, keepdim=True)


def test_a_model_whose_output_layer_is_not_a_plain_linear_is_refused_and_forecast_over_every_token(qwen_tokenizer):
    model = build_tiny_model(seed=2)
    model.set_output_embeddings(ScaledHead(model.get_output_embeddings()))
    assert not subset_is_exact(model)
    with pytest.raises(ValueError, match="nn.Linear output layer"):
        with vocabulary_subset(model, VocabularySubset.of([1], 9)):
            pass
    config = ForecastConfig(k=K, m=M, max_int_digits=2)
    assert generate.ForecastJob.prepare(model, qwen_tokenizer, examples(7, 2), config).generator.subset is None
    output = forecast_series(model, qwen_tokenizer, examples(7, 2), config, progress=False)
    assert all(text.count(";") == M for row in output.texts for text in row)
