"""``ForwardWork``: what one forward call of a causal LM will compute, read from its real inputs.

A forward is priced from the tensors it is about to receive, never from declared sizes:

- ``input_ids`` (batch × tokens) or ``inputs_embeds`` (batch × tokens × hidden): the new
  positions (padding included: attention is dense, a padded position costs what a real one does);
- ``cache`` (``past_key_values``): positions already cached, attended to by every new token;
- ``logits_to_keep`` (``num_logits_to_keep``): 1 is lm_head on the last position only (what
  ``generate`` asks), 0 on every position; any other value is priced as every position (an
  upper bound);
- the mode: a forward with gradients enabled is a training forward, charged with its backward
  (:func:`flopcount.training_step_flops`, 3 × forward); without gradients it is a forward only,
  ``validation`` when it scores every position of a fresh sequence, ``generation`` otherwise
  (a cache or the last logits only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from flopcount.count.engine import forward_flops, training_step_flops
from flopcount.count.setup import CountSetup

Phase = Literal["train", "validation", "generation"]


class UnpricedForward(ValueError):
    """A forward whose work cannot be read from its inputs; refused before it runs."""


@dataclass(frozen=True)
class ForwardWork:
    """The work of one forward call (tokens are positions, padding included).

    Attributes:
        phase: ``train`` (forward + backward), ``validation`` or ``generation`` (forward only).
        batch: sequences.
        seq_len: new positions per sequence.
        past_len: cached positions each new token also attends to.
        logits: ``"all"`` positions through lm_head, or the ``"last"`` one per sequence.
        own_positions: each sequence has its own position ids (rotary tables per sequence).
    """

    phase: Phase
    batch: int
    seq_len: int
    past_len: int = 0
    logits: Literal["all", "last"] = "all"
    own_positions: bool = False

    @property
    def tokens(self) -> int:
        """New positions of the call, every sequence together (tokens)."""
        return self.batch * self.seq_len

    def flops(self, setup: CountSetup) -> int:
        """FLOPs the call costs under ``setup``: ``training_step_flops`` for a training forward
        (its backward included), ``forward_flops`` otherwise; a generation's prefill (no cache,
        last logits) is priced as ``generation_flops`` prices it (lm_head positions per
        ``convention.prefill_logits``)."""
        rope = self.batch * self.seq_len if self.own_positions else self.seq_len
        if self.phase == "train":
            return training_step_flops(setup, self.batch, self.seq_len, rope_positions=rope)
        logits = self.logits
        if self.phase == "generation" and not self.past_len:
            logits = setup.convention.prefill_logits
        return forward_flops(setup, self.seq_len, self.batch, past_len=self.past_len, logits=logits,
                             rope_positions=rope).total


def read_forward(args: tuple[Any, ...], kwargs: dict[str, Any], *, grad: bool) -> ForwardWork:
    """The ``ForwardWork`` of ``model(*args, **kwargs)`` (a transformers causal LM call) run with
    gradients enabled (``grad``) or not; ``UnpricedForward`` when its size cannot be read."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is not None:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise UnpricedForward(f"cannot price a forward whose input_ids are {_describe(ids)}; expected a "
                                  "(batch, tokens) tensor")
        batch, seq_len = ids.shape
    else:
        embeds = kwargs.get("inputs_embeds")
        if not isinstance(embeds, torch.Tensor) or embeds.dim() != 3:
            raise UnpricedForward("cannot price a forward without input_ids or inputs_embeds (batch, tokens[, "
                                  f"hidden]); got input_ids=None, inputs_embeds={_describe(embeds)}")
        batch, seq_len = embeds.shape[:2]
    batch, seq_len = int(batch), int(seq_len)
    if batch == 0 or seq_len == 0:
        raise UnpricedForward(f"cannot price an empty forward ({batch} sequences of {seq_len} tokens)")
    cache = kwargs.get("cache")  # transformers >= 5.x; past_key_values before
    past_len = cached_positions(cache if cache is not None else kwargs.get("past_key_values"))
    keep = kwargs.get("logits_to_keep", kwargs.get("num_logits_to_keep", 0))
    logits: Literal["all", "last"] = "last" if isinstance(keep, int) and keep == 1 else "all"
    positions = kwargs.get("position_ids")
    own = isinstance(positions, torch.Tensor) and positions.dim() == 2 and positions.shape[0] > 1
    if grad:
        if past_len or logits == "last":
            raise UnpricedForward(f"a forward with gradients on a cache of {past_len} positions or with "
                                  f"logits_to_keep={keep!r} is not a training step the count prices")
        return ForwardWork("train", batch, seq_len, own_positions=own)
    phase: Phase = "generation" if past_len or logits == "last" else "validation"
    return ForwardWork(phase, batch, seq_len, past_len, logits, own)


def cached_positions(past_key_values: Any) -> int:
    """Positions held in a KV cache (a transformers ``Cache`` or the legacy tuple), 0 for none."""
    if past_key_values is None:
        return 0
    if hasattr(past_key_values, "get_seq_length"):
        return int(past_key_values.get_seq_length())
    try:
        return int(past_key_values[0][0].shape[-2])
    except (TypeError, IndexError, AttributeError):
        raise UnpricedForward(f"cannot read the cached positions of past_key_values={_describe(past_key_values)}") \
            from None


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return "None" if value is None else f"a {type(value).__name__}"
