"""Sampling the next token without ``torch.multinomial`` over the whole vocabulary.

``generate(do_sample=True)`` draws each token with ``torch.multinomial`` over all 151,936
probabilities of every row: about 3 s per decoding step for 200 rows on one CPU core,
whatever the grammar allows. :class:`GumbelMaxSampler` draws from the same distribution —
softmax of the scores over ``temperature``, cut to the ``top_p`` nucleus — by the Gumbel-max
trick (``argmax(logits + G)``, ``G`` standard Gumbel, is a draw from ``softmax(logits)``),
drawing noise only for the columns some row can still choose (under the LLMTIME grammar: 14).
It writes the scores in place (only those columns), leaving the drawn token alone finite, so
``generate`` runs greedy over them: the same decoding loop, KV cache, stopping criteria and
FLOP charge.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class GumbelMaxSampler(LogitsProcessor):
    """Draw one token per row from ``softmax(scores / temperature)`` restricted to the ``top_p``
    nucleus; scores are ``(rows, vocab)``. Goes last in the processor list (after the grammar,
    so the nucleus is taken among grammatical tokens). Uses the global torch RNG of the scores'
    device: seed it (the forecaster does, per batch) for reproducible draws."""

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0) -> None:
        if not (temperature > 0 and 0 < top_p <= 1):
            raise ValueError(f"need temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        columns = (scores.amax(dim=0) > float("-inf")).nonzero().squeeze(1)  # (c,) tokens some row may choose
        logits = scores[:, columns].float() / self.temperature  # (rows, c)
        if self.top_p < 1:
            logits = nucleus(logits, self.top_p)
        uniform = torch.rand_like(logits).clamp_(min=torch.finfo(logits.dtype).tiny)
        drawn = (logits - torch.log(-torch.log(uniform))).argmax(dim=1)  # (rows,) Gumbel-max, index into columns
        chosen = torch.full_like(logits, float("-inf")).to(scores.dtype)
        chosen[torch.arange(len(drawn), device=drawn.device), drawn] = 0.0
        scores[:, columns] = chosen  # in place: only the c columns some row could choose are written
        return scores


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """``logits`` ``(rows, c)`` with every token outside the nucleus set to ``-inf``: the most
    likely tokens whose probabilities first sum to at least ``top_p`` (always at least one)."""
    ordered, order = logits.sort(dim=1, descending=True)
    before = ordered.softmax(dim=1).cumsum(dim=1) - ordered.softmax(dim=1)  # mass of the likelier tokens
    outside = before >= top_p
    outside[:, 0] = False
    return logits.masked_fill(outside.scatter(1, order, outside), float("-inf"))
