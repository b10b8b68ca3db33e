"""Decoding model output: every documented classification, and no exception on any text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvdata import LLMTimeFormat, decode, decode_steps, encode

NAN = np.nan


def assert_rows(values: np.ndarray, expected: list[list[float]]) -> None:
    np.testing.assert_allclose(values, np.array(expected, dtype=np.float64).reshape(-1, 2), equal_nan=True)


def test_clean_text_parses_and_scales_by_alpha():
    result = decode("0.25,1.50;0.27,1.47", alpha=2.0)
    assert_rows(result.values, [[0.5, 3.0], [0.54, 2.94]])
    assert result.diagnostics.ok and result.diagnostics.n_valid == 2


@pytest.mark.parametrize("text", ["0.25,1.50;", "0.25,1.50"])
def test_a_trailing_step_separator_is_a_normal_end(text):
    result = decode(text)
    assert_rows(result.values, [[0.25, 1.5]])
    assert result.diagnostics.ok


def test_empty_text_has_no_steps():
    result = decode("")
    assert result.values.shape == (0, 2)
    assert result.diagnostics.n_steps == 0 and result.diagnostics.ok


@pytest.mark.parametrize("tail", ["0", "0.", "0.2", "0.25", "0.25,", "0.25,1", "0.25,1.5"])
def test_an_unfinished_last_step_is_truncated_not_guessed(tail):
    result = decode("0.10,0.20;" + tail)
    assert_rows(result.values, [[0.1, 0.2], [NAN, NAN]])
    diagnostics = result.diagnostics
    assert diagnostics.truncated_last_step and not diagnostics.ok
    assert (diagnostics.malformed_numbers, diagnostics.wrong_arity_steps, diagnostics.n_valid) == (0, 0, 1)


def test_a_short_number_before_a_separator_is_malformed_not_truncated():
    result = decode("0.25,1.5;0.10,0.20")
    assert_rows(result.values, [[NAN, NAN], [0.1, 0.2]])
    assert result.diagnostics.malformed_numbers == 1 and not result.diagnostics.truncated_last_step


ARABIC_INDIC_1_23 = "\u0661.\u0662\u0663"  # float() would accept it; the format does not


@pytest.mark.parametrize("bad_number", ["1.234", "-0.50", "1e-2", ".50", "1..2", "", "0x10", "1_0.00", ARABIC_INDIC_1_23])
def test_malformed_numbers_are_counted_and_their_step_is_nan(bad_number):
    result = decode(f"0.10,0.20;0.30,{bad_number};0.50,0.60;")
    assert_rows(result.values, [[0.1, 0.2], [NAN, NAN], [0.5, 0.6]])
    assert result.diagnostics.malformed_numbers == 1 and result.diagnostics.n_valid == 2


@pytest.mark.parametrize("step", ["0.30", "0.30,0.40,0.50", ""])
def test_steps_with_the_wrong_number_of_values(step):
    result = decode(f"0.10,0.20;{step};0.50,0.60")
    assert_rows(result.values, [[0.1, 0.2], [NAN, NAN], [0.5, 0.6]])
    assert result.diagnostics.wrong_arity_steps == 1 and result.diagnostics.malformed_numbers == 0


def test_non_numeric_text_is_counted_per_character():
    result = decode("0.10,0.20;The answer is 0.30,0.40; \n0.50,0.60")
    assert_rows(result.values, [[0.1, 0.2], [NAN, NAN], [NAN, NAN]])
    assert result.diagnostics.non_numeric_chars == len("The answer is ") + len(" \n")
    assert result.diagnostics.n_valid == 1


def test_decode_steps_reads_exactly_the_requested_rows():
    more = decode_steps("0.10,0.20;0.30,0.40;0.50,0.60;garbage", n_steps=2)
    assert_rows(more.values, [[0.1, 0.2], [0.3, 0.4]])
    assert more.diagnostics.ok and more.diagnostics.ignored_chars == len("0.50,0.60;garbage")

    fewer = decode_steps("0.10,0.20;0.30,0.4", n_steps=4, alpha=10.0)
    assert_rows(fewer.values, [[1.0, 2.0], [NAN, NAN], [NAN, NAN], [NAN, NAN]])
    assert fewer.diagnostics.missing_steps == 2 and fewer.diagnostics.truncated_last_step
    assert not fewer.diagnostics.ok


def test_a_complete_last_step_cut_by_n_steps_is_not_truncated():
    result = decode_steps("0.10,0.20;0.30,0.40", n_steps=1)
    assert result.diagnostics.ok and result.diagnostics.ignored_chars == len("0.30,0.40")


def test_custom_format_and_arity():
    fmt = LLMTimeFormat(precision=3, value_sep="|", step_sep="/")
    result = decode("1.000|2.000|3.000/4.000|5.000|6.0", alpha=0.5, n_vars=3, fmt=fmt)
    np.testing.assert_allclose(result.values, [[0.5, 1.0, 1.5], [NAN, NAN, NAN]])
    assert result.diagnostics.truncated_last_step


def test_diagnostics_as_dict_includes_ok():
    record = decode("x").diagnostics.as_dict()
    assert record["ok"] is False and record["non_numeric_chars"] == 1 and record["n_steps"] == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(text=b"0.10,0.20"), TypeError),
        (dict(text="", alpha=0.0), ValueError),
        (dict(text="", n_vars=0), ValueError),
    ],
)
def test_bad_arguments_raise(kwargs, error):
    with pytest.raises(error):
        decode(**kwargs)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.one_of(st.sampled_from("0123456789.,;-e "), st.characters()), max_size=80))
def test_decode_never_raises_and_its_counts_are_consistent(text):
    result = decode(text, alpha=0.7)
    diagnostics = result.diagnostics
    nan_rows = np.isnan(result.values).all(axis=1)
    assert result.values.shape == (diagnostics.n_steps, 2)
    assert np.isnan(result.values).any(axis=1).tolist() == nan_rows.tolist()  # rows are all or nothing
    assert diagnostics.n_valid == int((~nan_rows).sum())
    assert np.all(result.values[~nan_rows] >= 0)
    all_valid = diagnostics.n_valid == diagnostics.n_steps
    assert diagnostics.ok == (all_valid and diagnostics.non_numeric_chars == 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 50), st.floats(0, 50)), min_size=1, max_size=20),
    st.data(),
)
def test_inserting_foreign_text_invalidates_only_the_step_it_lands_in(steps, data):
    values = np.array(steps)
    text = encode(values, 1.0)
    position = data.draw(st.integers(0, len(text)))
    foreign = st.characters(blacklist_characters="0123456789.,;")
    junk = data.draw(st.text(alphabet=foreign, min_size=1, max_size=5))
    hit_step = text[:position].count(";")
    result = decode(text[:position] + junk + text[position:])
    assert not result.diagnostics.ok and result.diagnostics.non_numeric_chars == len(junk)
    assert np.isnan(result.values[hit_step]).all()
    others = np.arange(len(values)) != hit_step
    np.testing.assert_allclose(result.values[others], decode(text).values[others])


def test_a_number_too_large_for_a_float_is_malformed_never_inf():
    result = decode("9" * 400 + ".00,0.50;0.10,0.20")
    assert np.isnan(result.values[0]).all() and result.values[1].tolist() == [0.1, 0.2]
    assert (result.diagnostics.n_valid, result.diagnostics.malformed_numbers) == (1, 1)
    assert not result.diagnostics.ok
    scaled = decode("1" + "0" * 307 + ".00,1.00", alpha=1e10)  # finite text, infinite once scaled back by alpha
    assert np.isnan(scaled.values).all() and scaled.diagnostics.malformed_numbers == 1
