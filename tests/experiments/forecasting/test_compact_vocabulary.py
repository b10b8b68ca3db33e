"""Generation over a compact vocabulary: the same logits for the tokens kept, the same forecasts,
the model restored, and refused where it would not be exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lvdata
from experiments.forecasting import generate
from experiments.forecasting.compact_vocabulary import CompactVocabulary, compact_vocabulary, compactable
from experiments.forecasting.generate import ForecastConfig, forecast_series
from experiments.models.loading import build_tiny_model

K, M = 4, 3


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=1)


def test_ids_map_to_compact_ids_in_their_order_and_back():
    vocabulary = CompactVocabulary.of([151645, 15, 13, 15, 26], vocab_size=151936)
    assert vocabulary.real_ids.tolist() == [13, 15, 26, 151645] and len(vocabulary) == 4
    compact = vocabulary.compact(torch.tensor([[26, 13], [151645, 15]]))
    assert compact.tolist() == [[2, 0], [3, 1]]
    assert torch.equal(vocabulary.real(compact), torch.tensor([[26, 13], [151645, 15]]))
    with pytest.raises(KeyError, match=r"\[14\]"):
        vocabulary.compact([13, 14])
    with pytest.raises(KeyError, match=r"\[151646\]"):
        vocabulary.compact([151646])
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        CompactVocabulary.of([3, 100], vocab_size=100)


def test_inside_the_block_the_kept_tokens_have_their_full_vocabulary_logits_and_the_model_is_restored(model):
    input_ids = torch.tensor([[13, 15, 17, 26, 11], [16, 16, 13, 18, 26]])  # (2, 5) real ids
    vocabulary = CompactVocabulary.of(torch.cat([input_ids.flatten(), torch.tensor([151645, 0])]), 151936)
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        full = model(input_ids).logits  # (2, 5, V)
        with compact_vocabulary(model, vocabulary):
            compact = model(vocabulary.compact(input_ids)).logits  # (2, 5, K)
            assert set(model.state_dict()) < set(state)  # no buffer of its own in what a checkpoint saves
    assert compact.shape == (2, 5, len(vocabulary))
    torch.testing.assert_close(compact, full[..., vocabulary.real_ids], rtol=1e-5, atol=1e-5)
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
def test_constrained_forecasts_over_the_compact_vocabulary_are_the_full_vocabularys(model, qwen_tokenizer,
                                                                                   config, monkeypatch):
    chosen = examples(5, 5)
    job = generate.ForecastJob.prepare(model, qwen_tokenizer, chosen, config)
    assert job.generator.vocabulary is not None and len(job.generator.vocabulary) < 20
    compact = forecast_series(model, qwen_tokenizer, chosen, config, progress=False)
    monkeypatch.setattr(generate, "compactable", lambda model: False)
    assert generate.ForecastJob.prepare(model, qwen_tokenizer, chosen, config).generator.vocabulary is None
    full = forecast_series(model, qwen_tokenizer, chosen, config, progress=False)
    assert compact.texts == full.texts and all(text.count(";") == M for row in compact.texts for text in row)
    np.testing.assert_array_equal(compact.generated_tokens, full.generated_tokens)


def test_an_unconstrained_forecast_keeps_the_whole_vocabulary(model, qwen_tokenizer):
    config = ForecastConfig(k=K, m=M, constrained=False)
    assert generate.ForecastJob.prepare(model, qwen_tokenizer, examples(6, 2), config).generator.vocabulary is None


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
    assert not compactable(model)
    with pytest.raises(ValueError, match="nn.Linear output layer"), compact_vocabulary(model, CompactVocabulary.of([1], 9)):
        pass
    config = ForecastConfig(k=K, m=M, max_int_digits=2)
    assert generate.ForecastJob.prepare(model, qwen_tokenizer, examples(7, 2), config).generator.vocabulary is None
    output = forecast_series(model, qwen_tokenizer, examples(7, 2), config, progress=False)
    assert all(text.count(";") == M for row in output.texts for text in row)
