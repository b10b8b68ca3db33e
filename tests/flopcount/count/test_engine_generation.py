"""Generation: prefill plus KV-cached decoding in closed form."""

import pytest

from flopcount import CountSetup, COMPONENTS, PRESETS, ModelShape, forward_flops, generation_flops

Q = PRESETS["qwen2.5-0.5b"]
TINY = ModelShape(hidden_size=8, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=4, intermediate_size=16,
                  vocab_size=32, tie_word_embeddings=True, qkv_bias=True, name="tiny")


@pytest.mark.parametrize("convention", ["coursework", "exact"])
def test_decoding_equals_one_cached_forward_per_step(convention):
    prompt, new = 37, 12
    report = generation_flops(CountSetup.of(Q, convention, lora_rank=4), prompt, new)
    prefill = forward_flops(CountSetup.of(Q, convention, lora_rank=4), prompt, logits="all" if convention == "coursework" else "last")
    steps = [forward_flops(CountSetup.of(Q, convention, lora_rank=4), 1, past_len=prompt + i - 1, logits="last")
             for i in range(1, new)]  # step i attends to prompt + i keys
    assert report.prefill.total == prefill.total
    assert report.decode.total == sum(step.total for step in steps)
    assert report.total == prefill.total + sum(step.total for step in steps)
    summed = {name: prefill.by_component()[name] + sum(s.by_component()[name] for s in steps) for name in COMPONENTS}
    assert report.by_component() == summed


def test_one_new_token_is_the_prefill_alone():
    report = generation_flops(CountSetup.of(TINY, "exact"), 5, 1)
    assert report.decode.total == 0
    assert report.total == forward_flops(CountSetup.of(TINY, "exact"), 5, logits="last").total


def test_samples_expand_the_batch_before_prefill():
    one = generation_flops(TINY, 6, 4)
    assert generation_flops(TINY, 6, 4, samples=3).total == 3 * one.total
    assert generation_flops(TINY, 6, 4, samples=3, batch=2).total == 6 * one.total
    # exact: the cos/sin table is per sequence in generate (per-sequence position ids)
    exact = generation_flops(CountSetup.of(TINY, "exact"), 6, 4)
    assert generation_flops(CountSetup.of(TINY, "exact"), 6, 4, samples=2, batch=2).total == 4 * exact.total


def test_prefill_logits_follow_the_convention_and_decoding_uses_the_last_position():
    head = 32 * 15  # one position through lm_head: V x (2d - 1)
    coursework = generation_flops(TINY, 6, 4, samples=2)
    exact = generation_flops(CountSetup.of(TINY, "exact"), 6, 4, samples=2)
    assert coursework.prefill.component("lm_head").flops == 2 * 6 * head
    assert exact.prefill.component("lm_head").flops == 2 * head
    assert coursework.decode.component("lm_head").flops == exact.decode.component("lm_head").flops == 2 * 3 * head


def test_decode_attention_sums_the_arithmetic_series():
    prompt, new = 10, 5
    report = generation_flops(CountSetup.of(TINY, "exact"), prompt, new)
    keys = sum(prompt + i for i in range(1, new))  # 11 + 12 + 13 + 14
    assert report.decode.component("attn_mask", layer=0).flops == 2 * keys  # 2 heads, one add per score
    assert report.decode.component("attn_scores", layer=0).flops == 2 * keys * (4 + 3 + 1)


def test_long_generation_is_computed_in_closed_form():
    report = generation_flops(Q, 10_000, 10**9)  # a Python loop over tokens would not return
    assert report.total > 0 and report.decode.seq_len == 10**9 - 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt_len=0, new_tokens=3), "prompt_len"),
    (dict(prompt_len=3, new_tokens=0), "new_tokens"),
    (dict(prompt_len=3, new_tokens=2, samples=0), "samples"),
    (dict(prompt_len=3, new_tokens=2, lora_rank=2, lora_targets=("x",)), "unknown LoRA target"),
])
def test_bad_generation_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        setup_keys = {"lora_rank", "lora_targets"}
        setup = CountSetup.of(TINY, **{k: v for k, v in kwargs.items() if k in setup_keys})
        generation_flops(setup, **{k: v for k, v in kwargs.items() if k not in setup_keys})
