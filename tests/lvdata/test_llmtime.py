"""LLMTIME encoding: format, exact round trip bound, grammar, and input checks."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lvdata import LLMTimeFormat, decode, encode

EPS = np.finfo(np.float64).eps


def independent_grammar(n_vars: int, fmt: LLMTimeFormat) -> re.Pattern[str]:
    """The format written out by hand: no leading zeros, exact decimals, no spaces."""
    number = rf"(?:0|[1-9][0-9]*)\.[0-9]{{{fmt.precision}}}"
    step = rf"{number}(?:{re.escape(fmt.value_sep)}{number}){{{n_vars - 1}}}"
    return re.compile(rf"{step}(?:{re.escape(fmt.step_sep)}{step})*")


@st.composite
def encoding_cases(draw):
    n_steps, n_vars = draw(st.integers(1, 30)), draw(st.integers(1, 3))
    values = draw(arrays(np.float64, (n_steps, n_vars), elements=st.floats(0.0, 1e4)))
    alpha = draw(st.floats(1e-3, 1e3))
    fmt = LLMTimeFormat(precision=draw(st.integers(1, 6)))
    return values, alpha, fmt


@settings(max_examples=150, deadline=None)
@given(encoding_cases())
def test_round_trip_error_is_at_most_half_a_unit_of_the_last_digit(case):
    values, alpha, fmt = case
    decoded = decode(encode(values, alpha, fmt), alpha=alpha, n_vars=values.shape[1], fmt=fmt)
    assert decoded.diagnostics.ok
    bound = 0.5 * 10.0**-fmt.precision * alpha + 8 * EPS * (np.abs(values) + alpha * 10.0**-fmt.precision)
    assert np.all(np.abs(decoded.values - values) <= bound)


@settings(max_examples=150, deadline=None)
@given(encoding_cases(), st.sampled_from([(",", ";"), ("|", "/"), (" ", "\n")]))
def test_output_matches_the_grammar_and_keeps_the_step_count(case, separators):
    values, alpha, fmt = case
    fmt = LLMTimeFormat(fmt.precision, *separators)
    text = encode(values, alpha, fmt)
    assert independent_grammar(values.shape[1], fmt).fullmatch(text)
    assert text.count(fmt.step_sep) == len(values) - 1
    assert decode(text, alpha, n_vars=values.shape[1], fmt=fmt).diagnostics.n_steps == len(values)


HUNDREDTHS_OFF_TIES = st.builds(  # x.xx plus at most 0.45 of a unit: never a rounding tie
    lambda units, offset: (units + offset) / 100.0, st.integers(1, 10**6), st.floats(-0.45, 0.45)
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(HUNDREDTHS_OFF_TIES, HUNDREDTHS_OFF_TIES), min_size=1, max_size=40))
def test_matches_python_formatting_away_from_rounding_ties(steps):
    values = np.array(steps)  # (T, 2)
    expected = ";".join(f"{prey:.2f},{predator:.2f}" for prey, predator in values)
    assert encode(values, 1.0) == expected


def test_the_brief_example():
    values = np.array([[0.25, 1.50], [0.27, 1.47], [0.31, 1.42]])
    assert encode(values, 1.0) == "0.25,1.50;0.27,1.47;0.31,1.42"
    assert encode(values * 3.0, 3.0) == "0.25,1.50;0.27,1.47;0.31,1.42"


def test_batch_encoding_equals_encoding_each_trajectory_with_its_alpha():
    rng = np.random.default_rng(0)
    batch = rng.uniform(0.0, 20.0, size=(6, 15, 2))
    alphas = rng.uniform(0.05, 2.0, size=6)
    assert encode(batch, alphas) == [encode(trajectory, alpha) for trajectory, alpha in zip(batch, alphas)]
    assert encode(batch, 0.5) == [encode(trajectory, 0.5) for trajectory in batch]


def test_float32_input_round_trips_against_its_own_values():
    values = np.array([[1.0 / 3.0, 2.0 / 3.0]], dtype=np.float32)
    decoded = decode(encode(values, 0.1), alpha=0.1).values
    assert np.all(np.abs(decoded - values.astype(np.float64)) <= 0.5e-3 + 1e-12)


@pytest.mark.parametrize(
    ("values", "alpha", "message"),
    [
        (np.array([[1.0, -0.5]]), 1.0, r"negative values \(first at index \[0, 0, 1\]\)"),
        (np.array([[1.0, np.nan]]), 1.0, r"NaN/inf"),
        (np.array([[1.0, 2.0]]), 0.0, "alpha must be positive"),
        (np.ones((2, 3, 2)), np.ones(3), r"shape \(2,\)"),
        (np.array([[1e15, 1.0]]), 1.0, "too large to encode exactly"),
        (np.ones(4), 1.0, r"\(T, V\) or \(N, T, V\)"),
        (np.ones((0, 2)), 1.0, "non-empty"),
    ],
)
def test_encode_rejects_bad_input(values, alpha, message):
    with pytest.raises(ValueError, match=message):
        encode(values, alpha)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(precision=0), "precision must be an int in 1..8"),
        (dict(precision=2.0), "precision must be an int"),
        (dict(value_sep=", "), "value_sep must be one ASCII character"),
        (dict(step_sep="."), "step_sep must be one ASCII character other than a digit or '.'"),
        (dict(step_sep="5"), "step_sep"),
        (dict(value_sep="é"), "ASCII"),
        (dict(value_sep=";"), "separators must differ"),
    ],
)
def test_format_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LLMTimeFormat(**kwargs)
