"""The common accounting mistakes listed in the brief, each guarded on the real 0.5B shape."""

from flopcount import CountSetup, PRESETS, forward_flops

Q = PRESETS["qwen2.5-0.5b"]
n = 512


def test_lm_head_runs_on_every_position():
    report = forward_flops(Q, n)
    assert report.component("lm_head").flops == n * 151936 * (2 * 896 - 1)
    # and on one position only when asked (generation)
    assert forward_flops(Q, n, logits="last").component("lm_head").flops == 151936 * (2 * 896 - 1)


def test_matmul_keeps_its_factor_two():
    q = forward_flops(CountSetup.of(Q, "exact"), n).component("q_proj", layer=0)
    assert q["mul"] == n * 896 * 896 and q["add"] == n * 896 * 895 + n * 896  # products, sums, bias
    assert q.flops == n * 896 * (2 * 896 - 1) + n * 896


def test_mlp_has_three_matrices():
    report = forward_flops(Q, n)
    matrices = [report.component(c, layer=0).flops for c in ("mlp_gate", "mlp_up", "mlp_down")]
    assert matrices == [n * 4864 * (2 * 896 - 1), n * 4864 * (2 * 896 - 1), n * 896 * (2 * 4864 - 1)]


def test_head_size_is_hidden_over_heads():
    scores = forward_flops(Q, n).component("attn_scores", layer=0)
    head_dim = 896 // 14
    assert scores.flops == 14 * n * n * (head_dim + (head_dim - 1) + 1)  # dot of 64, then the scale


def test_rope_is_elementwise_on_q_and_k_only():
    exact = forward_flops(CountSetup.of(Q, "exact"), n)
    rope = exact.component("rope", layer=0)
    per_vector = 32 + 2 * 64 + 64  # neg half, 2 mul, add per element of a head vector
    assert rope.flops == n * (14 + 2) * per_vector  # 14 q heads + 2 k heads, no v
    dense = n * 896 * (2 * 896 - 1)
    assert rope.flops < dense / 100  # not a d x d rotation matmul
    assert forward_flops(Q, n).component("rope").flops == 0  # coursework: positional encodings are free


def test_lora_is_two_thin_matmuls_not_a_merge():
    r = 8
    one_token = forward_flops(CountSetup.of(Q, "exact", lora_rank=r), 1).component("lora", layer=0)
    q = r * (2 * 896 - 1) + 896 * (2 * r - 1) + 2 * 896
    v = r * (2 * 896 - 1) + 128 * (2 * r - 1) + 2 * 128
    assert one_token.flops == q + v
    merge_cost = 896 * 896 * (2 * r - 1)  # B @ A for q alone
    assert one_token.flops < merge_cost / 100
    many = forward_flops(CountSetup.of(Q, "exact", lora_rank=r), 100).component("lora", layer=0)
    assert many.flops == 100 * one_token.flops  # proportional to tokens: no per-forward constant
