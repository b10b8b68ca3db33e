"""Scaling laws of the formulas: linear in batch; a + b*n + c*n^2 in sequence length."""

import pytest

from flopcount import CountSetup, PRESETS, forward_flops

Q = PRESETS["qwen2.5-0.5b"]


@pytest.mark.parametrize("convention", ["coursework", "exact"])
def test_linear_in_batch(convention):
    one = forward_flops(CountSetup.of(Q, convention, lora_rank=4), 64, 1)
    # exact: the rotary cos/sin table is computed once for the (1, seq_len) position ids
    table = one.component("rope", layer=None).flops
    for batch in (2, 3, 7):
        report = forward_flops(CountSetup.of(Q, convention, lora_rank=4), 64, batch)
        assert report.total - table == batch * (one.total - table)
    assert (table > 0) == (convention == "exact")


@pytest.mark.parametrize("convention", ["coursework", "exact"])
def test_affine_plus_quadratic_in_sequence_length(convention):
    total = {n: forward_flops(CountSetup.of(Q, convention), n).total for n in (1, 2, 3, 17, 100, 511, 768)}
    # Quadratic part, per layer and head, per (query, key) pair: scores 2*hd (hd mul, hd-1 add,
    # 1 scale mul), values 2*hd (hd mul, hd add), softmax exp 10 + add 1 + div 1;
    # exact adds the mask add, the max's cmp and the subtraction.
    hd, heads, layers = 64, 14, 24
    per_pair = 2 * hd + 2 * hd + 12 + (3 if convention == "exact" else 0)
    c = layers * heads * per_pair
    b = total[2] - total[1] - 3 * c  # from f(2) - f(1) = b + 3c
    a = total[1] - b - c
    assert a == 0  # no work independent of the tokens
    for n, flops in total.items():
        assert flops == a + b * n + c * n * n, n
