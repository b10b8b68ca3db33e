"""fvcore op handles priced by the primitive table: one small function per aten op.

Every handle has fvcore's signature ``handle(inputs, outputs)`` (lists of ``torch._C.Value``
from the jit trace) and returns an ``OpCount`` (or, for the fused attention kernel, a dict of
component name -> ``OpCount``). :mod:`flopcount.trace.fvcore_trace` attributes the counts to layers and
components.

Units. fvcore's own handles count ONE per multiply-add (``linear``: m*n*p) and skip
elementwise ops and attention; here a matmul is ``m*p*n`` mul + ``m*p*(n-1)`` add
(``m*p*(2n-1)`` FLOPs) plus the bias adds, so fvcore's default figure equals our ``mul``
count, and our FLOPs = 2 x fvcore - outputs (+ bias outputs). Elementwise ops cost their
primitives per output element.

Integer and boolean work (position ids, mask construction, tensor sizes traced as 0-d
tensors) is index arithmetic: 0 by the brief's rule "indexing ... 0". That is decided from
the traced dtypes: an arithmetic op costs nothing when none of its tensor inputs is floating
point. Memory movement (views, casts, cat, embedding lookup) and selection (``where``,
``masked_fill``) cost 0 too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import prod
from typing import Any

import torch

from flopcount.count import formulas as f
from flopcount.count.primitives import ZERO, OpCount

Handle = Callable[[list, list], "OpCount | dict[str, OpCount]"]
_FLOATING = {"Float", "Double", "Half", "BFloat16"}


class TraceError(RuntimeError):
    """The trace holds something the counter cannot price or place (never a silent zero)."""


def shape_of(value: Any) -> list[int]:
    """Static shape of a traced tensor value (the trace records complete shapes)."""
    if not isinstance(value.type(), torch._C.TensorType) or not value.isCompleteTensor():
        raise TraceError(f"traced value {value.debugName()} has no complete tensor shape")
    return list(value.type().sizes())


def is_floating(value: Any) -> bool:
    kind = value.type()
    return isinstance(kind, torch._C.TensorType) and kind.scalarType() in _FLOATING


def constant(value: Any) -> Any:
    """The Python value of a traced constant input (None for a ``None`` argument)."""
    return value.toIValue()


def _floating_work(inputs: list) -> bool:
    return any(is_floating(v) for v in inputs)


def elementwise(**per_element: int) -> Handle:
    """A handle charging ``per_element`` primitives for every output element of a floating
    point op, and nothing for integer/bool index arithmetic."""
    unit = OpCount(**per_element)

    def handle(inputs: list, outputs: list) -> OpCount:
        return unit * prod(shape_of(outputs[0])) if _floating_work(inputs) else ZERO

    return handle


def free(inputs: list, outputs: list) -> OpCount:
    """Memory movement, casts, indexing, selection: 0."""
    return ZERO


def add_or_sub(primitive: str) -> Handle:
    """``aten::add(a, b, alpha)``: one add (sub) per element, plus one mul if alpha != 1."""
    def handle(inputs: list, outputs: list) -> OpCount:
        if not _floating_work(inputs):
            return ZERO
        elements = prod(shape_of(outputs[0]))
        alpha = constant(inputs[2]) if len(inputs) > 2 else 1
        return OpCount(**{primitive: elements}) + (OpCount(mul=elements) if alpha != 1 else ZERO)

    return handle


def power(inputs: list, outputs: list) -> OpCount:
    """``x ** k``: k-1 mul for a whole k >= 1 (RMSNorm's square: 1 mul); sqrt for 0.5;
    otherwise ``exp(k * log x)``: log, mul, exp."""
    if not _floating_work(inputs):
        return ZERO
    elements, exponent = prod(shape_of(outputs[0])), constant(inputs[1])
    if isinstance(exponent, (int, float)) and float(exponent).is_integer() and exponent >= 1:
        return OpCount(mul=elements * (int(exponent) - 1))
    if exponent == 0.5:
        return OpCount(sqrt=elements)
    return OpCount(log=elements, mul=elements, exp=elements)


def reduction(with_division: bool) -> Handle:
    """``sum`` (k-1 add per output) or ``mean`` (k-1 add + 1 div) over k reduced elements."""
    def handle(inputs: list, outputs: list) -> OpCount:
        if not _floating_work(inputs):
            return ZERO
        outs = prod(shape_of(outputs[0]))
        reduced = prod(shape_of(inputs[0])) // outs
        return OpCount(add=outs * (reduced - 1), div=outs if with_division else 0)

    return handle


def running(primitive: str) -> Handle:
    """``cumsum`` / ``diff`` on floats: one add / sub per element."""
    return elementwise(**{primitive: 1})


def softmax(inputs: list, outputs: list) -> OpCount:
    """torch's stable softmax over ``dim``: per row max (cmp), subtract, exp, sum, divide."""
    shape = shape_of(inputs[0])
    length = shape[constant(inputs[1])]
    elements = prod(shape)
    return f.softmax(elements // length, elements, max_subtraction=True)


def _matmul_dims(a: list[int], b: list[int], out: list[int]) -> tuple[int, int, int, int]:
    """(batch, m, n, p) of a (possibly batched, broadcast, 1-D) matmul."""
    m = a[-2] if len(a) > 1 else 1
    n = a[-1]
    p = b[-1] if len(b) > 1 else 1
    return prod(out) // (m * p), m, n, p


def matmul(inputs: list, outputs: list) -> OpCount:
    """``aten::matmul`` / ``mm`` / ``bmm``: batch x ``matmul(m, n, p)``."""
    batch, m, n, p = _matmul_dims(shape_of(inputs[0]), shape_of(inputs[1]), shape_of(outputs[0]))
    return f.matmul(m, n, p) * batch


def linear(inputs: list, outputs: list) -> OpCount:
    """``aten::linear(x, W, b)``: rows x (in -> out) matmul, plus the bias adds if b is given."""
    x, weight = shape_of(inputs[0]), shape_of(inputs[1])
    has_bias = len(inputs) > 2 and isinstance(inputs[2].type(), torch._C.TensorType)
    return f.linear(prod(x) // x[-1], x[-1], weight[0], has_bias)


def addmm(inputs: list, outputs: list) -> OpCount:
    """``aten::addmm(bias, a, b)``: the matmul plus one add per output (scalings of 1)."""
    a, b, out = shape_of(inputs[1]), shape_of(inputs[2]), shape_of(outputs[0])
    return f.matmul(a[0], a[1], b[1]) + f.bias_add(out[0], out[1])


def dropout(inputs: list, outputs: list) -> OpCount:
    """Identity when ``p == 0`` or not training; real dropout is not modelled."""
    p, train = constant(inputs[1]), constant(inputs[2])
    if train and p > 0:
        raise TraceError(f"dropout with p={p} in training mode is not modelled; trace in eval mode")
    return ZERO


def scaled_dot_product_attention(inputs: list, outputs: list) -> dict[str, OpCount]:
    """The fused kernel priced as its reference math (the eager graph), per component.

    q ``(B, H, n, hd)``, k/v ``(B, Hkv, L, hd)`` (GQA kernels share k/v across heads, the
    work is per query head): scores ``n*L`` pairs per head with the scale (1 mul per score),
    one mask add per score when a mask or ``is_causal`` applies (the math backend adds a
    -inf mask), stable softmax, then probs @ v.
    """
    q, k, v = (shape_of(x) for x in inputs[:3])
    dropout_p, is_causal = constant(inputs[4]), constant(inputs[5])
    if dropout_p:
        raise TraceError(f"scaled_dot_product_attention with dropout_p={dropout_p} is not modelled")
    masked = is_causal or isinstance(inputs[3].type(), torch._C.TensorType)
    heads = prod(q[:-2])  # batch x query heads
    rows, pairs = heads * q[-2], heads * q[-2] * k[-2]
    return {
        "attn_scores": f.attention_scores(rows, pairs, q[-1]),
        "attn_mask": f.pointwise(pairs, "add") if masked else ZERO,
        "softmax": f.softmax(rows, pairs, max_subtraction=True),
        "attn_values": f.attention_values(rows, pairs, v[-1]),
    }


_FREE_OPS = (
    "size", "Int", "Float", "Bool", "ScalarImplicit", "item", "arange", "zeros", "zeros_like", "ones", "ones_like",
    "new_ones", "new_zeros", "full", "full_like", "empty", "view", "reshape", "transpose", "t", "numpy_T",
    "permute", "unsqueeze", "squeeze", "expand", "expand_as", "contiguous", "slice", "select", "index",
    "index_select", "gather", "cat", "stack", "split", "chunk", "narrow", "repeat_interleave", "to", "type_as",
    "detach", "clone", "copy_", "embedding", "where", "masked_fill", "__and__", "__or__", "bitwise_not",
    "logical_not", "logical_and", "logical_or", "alias", "lift_fresh",
)

OP_HANDLES: Mapping[str, Handle] = {
    **{f"aten::{name}": free for name in _FREE_OPS},
    "aten::add": add_or_sub("add"), "aten::add_": add_or_sub("add"),
    "aten::sub": add_or_sub("sub"), "aten::sub_": add_or_sub("sub"), "aten::rsub": add_or_sub("sub"),
    "aten::mul": elementwise(mul=1), "aten::mul_": elementwise(mul=1),
    "aten::div": elementwise(div=1), "aten::div_": elementwise(div=1), "aten::floor_divide": elementwise(div=1),
    "aten::neg": elementwise(neg=1),
    "aten::reciprocal": elementwise(inv=1),
    "aten::abs": elementwise(abs=1),
    "aten::relu": elementwise(relu=1),
    "aten::exp": elementwise(exp=1), "aten::log": elementwise(log=1),
    "aten::sin": elementwise(sin=1), "aten::cos": elementwise(cos=1),
    "aten::sqrt": elementwise(sqrt=1),
    "aten::rsqrt": elementwise(sqrt=1, div=1),
    "aten::sigmoid": elementwise(neg=1, exp=1, add=1, div=1),
    "aten::silu": elementwise(neg=1, exp=1, add=1, div=1, mul=1),
    **{f"aten::{name}": elementwise(cmp=1) for name in ("eq", "ne", "lt", "le", "gt", "ge", "maximum", "minimum")},
    "aten::pow": power,
    "aten::mean": reduction(with_division=True),
    "aten::sum": reduction(with_division=False),
    "aten::cumsum": running("add"),
    "aten::diff": running("sub"),
    "aten::softmax": softmax, "aten::_softmax": softmax,
    "aten::linear": linear,
    "aten::matmul": matmul, "aten::mm": matmul, "aten::bmm": matmul,
    "aten::addmm": addmm,
    "aten::dropout": dropout,
    "aten::scaled_dot_product_attention": scaled_dot_product_attention,
}
"""Every aten op the counter can price. An op missing here is an error in the trace."""
