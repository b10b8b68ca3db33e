"""Per-operation FLOP formulas: small functions that each return an ``OpCount``.

Each decomposition follows the transformers Qwen2 code (``modeling_qwen2.py``) op by op; the
trace validation (:mod:`flopcount.trace.fvcore_trace`) prices the same ops from a real model's trace.

Attention rows may have different lengths (a causal prefill, KV-cached decoding), so the
attention formulas take ``rows`` (query positions) and ``pairs``: the number of (query, key)
scores, summed over the rows. For ``n`` rows of ``L`` keys, ``pairs = n * L``.
"""

from __future__ import annotations

from flopcount.count.primitives import OpCount


def matmul(m: int, n: int, p: int) -> OpCount:
    """``(m x n) @ (n x p)``: each of the m*p outputs is n products summed by n-1 adds.

    ``m*p*n`` mul + ``m*p*(n-1)`` add = ``m*p*(2n-1)`` FLOPs. (fvcore's default handles count
    one per multiply-add, ``m*n*p``; torch's ``FlopCounterMode`` counts ``2*m*n*p``.)
    """
    return OpCount(mul=m * p * n, add=m * p * (n - 1))


def bias_add(rows: int, width: int) -> OpCount:
    """A bias added to ``rows`` outputs of ``width``: one add per output element."""
    return OpCount(add=rows * width)


def linear(rows: int, in_features: int, out_features: int, bias: bool) -> OpCount:
    """``nn.Linear`` on ``rows`` inputs: ``matmul(rows, in, out)`` (+ ``bias_add`` if ``bias``)."""
    count = matmul(rows, in_features, out_features)
    return count + bias_add(rows, out_features) if bias else count


def pointwise(elements: int, primitive: str) -> OpCount:
    """One ``primitive`` per element (residual add, SwiGLU's gate*up product, ...)."""
    return OpCount(**{primitive: elements})


def rmsnorm(tokens: int, width: int) -> OpCount:
    """Qwen2 RMSNorm on ``tokens`` vectors of ``width`` d. Per token, following HF::

        variance = x.pow(2).mean(-1)        d mul; d-1 add + 1 div
        x = x * rsqrt(variance + eps)       1 add; 1 sqrt + 1 div; d mul
        return weight * x                   d mul

    Total per token: 3d mul, d add, 2 div, 1 sqrt.
    """
    return OpCount(mul=3 * width * tokens, add=width * tokens, div=2 * tokens, sqrt=tokens)


def silu(elements: int) -> OpCount:
    """SiLU, ``x * sigmoid(x)`` with ``sigmoid(x) = 1 / (1 + exp(-x))``: per element
    1 neg, 1 exp, 1 add, 1 div, 1 mul (14 FLOPs)."""
    return OpCount(neg=elements, exp=elements, add=elements, div=elements, mul=elements)


def softmax(rows: int, elements: int, max_subtraction: bool) -> OpCount:
    """Softmax over ``rows`` rows holding ``elements`` values in total. Per row of length L:

    L exp, L-1 add (the sum), L div (normalise); with ``max_subtraction`` (the stable form
    torch implements) also L-1 cmp (the row max) and L sub (``x - max``).
    """
    count = OpCount(exp=elements, add=elements - rows, div=elements)
    if max_subtraction:
        count += OpCount(cmp=elements - rows, sub=elements)
    return count


def cross_entropy(rows: int, vocab: int) -> OpCount:
    """Mean cross-entropy of ``rows`` positions over a ``vocab``-wide output, as torch computes
    it (``log_softmax`` then ``nll_loss``). Per row: the stable log-softmax (V-1 cmp for the
    max, V sub, V exp, V-1 add for the sum, 1 log, V sub for ``x - max - log(sum)``), the gather
    of the target (free: indexing) and its negation (1 neg); then the mean over rows (rows-1
    add, 1 div)."""
    if rows == 0:
        return OpCount()
    per_row = OpCount(cmp=vocab - 1, sub=2 * vocab, exp=vocab, add=vocab - 1, log=1, neg=1)
    return per_row * rows + OpCount(add=rows - 1, div=1)


def attention_scores(rows: int, pairs: int, head_dim: int) -> OpCount:
    """One head's ``(q @ k^T) * scaling`` for ``pairs`` (query, key) scores.

    Each score is a dot product of ``head_dim`` (hd mul + hd-1 add) times the scale
    ``1/sqrt(head_dim)`` (1 mul). For n rows of L keys this is ``matmul(n, hd, L)`` plus
    ``n*L`` mul; the scale's multiplication is counted here, in ``attn_scores``.
    ``rows`` is unused (the count depends on the pairs only); it keeps one signature with
    the other attention formulas.
    """
    del rows
    return OpCount(mul=pairs * (head_dim + 1), add=pairs * (head_dim - 1))


def attention_values(rows: int, pairs: int, head_dim: int) -> OpCount:
    """One head's ``probs @ v``: each row's ``head_dim`` outputs sum L products.

    Per row of L keys: hd*L mul + hd*(L-1) add; for n rows of L keys, ``matmul(n, L, hd)``.
    """
    return OpCount(mul=head_dim * pairs, add=head_dim * (pairs - rows))


def rope(vectors: int, head_dim: int) -> OpCount:
    """Rotary embedding applied to ``vectors`` head vectors of ``head_dim`` (HF)::

        x * cos + rotate_half(x) * sin      rotate_half negates hd/2 elements

    per vector: hd/2 neg, 2*hd mul, hd add. Applied to q and k, never to v.
    """
    return OpCount(neg=vectors * (head_dim // 2), mul=vectors * 2 * head_dim, add=vectors * head_dim)


def rope_table(positions: int, head_dim: int) -> OpCount:
    """``Qwen2RotaryEmbedding.forward`` for ``positions`` positions::

        freqs = position * inv_freq          hd/2 mul
        emb = cat(freqs, freqs)              free (memory)
        cos = emb.cos() * attention_scaling  hd cos + hd mul
        sin = emb.sin() * attention_scaling  hd sin + hd mul
    """
    return OpCount(mul=positions * (head_dim // 2 + 2 * head_dim), cos=positions * head_dim,
                   sin=positions * head_dim)


def lora_update(tokens: int, in_features: int, out_features: int, rank: int) -> OpCount:
    """LoRA branch of ``lora.LoRALinear`` on ``tokens`` inputs, unmerged, no dropout op::

        base(x) + F.linear(F.linear(x, A), B) * scaling

    A: ``matmul(N, in, r)``; B: ``matmul(N, r, out)``; scale: N*out mul; add: N*out add.
    """
    return (matmul(tokens, in_features, rank) + matmul(tokens, rank, out_features)
            + OpCount(mul=tokens * out_features, add=tokens * out_features))
