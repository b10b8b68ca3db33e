"""The LLMTIME grammar automaton: it accepts exactly the canonical step grammar.

Sound: random walks through the processor (random logits, any temperature) only ever write
text the grammar's regex accepts. Complete: every text ``lvdata.encode`` writes within the
digit bound passes through it token by token. Then with a real random-weight Qwen2 model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lvdata
from experiments.forecasting.generate import ForecastConfig, forecast_series
from experiments.forecasting.grammar import LLMTimeGrammar, LLMTimeLogitsProcessor, StepStoppingCriteria, alphabet_token_ids
from experiments.models.loading import build_tiny_model

VOCAB = 151936  # the Qwen2.5 embedding rows (more than the tokenizer's 151,665 entries)

grammars = st.builds(
    LLMTimeGrammar,
    n_steps=st.integers(1, 3),
    n_vars=st.integers(1, 3),
    max_int_digits=st.integers(1, 3),
    fmt=st.builds(lvdata.LLMTimeFormat, precision=st.integers(1, 3)),
)


def random_walk(grammar: LLMTimeGrammar, tokenizer, rows: int, seed: int, sharpness: float) -> list[str]:
    """Sample ``rows`` continuations from random logits through the processor until all rows emit EOS.

    The alphabet tokens get random logits (scaled by ``sharpness``); a prose token gets a huge
    one, which the processor must mask like every other token outside the alphabet.
    """
    processor = LLMTimeLogitsProcessor(grammar, tokenizer, tokenizer.eos_token_id)
    alphabet = torch.tensor([*alphabet_token_ids(tokenizer, grammar), tokenizer.eos_token_id])  # (14,)
    prose = tokenizer.encode(" the", add_special_tokens=False)[0]
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.full((rows, 3), tokenizer.pad_token_id)  # (rows, prompt)
    done = torch.zeros(rows, dtype=torch.bool)
    for _ in range(grammar.max_new_tokens + 1):
        scores = torch.zeros(rows, VOCAB)
        scores[:, alphabet] = sharpness * torch.randn(rows, len(alphabet), generator=generator)
        scores[:, prose] = 1e9
        constrained = processor(input_ids, scores)
        assert (torch.isfinite(constrained).sum(dim=1) == torch.isfinite(constrained[:, alphabet]).sum(dim=1)).all()
        choice = torch.multinomial(constrained[:, alphabet].softmax(dim=-1), 1, generator=generator)  # (rows, 1)
        next_tokens = alphabet[choice]
        input_ids = torch.cat([input_ids, next_tokens], dim=1)
        done |= next_tokens[:, 0] == tokenizer.eos_token_id
        if done.all():
            break
    assert done.all(), "a row did not reach EOS within the grammar's token bound"
    return [tokenizer.decode(ids[3:]).split(tokenizer.eos_token)[0] for ids in input_ids]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grammar=grammars, seed=st.integers(0, 2**31), sharpness=st.sampled_from([0.1, 1.0, 5.0, 30.0]))
def test_every_random_walk_through_the_processor_is_grammatical(qwen_tokenizer, grammar, seed, sharpness):
    for text in random_walk(grammar, qwen_tokenizer, rows=4, seed=seed, sharpness=sharpness):
        assert grammar.regex().fullmatch(text), text
        assert len(qwen_tokenizer.encode(text)) <= grammar.max_new_tokens
        decoded = lvdata.decode_steps(text, grammar.n_steps, n_vars=grammar.n_vars, fmt=grammar.fmt)
        assert decoded.diagnostics.ok and decoded.diagnostics.n_valid == grammar.n_steps


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grammar=grammars, data=st.data())
def test_every_encoded_trajectory_within_the_digit_bound_is_accepted(qwen_tokenizer, grammar, data):
    largest = 10**grammar.max_int_digits - 1  # scaled values below 10^D
    values = data.draw(st.lists(st.floats(0, largest, allow_subnormal=False),
                                min_size=grammar.n_steps * grammar.n_vars, max_size=grammar.n_steps * grammar.n_vars))
    text = lvdata.encode(np.reshape(values, (grammar.n_steps, grammar.n_vars)), 1.0, grammar.fmt) + grammar.fmt.step_sep
    ids = qwen_tokenizer.encode(text, add_special_tokens=False)
    processor = LLMTimeLogitsProcessor(grammar, qwen_tokenizer, qwen_tokenizer.eos_token_id)
    prompt = torch.tensor([[qwen_tokenizer.pad_token_id]])
    for position, token in enumerate([*ids, qwen_tokenizer.eos_token_id]):
        input_ids = torch.cat([prompt, torch.tensor([ids[:position]], dtype=torch.int64)], dim=1)
        scores = processor(input_ids, torch.zeros(1, VOCAB))
        assert scores[0, token] == 0, f"{text!r}: token {position} ({token}) was forbidden"
    assert processor.finished.all()
    assert torch.isfinite(scores[0]).sum() == 1  # after the m-th step: EOS and nothing else


def allowed_characters(grammar: LLMTimeGrammar, tokenizer, prefix: str) -> str:
    """The alphabet characters (and ``$`` for EOS) the processor allows after ``prefix``."""
    processor = LLMTimeLogitsProcessor(grammar, tokenizer, tokenizer.eos_token_id)
    ids = tokenizer.encode(prefix, add_special_tokens=False)
    input_ids = torch.tensor([[tokenizer.pad_token_id]])
    for position in range(len(ids) + 1):
        input_ids = torch.tensor([[tokenizer.pad_token_id, *ids[:position]]])
        scores = processor(input_ids, torch.zeros(1, VOCAB))
    finite = set(torch.isfinite(scores[0]).nonzero().flatten().tolist())
    names = {token: char for char, token in zip(grammar.characters, alphabet_token_ids(tokenizer, grammar))}
    return "".join(sorted(names.get(token, "$") for token in finite))


@pytest.mark.parametrize(("prefix", "expected"), [
    ("", "123456789" + "0"),  # a number starts with any digit ...
    ("0", "."),  # ... but a leading zero must be the whole integer part
    ("12", "."),  # D = 2 integer digits at most
    ("1", ".0123456789"),
    ("1.", "0123456789"),
    ("1.23", ","),  # p = 2 decimals, then the value separator ...
    ("1.23,0.50", ";"),  # ... and the step separator after n_vars numbers
    ("1.23,0.50;", "0123456789"),
    ("1.23,0.50;4.00,0.01", ";"),
    ("1.23,0.50;4.00,0.01;", "$"),  # m = 2 steps done: EOS only
])
def test_what_the_processor_allows_after_a_prefix(qwen_tokenizer, prefix, expected):
    grammar = LLMTimeGrammar(n_steps=2, n_vars=2, max_int_digits=2)
    assert allowed_characters(grammar, qwen_tokenizer, prefix) == "".join(sorted(expected))


def test_a_processor_is_used_for_one_generation_only(qwen_tokenizer):
    processor = LLMTimeLogitsProcessor(LLMTimeGrammar(n_steps=1), qwen_tokenizer, qwen_tokenizer.eos_token_id)
    processor(torch.zeros(2, 5, dtype=torch.int64), torch.zeros(2, VOCAB))
    with pytest.raises(RuntimeError, match="fresh processor"):
        processor(torch.zeros(2, 9, dtype=torch.int64), torch.zeros(2, VOCAB))


def test_the_grammar_bound_is_the_longest_text(qwen_tokenizer):
    grammar = LLMTimeGrammar(n_steps=3, n_vars=2, max_int_digits=2)
    longest = "99.99,99.99;" * 3
    assert grammar.regex().fullmatch(longest) and len(qwen_tokenizer.encode(longest)) == grammar.max_new_tokens
    assert not grammar.regex().fullmatch("09.99,99.99;" * 3) and not grammar.regex().fullmatch("100.00,1.00;" * 3)


def test_step_stopping_counts_only_generated_separators(qwen_tokenizer):
    semicolon = qwen_tokenizer.encode(";")[0]
    criteria = StepStoppingCriteria(semicolon, n_steps=2, prompt_length=3)
    rows = torch.tensor([[semicolon] * 3 + [5, semicolon, 5],  # the prompt's separators do not count
                         [5, 5, 5, semicolon, 5, semicolon]])
    assert criteria(rows, None).tolist() == [False, True]


@pytest.fixture(scope="module")
def random_models():
    """Two random-weight tiny Qwen2 models: unconstrained, they write garbage."""
    return [build_tiny_model(seed=seed) for seed in (1, 2)]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model_index=st.integers(0, 1), m=st.integers(1, 3), precision=st.integers(1, 3), sampled=st.booleans(),
       seed=st.integers(0, 1000), temperature=st.sampled_from([0.5, 1.0, 3.0]))
def test_a_random_model_writes_only_grammatical_forecasts_of_exactly_m_steps(
        qwen_tokenizer, random_models, model_index, m, precision, sampled, seed, temperature):
    fmt = lvdata.LLMTimeFormat(precision=precision)
    trajectories = np.random.default_rng(seed).uniform(0.1, 9.0, size=(2, 4 + m, 2))
    examples = [lvdata.prompt_target_split(t, 1.0, k=4, m=m, fmt=fmt) for t in trajectories]
    config = ForecastConfig(k=4, m=m, do_sample=sampled, samples=2 if sampled else 1, temperature=temperature,
                            seed=seed, batch_size=2, max_int_digits=2, fmt=fmt)
    output = forecast_series(random_models[model_index], qwen_tokenizer, examples, config, progress=False)
    grammar = LLMTimeGrammar(n_steps=m, max_int_digits=2, fmt=fmt)
    for texts, diagnostics in zip(output.texts, output.diagnostics):
        for text, record in zip(texts, diagnostics):
            assert grammar.regex().fullmatch(text), text
            assert record.ok and record.n_valid == m
    assert output.values.shape == (2, m, 2) and np.isfinite(output.samples).all()
    assert output.malformed_sample_fraction == 0.0
