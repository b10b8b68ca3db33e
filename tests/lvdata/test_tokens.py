"""Tokenizer loading, exact Qwen token ids, windowing invariants and forecast prompts."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvdata import (
    IGNORE_INDEX,
    TokenizerLoadError,
    count_windows,
    decode,
    encode,
    load_tokenizer,
    make_windows,
    prompt_target_split,
    tokenize_texts,
)

QWEN_PAD_ID = 151643


def test_exact_qwen_token_ids(qwen_tokenizer):
    assert tokenize_texts(qwen_tokenizer, ["1.23"])[0].tolist() == [16, 13, 17, 18]
    assert tokenize_texts(qwen_tokenizer, ["1 . 2 3"])[0].tolist() == [16, 659, 220, 17, 220, 18]


def test_an_encoded_trajectory_is_one_token_per_character(qwen_tokenizer):
    trajectory = np.random.default_rng(0).uniform(0.0, 30.0, size=(40, 2))
    text = encode(trajectory, 0.3)
    ids = tokenize_texts(qwen_tokenizer, [text])[0]
    assert ids.dtype == np.int64 and len(ids) == len(text)
    assert qwen_tokenizer.convert_ids_to_tokens(ids.tolist()) == list(text)


def test_load_tokenizer_from_a_local_directory_sets_the_pad_token(qwen_assets):
    tokenizer = load_tokenizer(qwen_assets)
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id == QWEN_PAD_ID
    assert tokenizer("1.23", add_special_tokens=False)["input_ids"] == [16, 13, 17, 18]


def test_load_tokenizer_errors_name_the_source(tmp_path):
    with pytest.raises(TokenizerLoadError, match="no such local directory"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(TokenizerLoadError, match="directory has none of tokenizer.json"):
        load_tokenizer(tmp_path)


def test_an_unreachable_hub_id_gives_a_clear_error():
    """Offline (as on these machines), a hub id fails with a message naming it."""
    code = (
        "from lvdata import load_tokenizer, TokenizerLoadError\n"
        "try:\n    load_tokenizer('no-such-org/no-such-model')\n"
        "except TokenizerLoadError as error:\n    print('ERROR:', error)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    expected = "ERROR: could not load a tokenizer from hub id 'no-such-org/no-such-model' (no local directory"
    assert result.stdout.startswith(expected), result.stdout + result.stderr


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 60), min_size=1, max_size=6),
    context=st.integers(1, 24),
    stride_fraction=st.floats(0.01, 1.0),
)
def test_window_invariants(lengths, context, stride_fraction):
    stride = max(1, int(round(stride_fraction * context)))
    sequences = [np.arange(1, n + 1) + 1000 * index for index, n in enumerate(lengths)]  # token ids unique
    ids = np.arange(len(lengths)) + 10
    windows = make_windows(sequences, context=context, stride=stride, pad_id=0, sequence_ids=ids)
    shape = (len(windows), context)
    assert windows.input_ids.shape == windows.labels.shape == windows.attention_mask.shape == shape
    real = windows.attention_mask == 1
    # padding is right-aligned, is the pad id, and never labelled
    assert np.all(np.diff(windows.attention_mask, axis=1) <= 0)
    assert np.all(windows.input_ids[~real] == 0) and np.all(windows.labels[~real] == IGNORE_INDEX)
    np.testing.assert_array_equal(windows.labels[real], windows.input_ids[real])
    for index, tokens in enumerate(sequences):
        own = windows.source == index + 10
        if len(tokens) == 0:
            assert not own.any()
            continue
        starts = []
        for row, mask in zip(windows.input_ids[own], real[own]):
            content = row[mask]
            start = int(np.searchsorted(tokens, content[0]))
            np.testing.assert_array_equal(content, tokens[start : start + len(content)])  # one sequence only
            assert len(content) == min(context, len(tokens) - start)  # only the tail window is short
            starts.append(start)
        assert starts == list(range(0, stride * len(starts), stride))  # windows start every `stride`
        covered = np.unique(windows.input_ids[own][real[own]])
        np.testing.assert_array_equal(covered, tokens)  # every real token appears in some window
        assert starts[-1] + context >= len(tokens)  # the last window reaches the end...
        assert len(starts) == 1 or starts[-2] + context < len(tokens)  # ...and is needed


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(0, 60), max_size=6), context=st.integers(1, 24), stride_fraction=st.floats(0.01, 1.0))
def test_count_windows_counts_what_make_windows_cuts(lengths, context, stride_fraction):
    stride = max(1, int(round(stride_fraction * context)))
    windows = make_windows([np.ones(n, dtype=np.int64) for n in lengths], context=context, stride=stride, pad_id=0)
    assert count_windows(lengths, context, stride) == len(windows)


def test_count_windows_of_a_huge_context_is_one_per_sequence_without_allocating():
    assert count_windows([300, 0, 5], 10**10, 10**10) == 2
    with pytest.raises(ValueError, match=r"stride must be in 1..context"):
        count_windows([3], 8, 9)


def test_train_and_validation_strides_on_a_long_sequence():
    tokens = np.arange(1000)
    train = make_windows([tokens], context=512, stride=256, pad_id=7)
    validation = make_windows([tokens], context=512, stride=512, pad_id=7)
    assert train.input_ids[:, 0].tolist() == [0, 256, 512]
    assert validation.input_ids[:, 0].tolist() == [0, 512]
    assert validation.n_real_tokens == 1000 and train.n_real_tokens == 512 + 512 + 488
    assert train.labels[-1, 488:].tolist() == [IGNORE_INDEX] * 24


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(context=0, stride=1), "context must be >= 1"),
        (dict(context=8, stride=0), r"stride must be in 1..context \(8\)"),
        (dict(context=8, stride=9), r"stride must be in 1..context"),
        (dict(context=8, stride=4, pad_id=-1), "pad_id"),
        (dict(context=8, stride=4, sequence_ids=[1, 2, 3]), "3 entries for 2 token sequences"),
    ],
)
def test_make_windows_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_windows([[1, 2, 3], [4]], **{"pad_id": 0, **kwargs})


def test_prompt_target_split_cuts_on_step_boundaries():
    trajectory = np.random.default_rng(3).uniform(0.0, 5.0, size=(100, 2))
    example = prompt_target_split(trajectory, alpha=0.4, k=50, m=30)
    assert example.prompt_text.endswith(";") and example.prompt_text.count(";") == 50
    assert example.prompt_text + example.target_text == encode(trajectory[:80], 0.4)
    np.testing.assert_array_equal(example.target_values, trajectory[50:80])
    np.testing.assert_array_equal(example.prompt_values, trajectory[:50])
    decoded = decode(example.target_text, alpha=example.alpha)
    assert decoded.diagnostics.n_steps == 30
    assert np.all(np.abs(decoded.values - example.target_values) <= 0.5e-2 * 0.4 + 1e-12)


def test_prompt_target_split_rejects_steps_beyond_the_trajectory():
    with pytest.raises(ValueError, match=r"k \+ m <= T = 100, got k=60, m=50"):
        prompt_target_split(np.ones((100, 2)), alpha=1.0, k=60, m=50)
