"""The counting functions' argument checks: clear errors naming the bad value."""

import pytest

from flopcount.count.arguments import check_count, check_lora


def test_a_count_must_be_an_int_at_least_its_minimum():
    check_count("batch", 1, minimum=1)
    with pytest.raises(TypeError, match=r"batch must be an int, got True \(bool\)"):
        check_count("batch", True, minimum=1)
    with pytest.raises(TypeError, match=r"seq_len must be an int, got 2.0 \(float\)"):
        check_count("seq_len", 2.0, minimum=1)
    with pytest.raises(ValueError, match="past_len must be >= 0, got -1"):
        check_count("past_len", -1, minimum=0)


def test_lora_targets_are_checked_and_dropped_at_rank_zero():
    assert check_lora(4, ["v_proj", "q_proj"]) == ("v_proj", "q_proj")  # order kept
    assert check_lora(0, ("q_proj", "v_proj")) == ()  # no LoRA: nothing counted
    assert check_lora(0, ()) == ()
    for targets, error, message in [
        ("q_proj", TypeError, "got the string 'q_proj'"),
        (("q_proj", "lm_head"), ValueError, r"unknown LoRA target\(s\) \['lm_head'\]; choose from q_proj, k_proj"),
        (("q_proj", "q_proj"), ValueError, "duplicate LoRA target"),
        ((), ValueError, "lora_rank=4 needs at least one LoRA target"),
    ]:
        with pytest.raises(error, match=message):
            check_lora(4, targets)
    with pytest.raises(ValueError, match="lora_rank must be >= 0"):
        check_lora(-1, ("q_proj",))
