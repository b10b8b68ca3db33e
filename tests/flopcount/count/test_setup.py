"""``CountSetup``: what decides a count, made in one place."""

from __future__ import annotations

import dataclasses

import pytest

from flopcount import COURSEWORK, EXACT, PRESETS, CountSetup, DEFAULT_LORA_TARGETS, forward_flops
from lora import LoRAConfig


def test_of_and_from_lora_make_the_same_setup():
    assert DEFAULT_LORA_TARGETS == ("q_proj", "v_proj")
    made = CountSetup.of("qwen2.5-0.5b", "exact", lora_rank=8)
    assert made == CountSetup(PRESETS["qwen2.5-0.5b"], EXACT, 8, ("q_proj", "v_proj"))
    assert CountSetup.from_lora("qwen2.5-0.5b", LoRAConfig(r=8), "exact") == made
    assert CountSetup.from_lora("qwen2.5-0.5b", None) == CountSetup(PRESETS["qwen2.5-0.5b"], COURSEWORK)
    assert CountSetup.of("qwen2.5-0.5b").lora_targets == ()  # no adapters at rank 0
    assert made.describe()["lora_targets"] == ["q_proj", "v_proj"] and made.model == "qwen2.5-0.5b"


def test_a_setup_is_not_silently_taken_for_a_model():
    setup = CountSetup.of("qwen2.5-0.5b", lora_rank=4)
    with pytest.raises(TypeError, match="use dataclasses.replace"):
        CountSetup.of(setup, "exact")
    exact = dataclasses.replace(setup, convention=EXACT)
    assert forward_flops(exact, 8).convention == "exact"  # a setup passes straight through the counts
    with pytest.raises(TypeError, match="must be a ModelShape"):
        CountSetup("qwen2.5-0.5b")
    with pytest.raises(ValueError, match="needs at least one LoRA target"):
        CountSetup(PRESETS["qwen2.5-0.5b"], lora_rank=4)
