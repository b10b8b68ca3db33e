"""The exact full-vocabulary loss of a frozen output layer whose rows take few distinct values.

A base pretrained with the compact head (:mod:`experiments.basemodel.compact_head`) keeps 14
distinct rows in its 151,936-row output layer. While that layer is frozen (LoRA trains only
the adapter), the next-token cross-entropy over the full vocabulary is, exactly,

    nats(t) = logsumexp_u(h·r_u + log c_u) − h·r_{g(t)}

over the distinct rows ``r_u`` with multiplicities ``c_u``, ``g(t)`` the group of the target
``t``: 14 dot products per position instead of 151,936, the same value and the same gradients
to float rounding.

Nothing is assumed: :func:`find_distinct_rows` groups the rows by an integer hash of their bit
patterns and then checks every row equals its group's representative bit for bit, and
:func:`distinct_rows_output` uses the result only for an output layer that is a plain
``nn.Linear`` without bias whose weight is frozen, when its rows collapse at least
``MIN_COMPACTION``-fold. Inside it the model's ``lm_head`` is a :class:`DistinctRowsHead` (its
logits are ``(B, T, U)``, one per distinct row); :func:`causal_lm_nats` then computes the loss
from them, and from full logits otherwise. For generation, ``full_logits=True`` computes the U
rows' logits and gathers them into the full ``(B, T, V)`` ones: the same values, without the
V x d product. FLOP charges never depend on it: the convention prices a full forward, and the
budget is charged from shapes, before the work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from experiments.training.loss import IGNORE_INDEX, shifted_targets, token_cross_entropy

MIN_COMPACTION = 4  # use the distinct rows only when they are at most a quarter of the rows
_HASH_SEED = 0x5EED


@dataclass(frozen=True)
class DistinctRows:
    """The rows of an output layer grouped exactly: ``rows`` ``(U, d)`` the distinct rows,
    ``counts`` int64 ``(U,)`` their multiplicities, ``row_of_token`` int64 ``(V,)`` the group
    of every token id."""

    rows: torch.Tensor
    counts: torch.Tensor
    row_of_token: torch.Tensor

    @property
    def n_distinct(self) -> int:
        return len(self.rows)

    @property
    def vocab_size(self) -> int:
        return len(self.row_of_token)


@torch.no_grad()
def find_distinct_rows(weight: torch.Tensor, max_distinct: int | None = None) -> DistinctRows | None:
    """Group the rows of ``weight`` ``(V, d)`` into bitwise-identical rows; None if there are
    more than ``max_distinct`` groups (None: no limit).

    Exact, never sampled: rows whose first elements differ are distinct, so more than
    ``max_distinct`` distinct first elements end the search at once (a weight of distinct
    rows costs one sort of V numbers). Otherwise rows are hashed from their bit patterns
    (wrapping integer arithmetic, so identical rows always hash alike), grouped by hash, and
    every row is compared with its group's first row; a hash collision between different
    rows (possible, never seen) falls back to an exact ``torch.unique`` over the rows.
    """
    bits = weight.detach().contiguous().view(_int_dtype(weight.dtype))  # (V, d), the same memory
    if max_distinct is not None and len(torch.unique(bits[:, 0])) > max_distinct:
        return None
    generator = torch.Generator(device="cpu").manual_seed(_HASH_SEED)
    multipliers = torch.randint(1, 2**62, (bits.shape[1],), generator=generator, dtype=torch.int64)
    hashes = bits.to(torch.int64) @ multipliers.to(bits.device)  # (V,), wrapping int64
    _, row_of_token, counts = torch.unique(hashes, return_inverse=True, return_counts=True)
    if max_distinct is not None and len(counts) > max_distinct:
        return None
    positions = torch.arange(len(bits), device=bits.device)
    first = torch.full((len(counts),), len(bits), dtype=torch.int64, device=bits.device)
    first = first.scatter_reduce(0, row_of_token, positions, "amin")  # (U,) first row of each group
    rows = weight.detach()[first]  # (U, d)
    if not torch.equal(bits, bits[first][row_of_token]):  # a collision: group exactly instead
        rows, row_of_token, counts = torch.unique(weight.detach(), dim=0, return_inverse=True, return_counts=True)
        if max_distinct is not None and len(counts) > max_distinct:
            return None
    return DistinctRows(rows=rows, counts=counts, row_of_token=row_of_token)


def _int_dtype(dtype: torch.dtype) -> torch.dtype:
    """The integer type of the same width, to read a float tensor's bit patterns."""
    return {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16,
            torch.float64: torch.int64}[dtype]


class DistinctRowsHead(nn.Module):
    """Stands in for a frozen ``lm_head`` inside :func:`distinct_rows_output`.

    Default: logits over the distinct rows, ``(B, T, U)``, each carrying ``+log(multiplicity)``,
    so that their log-sum-exp is the full layer's (for the loss, :meth:`token_cross_entropy`).
    ``full_logits``: the full ``(B, T, V)`` logits, each token its row's, computed from the U
    rows and gathered (for generation, whose processors and search read every token). The
    original layer is kept (not as a submodule) to be put back; the buffers are not
    persistent, so state dicts are unchanged."""

    def __init__(self, original: nn.Linear, distinct: DistinctRows, full_logits: bool = False) -> None:
        super().__init__()
        self.__dict__["original"] = original  # not a submodule: no parameters, nothing saved
        self.full_logits = full_logits
        self.register_buffer("rows", distinct.rows.clone(), persistent=False)  # (U, d)
        self.register_buffer("log_multiplicity", distinct.counts.to(distinct.rows.dtype).log(), persistent=False)
        self.register_buffer("row_of_token", distinct.row_of_token.clone(), persistent=False)  # (V,)
        # full logits: every token takes the largest group's logit, then the K others are written
        self.fill_row = int(distinct.counts.argmax())
        scattered = (distinct.row_of_token != self.fill_row).nonzero().squeeze(1)
        self.register_buffer("scattered_tokens", scattered, persistent=False)  # (K,)
        self.register_buffer("scattered_rows", distinct.row_of_token[scattered], persistent=False)  # (K,)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, U), or (B, T, V)
        logits = F.linear(hidden, self.rows)  # (B, T, U)
        if not self.full_logits:
            return logits + self.log_multiplicity
        full = logits.new_empty(*logits.shape[:-1], len(self.row_of_token))  # (B, T, V)
        full.copy_(logits[..., self.fill_row:self.fill_row + 1].expand_as(full))
        return full.index_copy_(-1, self.scattered_tokens, logits.index_select(-1, self.scattered_rows))

    def token_cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``experiments.training.loss.token_cross_entropy`` from this head's logits ``(B, T, U)``:
        the summed full-vocabulary nats (float32; float64 for float64 logits) over non-padding
        targets, and their count.
        A target in a group of ``c`` tokens holds ``1/c`` of its group's probability, so its
        nats are the group's plus ``log c`` (0 for the alphabet's own rows)."""
        targets = shifted_targets(labels).reshape(-1)  # (B*T,) full-vocabulary ids
        valid = targets != IGNORE_INDEX
        groups = torch.where(valid, self.row_of_token[targets.clamp_min(0)], IGNORE_INDEX)  # (B*T,)
        dtype = torch.promote_types(logits.dtype, torch.float32)  # float32, or float64 for a float64 model
        nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).to(dtype), groups, ignore_index=IGNORE_INDEX,
                               reduction="sum")
        nats = nats + self.log_multiplicity.to(dtype)[groups[valid]].sum()
        return nats, valid.sum()

    def extra_repr(self) -> str:
        return f"distinct_rows={len(self.rows)}, vocab_size={len(self.row_of_token)}"


def eligible_output_layer(model: nn.Module) -> nn.Linear | None:
    """The model's output layer if the distinct-rows loss may replace it: a plain ``nn.Linear``
    without bias (a LoRA layer or a trainable bias would change its rows), weight frozen, and
    no logit soft-capping or scaling in the config."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    config = getattr(model, "config", None)
    if type(head) is not nn.Linear or head.bias is not None or head.weight.requires_grad:
        return None
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None) not in (None, 1.0):
        return None
    return head


def _model(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # a DDP wrapper's model


def installed_head(model: nn.Module) -> DistinctRowsHead | None:
    """The :class:`DistinctRowsHead` that ``model`` (or the model a DDP wrapper holds) carries now."""
    head = getattr(_model(model), "lm_head", None)
    return head if isinstance(head, DistinctRowsHead) else None


@contextmanager
def distinct_rows_output(model: nn.Module, *, full_logits: bool = False) -> Iterator[DistinctRowsHead | None]:
    """Within the block, ``model.lm_head`` is a :class:`DistinctRowsHead` (``full_logits``: one
    that returns the full logits, for generation) if the output layer is eligible
    (:func:`eligible_output_layer`) and its rows collapse at least ``MIN_COMPACTION`` fold;
    yields the head, or None (model unchanged). Re-entrant: inside another such block of the
    same kind it changes nothing. The original layer is restored on exit."""
    model = _model(model)
    if installed_head(model) is not None:
        if installed_head(model).full_logits != full_logits:
            raise RuntimeError("the model already carries a distinct-rows head of the other kind")
        yield installed_head(model)
        return
    original = eligible_output_layer(model) if hasattr(model, "lm_head") else None
    distinct = None
    if original is not None:
        distinct = find_distinct_rows(original.weight, max_distinct=len(original.weight) // MIN_COMPACTION)
    if distinct is None:
        yield None
        return
    head = DistinctRowsHead(original, distinct, full_logits=full_logits)
    model.lm_head = head
    try:
        yield head
    finally:
        model.lm_head = original


def causal_lm_nats(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                   labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over the full vocabulary (nats, float32) of ``model`` on
    ``input_ids`` ``(B, T)`` and the number of targets scored (``labels`` ``(B, T)``, −100 where
    no loss is due): over the distinct rows inside :func:`distinct_rows_output`, else from
    the full logits. ``model`` may be DDP-wrapped: the forward goes through the wrapper."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, V), or (B, T, U)
    head = installed_head(model)
    if head is None or head.full_logits:
        return token_cross_entropy(logits, labels)
    return head.token_cross_entropy(logits, labels)


__all__ = [
    "MIN_COMPACTION", "DistinctRows", "DistinctRowsHead", "causal_lm_nats", "distinct_rows_output",
    "eligible_output_layer", "find_distinct_rows", "installed_head",
]
