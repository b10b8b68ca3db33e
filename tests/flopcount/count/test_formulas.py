"""The formula functions, each against a count of its operations done another way."""

import itertools

import pytest

from flopcount.count import formulas as f
from flopcount.count.primitives import OpCount


@pytest.mark.parametrize("m, n, p", [(1, 1, 1), (2, 3, 4), (5, 1, 7)])
def test_a_matmul_is_n_products_summed_by_n_minus_1_adds_per_output(m, n, p):
    muls = adds = 0
    for _i, _j in itertools.product(range(m), range(p)):  # one output: n products, n-1 additions
        muls, adds = muls + n, adds + n - 1
    assert f.matmul(m, n, p) == OpCount(mul=muls, add=adds)
    assert f.matmul(m, n, p).flops == m * p * (2 * n - 1)


def test_a_linear_layer_adds_its_bias_only_when_it_has_one():
    assert f.linear(3, 4, 5, bias=False) == f.matmul(3, 4, 5)
    assert f.linear(3, 4, 5, bias=True) == f.matmul(3, 4, 5) + OpCount(add=15)


def test_attention_over_rows_of_different_lengths_is_the_sum_of_its_rows():
    lengths, head_dim = [1, 2, 3, 7], 4  # a causal prefill then a cached decode step
    rows, pairs = len(lengths), sum(lengths)
    by_row_scores = OpCount.total_of(f.matmul(1, head_dim, n) + OpCount(mul=n) for n in lengths)  # + the scale
    by_row_values = OpCount.total_of(f.matmul(1, n, head_dim) for n in lengths)
    assert f.attention_scores(rows, pairs, head_dim) == by_row_scores
    assert f.attention_values(rows, pairs, head_dim) == by_row_values


def test_softmax_counts_the_max_subtraction_only_in_its_stable_form():
    plain, stable = f.softmax(2, 10, max_subtraction=False), f.softmax(2, 10, max_subtraction=True)
    assert plain == OpCount(exp=10, add=8, div=10)
    assert stable == plain + OpCount(cmp=8, sub=10)


def test_cross_entropy_is_a_stable_log_softmax_per_row_then_the_mean():
    assert f.cross_entropy(0, 100) == OpCount()
    one = f.cross_entropy(1, 5)
    assert one == OpCount(cmp=4, sub=10, exp=5, add=4, log=1, neg=1, div=1)
    assert f.cross_entropy(3, 5) == OpCount(cmp=12, sub=30, exp=15, add=12 + 2, log=3, neg=3, div=1)


def test_the_elementwise_formulas_scale_with_their_elements():
    assert f.rmsnorm(2, 8) == OpCount(mul=48, add=16, div=4, sqrt=2)
    assert f.silu(3) == OpCount(neg=3, exp=3, add=3, div=3, mul=3)
    assert f.pointwise(6, "mul") == OpCount(mul=6) and f.bias_add(2, 3) == OpCount(add=6)
    assert f.rope(2, 4) == OpCount(neg=4, mul=16, add=8)
    assert f.rope_table(3, 4) == OpCount(mul=3 * (2 + 8), cos=12, sin=12)


def test_a_lora_update_is_two_thin_matmuls_a_scale_and_an_add():
    assert f.lora_update(5, 16, 8, 2) == f.matmul(5, 16, 2) + f.matmul(5, 2, 8) + OpCount(mul=40, add=40)
