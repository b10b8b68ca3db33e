"""Forecast generation is charged before it runs, exactly: the ledger holds the analytic
generation count of the shapes that actually ran, and a budget too small stops it first."""

from __future__ import annotations

import numpy as np
import pytest

import flopcount
import lvdata
from experiments.forecasting.generate import ForecastConfig, forecast_series
from experiments.models.loading import build_tiny_model
from flopcount import Budget, BudgetExceeded, Ledger

K, M = 4, 3


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=0)


@pytest.fixture
def counted_generate(model, monkeypatch):
    """Count the model's real ``generate`` calls."""
    calls = []
    real_generate = model.generate

    def generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    return calls


def examples(n: int, seed: int = 0) -> list[lvdata.ForecastExample]:
    trajectories = np.random.default_rng(seed).uniform(0.5, 20.0, size=(n, K + M, 2))
    return [lvdata.prompt_target_split(t, 1.3, k=K, m=M) for t in trajectories]


def test_the_ledger_holds_the_generation_count_of_the_shapes_that_ran(model, qwen_tokenizer, tmp_path):
    batch = examples(3)
    config = ForecastConfig(k=K, m=M, do_sample=True, samples=2, batch_size=3, seed=2)
    forwards = []  # (sequences, positions) of every forward pass generate makes
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: forwards.append(
        tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        with Budget(10**15, tmp_path / "ledger.sqlite", "forecast", model) as budget:
            output = forecast_series(model, qwen_tokenizer, batch, config, budget=budget, step=40, progress=False)
    finally:
        hook.remove()
    # The shapes, found independently: the padded prompt is the longest prompt; the batch runs until its
    # longest sample has its m steps (one token per character: the longest text).
    prompt_len = max(len(qwen_tokenizer.encode(example.prompt_text)) for example in batch)
    new_tokens = max(len(text) for texts in output.texts for text in texts)
    expected = flopcount.generation_flops(model.config, prompt_len, new_tokens, samples=2, batch=3).total
    assert forwards == [(6, prompt_len)] + [(6, 1)] * (new_tokens - 1)  # one prefill, then KV-cached decoding
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        (charge,) = ledger.charges()
        assert (charge.phase, charge.step, charge.flops) == ("generation", 40, expected)
        assert not charge.is_open_reservation and ledger.spent == expected == output.flops


def test_every_batch_is_charged_at_the_actual_shapes(model, qwen_tokenizer, tmp_path, counted_generate):
    config = ForecastConfig(k=K, m=M, batch_size=2, constrained=False)
    with Budget(10**15, tmp_path / "ledger.sqlite", "forecast", model) as budget:
        output = forecast_series(model, qwen_tokenizer, examples(3, seed=1), config, budget=budget, progress=False)
    assert len(counted_generate) == len(output.batches) == 2
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        charged = [charge.flops for charge in ledger.charges()]
    ran = [flopcount.generation_flops(model.config, shape[1], batch.new_tokens, 1, shape[0]).total
           for shape, batch in zip(counted_generate, output.batches)]
    assert charged == ran and sum(ran) == output.flops


def test_a_budget_too_small_for_the_reservation_refuses_before_generate_runs(
        model, qwen_tokenizer, tmp_path, counted_generate):
    config = ForecastConfig(k=K, m=M, batch_size=2)
    with pytest.raises(BudgetExceeded), Budget(10**6, tmp_path / "ledger.sqlite", "forecast", model) as budget:
        forecast_series(model, qwen_tokenizer, examples(2), config, budget=budget, progress=False)
    assert counted_generate == []
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.spent == 0 and ledger.charges() == []


def test_a_forecast_without_a_kv_cache_cannot_be_charged(model, qwen_tokenizer, tmp_path, counted_generate):
    with pytest.raises(ValueError, match="KV cache"), Budget(10**15, tmp_path / "l.sqlite", "f", model) as budget:
        forecast_series(model, qwen_tokenizer, examples(1), ForecastConfig(k=K, m=M, use_cache=False),
                        budget=budget, progress=False)
    assert counted_generate == []
