"""The fvcore op handles, each checked on a real jit trace against arithmetic by hand."""

import pytest
import torch
import torch.nn.functional as F

from flopcount import OpCount
from flopcount.trace.handles import OP_HANDLES, TraceError

pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.trace` is deprecated:DeprecationWarning")


def traced_count(fn, *args, kind: str):
    """Trace ``fn(*args)`` and price its (single) ``kind`` node with our handle."""
    graph = torch.jit.trace(fn, args, check_trace=False).graph
    nodes = [n for n in graph.nodes() if n.kind() == kind]
    assert len(nodes) == 1, [n.kind() for n in graph.nodes()]
    return OP_HANDLES[kind](list(nodes[0].inputs()), list(nodes[0].outputs()))


x34, x4 = torch.randn(3, 4), torch.randn(4)


def test_broadcast_add_counts_output_elements():
    assert traced_count(lambda a, b: a + b, x34, x4, kind="aten::add") == OpCount(add=12)


def test_integer_arithmetic_is_index_arithmetic():
    ints = torch.arange(12).reshape(3, 4)
    assert traced_count(lambda a: a + 3, ints, kind="aten::add") == OpCount()
    assert traced_count(lambda a: a.cumsum(-1), ints, kind="aten::cumsum") == OpCount()
    assert traced_count(lambda a: a.cumsum(-1), x34, kind="aten::cumsum") == OpCount(add=12)


def test_rmsnorm_pieces():
    assert traced_count(lambda a: a.pow(2), x34, kind="aten::pow") == OpCount(mul=12)
    assert traced_count(lambda a: a.mean(-1, keepdim=True), x34, kind="aten::mean") == OpCount(add=3 * 3, div=3)
    assert traced_count(lambda a: torch.rsqrt(a), x34, kind="aten::rsqrt") == OpCount(sqrt=12, div=12)


def test_softmax_is_the_stable_form():
    # per row of 4: 3 cmp (max), 4 sub, 4 exp, 3 add (sum), 4 div
    count = traced_count(lambda a: F.softmax(a, dim=-1), x34, kind="aten::softmax")
    assert count == OpCount(cmp=9, sub=12, exp=12, add=9, div=12)
    by_columns = traced_count(lambda a: F.softmax(a, dim=0), x34, kind="aten::softmax")
    assert by_columns == OpCount(cmp=8, sub=12, exp=12, add=8, div=12)  # 4 rows of 3


def test_silu_and_relu():
    assert traced_count(F.silu, x34, kind="aten::silu") == OpCount(neg=12, exp=12, add=12, div=12, mul=12)
    assert traced_count(torch.relu, x34, kind="aten::relu") == OpCount(relu=12)  # fvcore ignores relu by default


def test_linear_and_matmul_use_2n_minus_1():
    w, b = torch.randn(5, 4), torch.randn(5)
    assert traced_count(lambda a: F.linear(a, w, b), x34, kind="aten::linear") == OpCount(mul=3 * 5 * 4,
                                                                                          add=3 * 5 * 3 + 3 * 5)
    assert traced_count(lambda a: F.linear(a, w), x34, kind="aten::linear") == OpCount(mul=60, add=45)
    q, k = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 8, 7)
    assert traced_count(torch.matmul, q, k, kind="aten::matmul") == OpCount(mul=2 * 3 * 6 * 7 * 8,
                                                                            add=2 * 3 * 6 * 7 * 7)


def test_sdpa_priced_as_its_reference_math_with_gqa():
    q, kv = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8)
    graph = torch.jit.trace(lambda a, b: F.scaled_dot_product_attention(a, b, b, is_causal=True, enable_gqa=True),
                            (q, kv)).graph
    node = next(n for n in graph.nodes() if n.kind() == "aten::scaled_dot_product_attention")
    parts = OP_HANDLES[node.kind()](list(node.inputs()), list(node.outputs()))
    pairs, rows = 4 * 5 * 5, 4 * 5  # 4 query heads x 5 x 5 scores
    assert parts["attn_scores"] == OpCount(mul=pairs * 9, add=pairs * 7)
    assert parts["attn_mask"] == OpCount(add=pairs)
    assert parts["softmax"] == OpCount(cmp=pairs - rows, sub=pairs, exp=pairs, add=pairs - rows, div=pairs)
    assert parts["attn_values"] == OpCount(mul=8 * pairs, add=8 * (pairs - rows))


def test_real_dropout_is_refused_not_ignored():
    with pytest.raises(TraceError, match="dropout with p=0.5"):
        traced_count(lambda a: F.dropout(a, p=0.5, training=True), x34, kind="aten::dropout")
    assert traced_count(lambda a: F.dropout(a, p=0.5, training=False), x34, kind="aten::dropout") == OpCount()
