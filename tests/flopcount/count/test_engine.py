"""Forward and training counts checked against arithmetic done by hand in the test.

The tiny shape: d=8, 2 layers, 2 query heads of 4, 1 KV head (GQA), MLP 16, vocab 32, q/k/v
biases. Workload: batch 2 x seq_len 3 -> N = 6 tokens, each row attends to L = 3 keys.
"""

import pytest

from flopcount import CountSetup, COMPONENTS, PRIMITIVE_COSTS, ModelShape, forward_flops, training_step_flops

TINY = ModelShape(hidden_size=8, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=4, intermediate_size=16,
                  vocab_size=32, tie_word_embeddings=True, qkv_bias=True, name="tiny")
N, L, HEADS = 6, 3, 2
RMSNORM = N * (3 * 8 + 8 + 2 + 10)  # per token: 3d mul, d add, 2 div, 1 sqrt (10)

# FLOPs per decoder layer, by hand. matmul m x n @ n x p = m*p*(2n-1).
COURSEWORK_LAYER = {
    "input_norm": RMSNORM,
    "q_proj": N * 8 * 15 + N * 8,       # 8 -> 8, plus bias
    "k_proj": N * 8 * 15 + N * 8,       # GQA counted as MHA: as wide as q
    "v_proj": N * 8 * 15 + N * 8,
    "rope": 0,
    "attn_scores": HEADS * N * L * (4 + 3 + 1),  # dot of 4 (4 mul + 3 add) and the 1/sqrt(hd) mul
    "attn_mask": 0,
    "softmax": HEADS * N * (3 * 10 + 2 + 3),     # per row of 3: 3 exp, 2 add, 3 div
    "attn_values": HEADS * N * 4 * (2 * L - 1),  # each of 4 outputs sums 3 products
    "o_proj": N * 8 * 15,
    "attn_residual": N * 8,
    "post_attn_norm": RMSNORM,
    "mlp_gate": N * 16 * 15,
    "mlp_up": N * 16 * 15,
    "mlp_act": N * 16 * (1 + 10 + 1 + 1 + 1),   # silu: neg, exp, add, div, mul
    "mlp_mul": N * 16,
    "mlp_down": N * 8 * 31,
    "mlp_residual": N * 8,
    "lora": 0,
}
EXACT_LAYER = {
    **COURSEWORK_LAYER,
    "k_proj": N * 4 * 15 + N * 4,                # real width: 1 KV head of 4
    "v_proj": N * 4 * 15 + N * 4,
    "rope": N * (2 + 1) * (2 + 8 + 4),           # q and k head vectors: hd/2 neg, 2hd mul, hd add
    "attn_mask": HEADS * N * L,                  # one add per score
    "softmax": HEADS * N * (3 * 10 + 2 + 3 + 2 + 3),  # + 2 cmp (max) + 3 sub
}


def test_coursework_forward_by_hand():
    report = forward_flops(TINY, seq_len=3, batch=2)
    outside = {"embed": 0, "pos_add": N * 8, "final_norm": RMSNORM, "lm_head": N * 32 * 15}
    expected = {name: outside.get(name, 2 * COURSEWORK_LAYER.get(name, 0)) for name in COMPONENTS}
    assert report.by_component() == expected
    assert report.total == sum(expected.values())
    assert report.by_layer() == {"pre": N * 8, 0: sum(COURSEWORK_LAYER.values()), 1: sum(COURSEWORK_LAYER.values()),
                                 "post": RMSNORM + N * 32 * 15}


def test_exact_forward_by_hand():
    report = forward_flops(CountSetup.of(TINY, "exact"), seq_len=3, batch=2)
    rope_table = 3 * (2 + 4 * 10 + 4 * 10 + 8)  # 3 positions: hd/2 mul, hd cos, hd sin, 2hd mul
    assert report.by_layer() == {"pre": rope_table, 0: sum(EXACT_LAYER.values()), 1: sum(EXACT_LAYER.values()),
                                 "post": RMSNORM + N * 32 * 15}
    for name, flops in EXACT_LAYER.items():
        assert report.component(name, layer=1).flops == flops, name


def test_by_primitive_counts_operations_not_flops():
    report = forward_flops(TINY, seq_len=3, batch=2)
    primitives = report.by_primitive()
    # sqrt: one per token per RMSNorm (2 per layer + the final one); exp: silu + softmax
    assert primitives["sqrt"] == N * (2 * 2 + 1)
    assert primitives["exp"] == 2 * (N * 16 + HEADS * N * L)
    assert sum(n * PRIMITIVE_COSTS[name] for name, n in primitives.items()) == report.total


def test_lora_by_hand_with_real_widths():
    rank = 2
    # A: N x 8 @ 8 x 2; B: N x 2 @ 2 x out; then scale (mul) and add per output.
    def lora(out):
        return N * rank * 15 + N * out * 3 + 2 * N * out
    exact = forward_flops(CountSetup.of(TINY, "exact", lora_rank=rank), 3, 2)
    assert exact.component("lora", layer=0).flops == lora(8) + lora(4)  # q: 8 -> 8, v: 8 -> 4
    wide = forward_flops(CountSetup.of(TINY, lora_rank=rank), 3, 2)
    assert wide.component("lora", layer=0).flops == lora(8) + lora(8)  # coursework: v as wide as q
    all_targets = forward_flops(CountSetup.of(TINY, lora_rank=1, lora_targets=("gate_proj", "down_proj", "o_proj")), 3, 2)
    assert all_targets.component("lora", layer=0).flops == (
        (N * 1 * 15 + N * 16 * 1 + 2 * N * 16) + (N * 1 * 31 + N * 8 * 1 + 2 * N * 8) + (N * 1 * 15 + N * 8 + 2 * N * 8))


def test_past_len_and_last_logits():
    report = forward_flops(CountSetup.of(TINY, "exact"), seq_len=1, batch=2, past_len=4, logits="last")
    assert report.component("attn_scores", 0).flops == HEADS * 2 * 5 * 8  # 2 rows, 5 keys each
    assert report.component("lm_head").flops == 2 * 32 * 15
    assert report.component("attn_values", 0).flops == HEADS * 2 * 4 * (2 * 5 - 1)


def test_lm_head_bias_is_counted_in_lm_head():
    plain = forward_flops(CountSetup.of(TINY, lora_rank=2), 3, 2)
    biased = forward_flops(CountSetup.of(TINY, lora_rank=2, lm_head_bias=True), 3, 2)
    assert biased.component("lm_head").flops - plain.component("lm_head").flops == N * 32


def test_training_step_is_three_forwards():
    forward = forward_flops(CountSetup.of(TINY, lora_rank=2), 3, 2)
    assert training_step_flops(CountSetup.of(TINY, lora_rank=2), batch=2, seq_len=3) == 3 * forward.total
    assert forward.scaled(3).total == 3 * forward.total
    assert forward.scaled(3).multiplier == 3


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(seq_len=0), ValueError, "seq_len must be >= 1"),
    (dict(seq_len=2, batch=0), ValueError, "batch must be >= 1"),
    (dict(seq_len=2, lora_rank=-1), ValueError, "lora_rank must be >= 0"),
    (dict(seq_len=2, lora_rank=2, lora_targets=("qproj",)), ValueError, "unknown LoRA target"),
    (dict(seq_len=2, lora_rank=2, lora_targets="q_proj"), TypeError, "sequence of projection names"),
    (dict(seq_len=2, lora_rank=2, lora_targets=()), ValueError, "at least one LoRA target"),
    (dict(seq_len=2, past_len=-1), ValueError, "past_len"),
    (dict(seq_len=2, logits="first"), ValueError, "logits must be"),
    (dict(seq_len=2.0), TypeError, "seq_len must be an int"),
    (dict(seq_len=2, convention="fast"), ValueError, "unknown convention"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    setup_keys = {"convention", "lora_rank", "lora_targets", "lm_head_bias"}
    with pytest.raises(error, match=message):
        setup = CountSetup.of(TINY, **{k: v for k, v in kwargs.items() if k in setup_keys})
        forward_flops(setup, **{k: v for k, v in kwargs.items() if k not in setup_keys})
