"""The two conventions: every choice a named field; lookups and errors."""

import dataclasses

import pytest

from flopcount import COURSEWORK, EXACT, Convention, get_convention


def test_lookup_by_name_or_object():
    assert get_convention("coursework") is COURSEWORK
    assert get_convention("exact") is EXACT
    assert get_convention(EXACT) is EXACT
    with pytest.raises(ValueError, match="unknown convention 'fast'.*coursework, exact"):
        get_convention("fast")


def test_the_briefs_rules_are_the_coursework_choices():
    assert COURSEWORK.gqa_as_mha and COURSEWORK.positional_add and COURSEWORK.bias_adds
    assert not (COURSEWORK.rope_elementwise or COURSEWORK.rope_tables or COURSEWORK.causal_mask_add
                or COURSEWORK.softmax_max_subtraction)
    assert COURSEWORK.prefill_logits == "all"
    # "training = 3 x forward" in both conventions
    assert COURSEWORK.backward_multiplier == EXACT.backward_multiplier == 2


def test_exact_follows_the_module_graph():
    assert not EXACT.gqa_as_mha and not EXACT.positional_add
    assert EXACT.rope_elementwise and EXACT.rope_tables and EXACT.causal_mask_add
    assert EXACT.softmax_max_subtraction and EXACT.bias_adds
    assert EXACT.prefill_logits == "last"  # HF generate passes logits_to_keep=1


def test_every_choice_is_documented_in_the_class_docstring():
    for field in dataclasses.fields(Convention):
        assert f"{field.name}:" in Convention.__doc__, field.name


def test_conventions_are_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        COURSEWORK.gqa_as_mha = False
    with pytest.raises(ValueError, match="prefill_logits"):
        dataclasses.replace(EXACT, prefill_logits="some")
    with pytest.raises(ValueError, match="backward_multiplier"):
        dataclasses.replace(EXACT, backward_multiplier=-1)
