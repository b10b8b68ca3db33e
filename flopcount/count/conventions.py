"""Counting conventions: every modelling choice of a FLOP count, named in one object.

Both conventions price primitives with the same table (:mod:`flopcount.count.primitives`) and
decompose matmuls, RMSNorm, SiLU and softmax the same way (:mod:`flopcount.count.formulas`); they
differ only in the choices below.

``COURSEWORK`` is the budget's rule book (the project brief): GQA counted as multi-head
attention, positional encodings free but added to the embeddings, masking free, lm_head on
every position, training step = 3 x forward.

``EXACT`` follows the module graph of the transformers Qwen2 implementation: real K/V width,
RoPE as the elementwise work it does on q and k (plus its cos/sin table), an additive causal
mask, softmax with max-subtraction, no positional add; it is the one checked against traces.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class Convention:
    """One counting convention. Each field is one documented choice.

    Attributes:
        name: identifier used in reports, the CLI and the ledger.
        gqa_as_mha: count k_proj/v_proj as wide as q_proj (``num_heads * head_dim``) instead of
            their real width ``num_kv_heads * head_dim``. Also widens LoRA on k/v and RoPE on k.
        positional_add: add a positional encoding to the token embeddings, one add per element
            (``tokens * hidden_size``, component ``pos_add``); computing the encoding is free.
        rope_elementwise: count rotary embedding applied to q and k per head vector of ``hd``:
            ``q*cos + rotate_half(q)*sin`` = hd/2 neg + 2*hd mul + hd add (never on v).
        rope_tables: count computing the cos/sin tables in ``Qwen2RotaryEmbedding``: per
            position hd/2 mul (position x inverse frequency), hd cos, hd sin, 2*hd mul (the
            ``attention_scaling`` factor, applied even when it is 1.0).
        causal_mask_add: count the additive causal mask, one add per attention score. When
            False, masking is treated as selection (which scores enter the softmax): free.
        softmax_max_subtraction: count the numerically stable softmax's running max
            (L-1 cmp per row) and the subtraction (L sub per row).
        bias_adds: count the bias add of projections that have a bias (one add per output).
        prefill_logits: lm_head positions during generation's prefill: ``"all"`` (every prompt
            position) or ``"last"`` (what HF ``generate`` computes: it passes
            ``logits_to_keep=1``). Decoding computes the last position only in both.
        backward_multiplier: backward pass = this x forward; a training step is
            ``(1 + backward_multiplier) x forward``.
        loss: price the cross-entropy (log-softmax over the vocabulary, the gather, the mean)
            at every position a training or validation forward scores (component ``loss``).
            Off in both shipped conventions (the brief does not count it); the ``+loss``
            variants turn it on, and the audit shows it apart.
    """

    name: str
    gqa_as_mha: bool
    positional_add: bool
    rope_elementwise: bool
    rope_tables: bool
    causal_mask_add: bool
    softmax_max_subtraction: bool
    bias_adds: bool
    prefill_logits: Literal["all", "last"]
    backward_multiplier: int = 2
    loss: bool = False

    def __post_init__(self) -> None:
        if self.prefill_logits not in ("all", "last"):
            raise ValueError(f"Convention {self.name!r}: prefill_logits must be 'all' or 'last', "
                             f"got {self.prefill_logits!r}")
        if isinstance(self.backward_multiplier, bool) or not isinstance(self.backward_multiplier, int) \
                or self.backward_multiplier < 0:
            raise ValueError(f"Convention {self.name!r}: backward_multiplier must be an int >= 0, "
                             f"got {self.backward_multiplier!r}")


COURSEWORK = Convention(
    name="coursework",
    gqa_as_mha=True,
    positional_add=True,
    rope_elementwise=False,
    rope_tables=False,
    causal_mask_add=False,
    softmax_max_subtraction=False,
    bias_adds=True,
    prefill_logits="all",
)

EXACT = Convention(
    name="exact",
    gqa_as_mha=False,
    positional_add=False,
    rope_elementwise=True,
    rope_tables=True,
    causal_mask_add=True,
    softmax_max_subtraction=True,
    bias_adds=True,
    prefill_logits="last",
)

COURSEWORK_WITH_LOSS = replace(COURSEWORK, name="coursework+loss", loss=True)
EXACT_WITH_LOSS = replace(EXACT, name="exact+loss", loss=True)

CONVENTIONS: dict[str, Convention] = {c.name: c for c in (COURSEWORK, EXACT, COURSEWORK_WITH_LOSS, EXACT_WITH_LOSS)}


def get_convention(convention: str | Convention) -> Convention:
    """Return the ``Convention`` named ``convention`` (or ``convention`` itself)."""
    if isinstance(convention, Convention):
        return convention
    try:
        return CONVENTIONS[convention]
    except (KeyError, TypeError):
        raise ValueError(f"unknown convention {convention!r}; choose one of: {', '.join(CONVENTIONS)}") from None
