"""Forecasting with a real (random-weight, tiny) Qwen2: lengths, units, honesty, batching, seeds, bands."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import lvdata
from experiments.forecasting.generate import ForecastConfig, forecast_series
from experiments.forecasting.metrics import evaluate_forecasts
from experiments.models.loading import build_tiny_model

K, M = 4, 3
STEP = lvdata.DEFAULT_FORMAT.step_regex(2)


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=0)


def examples_from(trajectories: np.ndarray, alphas) -> list[lvdata.ForecastExample]:
    return [lvdata.prompt_target_split(t, a, k=K, m=M) for t, a in zip(trajectories, alphas)]


def scaled_values(text: str) -> np.ndarray:
    """The numbers of ``text``'s complete steps, parsed here independently of lvdata: ``(steps, 2)``."""
    return np.array([[float(x) for x in step.split(",")] for step in text.split(";") if step], dtype=float)


def test_a_forecast_is_m_steps_in_original_units(model, qwen_tokenizer):
    base = np.random.default_rng(0).uniform(0.5, 9.0, size=(K + M, 2))
    examples = examples_from(np.stack([base, 4.0 * base]), [1.0, 4.0])  # the same text, α = 1 and α = 4
    assert examples[0].prompt_text == examples[1].prompt_text
    output = forecast_series(model, qwen_tokenizer, examples, ForecastConfig(k=K, m=M, max_int_digits=2),
                             progress=False)
    assert output.values.shape == (2, M, 2) and output.samples.shape == (2, 1, M, 2)
    assert output.lower is None and output.upper is None
    assert output.texts[0] == output.texts[1] and output.texts[0][0].count(";") == M
    np.testing.assert_allclose(output.values[0], scaled_values(output.texts[0][0]))
    np.testing.assert_allclose(output.values[1], 4.0 * scaled_values(output.texts[1][0]))
    assert output.generated_tokens.tolist() == [[len(output.texts[0][0])]] * 2  # one token per character


def test_unconstrained_output_is_reported_as_it_is(model, qwen_tokenizer):
    trajectories = np.random.default_rng(1).uniform(0.5, 9.0, size=(3, K + M, 2))
    config = ForecastConfig(k=K, m=M, constrained=False, do_sample=True, samples=2, seed=3)
    output = forecast_series(model, qwen_tokenizer, examples_from(trajectories, [1.0] * 3), config, progress=False)
    well_formed = re.compile(rf"(?:{STEP};){{{M}}}|(?:{STEP};){{{M - 1}}}{STEP}")  # m steps, EOS after the last
    verdicts = []
    for texts, records, samples in zip(output.texts, output.diagnostics, output.samples):
        for text, record, values in zip(texts, records, samples):
            verdicts.append(bool(well_formed.fullmatch(text)))
            assert record.ok == verdicts[-1], text
            assert np.isnan(values).any() == (not record.ok)
    assert output.malformed_sample_fraction == 1 - np.mean(verdicts) > 0  # a random model breaks the format
    metrics = evaluate_forecasts("llm", output.forecast_set(np.ones((3, M, 2)), np.arange(3)), n_bootstrap=0)
    assert metrics.malformed_fraction == np.isnan(output.values).any(axis=(1, 2)).mean()


def test_a_left_padded_batch_gives_each_prompt_its_own_greedy_output(model, qwen_tokenizer):
    trajectories = np.random.default_rng(2).uniform(0.5, 9.0, size=(3, K + M, 2))
    trajectories[1, :K] += 10.0  # two integer digits: a longer prompt
    trajectories[2, :K, 0] += 10.0
    examples = examples_from(trajectories, [1.0] * 3)
    lengths = {len(qwen_tokenizer.encode(example.prompt_text)) for example in examples}
    assert len(lengths) == 3, "the prompts must differ in length to test the padding"
    for constrained in (True, False):
        config = ForecastConfig(k=K, m=2, constrained=constrained, max_int_digits=2, batch_size=3)
        batched = forecast_series(model, qwen_tokenizer, examples, config, progress=False)
        alone = [forecast_series(model, qwen_tokenizer, [example], config, progress=False) for example in examples]
        assert batched.texts == [output.texts[0] for output in alone]


def test_sampling_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone(model, qwen_tokenizer):
    examples = examples_from(np.random.default_rng(3).uniform(0.5, 9.0, size=(2, K + M, 2)), [1.0, 1.0])

    def sample(seed: int) -> list[list[str]]:
        config = ForecastConfig(k=K, m=M, do_sample=True, samples=2, seed=seed, max_int_digits=2)
        return forecast_series(model, qwen_tokenizer, examples, config, progress=False).texts

    rng_before = torch.random.get_rng_state()
    first = sample(seed=11)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert sample(seed=11) == first and sample(seed=12) != first
    assert len({text for texts in first for text in texts}) > 1  # the samples differ from each other


def test_the_point_forecast_is_the_median_of_the_samples_inside_the_band(model, qwen_tokenizer):
    examples = examples_from(np.random.default_rng(4).uniform(0.5, 9.0, size=(2, K + M, 2)), [2.0, 0.5])
    config = ForecastConfig(k=K, m=M, do_sample=True, samples=5, band=(0.1, 0.9), seed=5, max_int_digits=2)
    output = forecast_series(model, qwen_tokenizer, examples, config, progress=False)
    assert output.samples.shape == (2, 5, M, 2)
    assert output.values.shape == output.lower.shape == output.upper.shape == (2, M, 2)
    np.testing.assert_allclose(output.values, np.median(output.samples, axis=1))
    np.testing.assert_allclose(output.lower, np.quantile(output.samples, 0.1, axis=1))
    assert (output.lower <= output.values).all() and (output.values <= output.upper).all()
    assert (output.lower < output.upper).any()
    assert not output.repaired.any()  # constrained: no sample needed dropping


def test_top_p_only_ever_sees_grammatical_tokens(model, qwen_tokenizer):
    # Were the grammar applied after top-p, a random model's nucleus (prose tokens) would be masked
    # away entirely and sampling would fail; applied first, the nucleus is drawn from the grammar.
    examples = examples_from(np.random.default_rng(6).uniform(0.5, 9.0, size=(2, K + M, 2)), [1.0, 1.0])
    config = ForecastConfig(k=K, m=2, do_sample=True, samples=2, top_p=0.05, temperature=0.7, max_int_digits=2)
    output = forecast_series(model, qwen_tokenizer, examples, config, progress=False)
    assert output.malformed_sample_fraction == 0 and np.isfinite(output.samples).all()


def test_a_checkpoints_own_generation_defaults_do_not_change_the_forecasts(model, qwen_tokenizer):
    opinionated = build_tiny_model(seed=0)  # same weights, Qwen-like sampling defaults
    opinionated.generation_config.update(repetition_penalty=1.5, top_k=1, top_p=0.1, temperature=0.05)
    opinionated.generation_config.update(  # settings greedy search would apply: token ids, beams, n-grams
        suppress_tokens=[qwen_tokenizer.encode("5", add_special_tokens=False)[0]], forced_eos_token_id=151645,
        no_repeat_ngram_size=1, num_beams=2, min_new_tokens=50)
    own_defaults = opinionated.generation_config.to_dict()
    examples = examples_from(np.random.default_rng(5).uniform(0.5, 9.0, size=(2, K + M, 2)), [1.0, 1.0])
    for config in (ForecastConfig(k=K, m=2, constrained=False),
                   ForecastConfig(k=K, m=2, do_sample=True, samples=2, seed=1, max_int_digits=2)):
        plain = forecast_series(model, qwen_tokenizer, examples, config, progress=False)
        assert forecast_series(opinionated, qwen_tokenizer, examples, config, progress=False).texts == plain.texts
    assert opinionated.generation_config.to_dict() == own_defaults  # set aside, not changed


@pytest.mark.parametrize(("change", "message"), [
    ({"k": K + 1}, "prompt of 4 steps"),
    ({"max_int_digits": 1}, "2 integer digits"),
    ({"fmt": lvdata.LLMTimeFormat(precision=3)}, "not LLMTIME text"),
])
def test_examples_that_do_not_fit_the_config_are_refused(model, qwen_tokenizer, change, message):
    examples = examples_from(np.full((1, K + M, 2), 12.5), [1.0])
    with pytest.raises(ValueError, match=message):
        forecast_series(model, qwen_tokenizer, examples, ForecastConfig(**{"k": K, "m": M, **change}))
