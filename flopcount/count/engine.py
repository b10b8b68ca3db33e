"""The counting engine: forward passes, training steps and generation.

``forward_flops`` runs the component table (:mod:`flopcount.count.components`) for one workload
and itemises the result by layer and component; ``training_step_flops`` charges
``(1 + backward_multiplier)`` forwards; ``generation_flops`` counts a prefill plus KV-cached
decoding in closed form.
"""

from __future__ import annotations

from typing import Any, Literal

from flopcount.count.arguments import check_count
from flopcount.count.components import LAYER_COMPONENTS, POST_COMPONENTS, PRE_COMPONENTS, CountContext, Workload
from flopcount.count.flop_report import FlopEntry, FlopReport, GenerationReport
from flopcount.count.setup import CountSetup, as_setup
from flopcount.count.shape import check_window


def forward_flops(
    setup: CountSetup | Any,
    seq_len: int,
    batch: int = 1,
    *,
    past_len: int = 0,
    logits: Literal["all", "last"] = "all",
    rope_positions: int | None = None,
) -> FlopReport:
    """FLOPs of one forward pass of ``batch`` sequences of ``seq_len`` new tokens.

    Args:
        setup: the ``CountSetup`` (model shape, convention, LoRA), or a model alone
            (anything :func:`flopcount.model_shape` accepts: coursework, no LoRA).
        seq_len: new positions per sequence (tokens).
        batch: sequences.
        past_len: positions already in the KV cache; each new token attends to
            ``past_len + seq_len`` keys (dense: causal masking does not skip work).
        logits: ``"all"`` positions through lm_head, or only the ``"last"`` one per sequence.
        rope_positions: positions whose rotary table is computed: ``seq_len`` (the default) when
            the batch shares its position ids, ``batch * seq_len`` when each sequence has its own
            (``generate`` passes them so).
    """
    setup = as_setup(setup)
    check_count("seq_len", seq_len, minimum=1)
    check_count("batch", batch, minimum=1)
    check_count("past_len", past_len, minimum=0)
    rope_positions = seq_len if rope_positions is None else rope_positions
    check_count("rope_positions", rope_positions, minimum=1)
    if logits not in ("all", "last"):
        raise ValueError(f"logits must be 'all' or 'last', got {logits!r}")
    check_window(setup.shape, past_len + seq_len)
    tokens = batch * seq_len
    work = Workload(
        tokens=tokens,
        score_pairs=tokens * (past_len + seq_len),
        logit_rows=tokens if logits == "all" else batch,
        rope_positions=rope_positions,
        loss_rows=tokens if logits == "all" else 0,  # a forward over every position is a scored one
    )
    return _count(setup, work, batch=batch, seq_len=seq_len, past_len=past_len, logits=logits, phase="forward")


def training_step_flops(setup: CountSetup | Any, batch: int, seq_len: int, *, rope_positions: int | None = None) -> int:
    """FLOPs charged for one optimiser step on a ``batch x seq_len`` batch: the forward
    (lm_head on every position) times ``1 + backward_multiplier`` (3 in both conventions).
    This is exactly what ``Budget.charge_training_step`` charges (``rope_positions``: as for
    :func:`forward_flops`)."""
    setup = as_setup(setup)
    forward = forward_flops(setup, seq_len, batch, rope_positions=rope_positions).total
    return (1 + setup.convention.backward_multiplier) * forward


def generation_flops(
    setup: CountSetup | Any,
    prompt_len: int,
    new_tokens: int,
    samples: int = 1,
    batch: int = 1,
) -> GenerationReport:
    """FLOPs of ``generate`` producing ``new_tokens`` tokens for each of ``samples`` samples
    of ``batch`` prompts of ``prompt_len`` tokens.

    HF expands the prompts to ``batch * samples`` sequences before the prefill. The prefill
    computes the first new token (lm_head positions per ``convention.prefill_logits``); then
    ``new_tokens - 1`` decoding steps each push one token per sequence, step ``i`` (from 1)
    attending to ``prompt_len + i`` cached keys, with lm_head on that token only. The steps
    are summed in closed form (an arithmetic series), not looped.
    """
    setup = as_setup(setup)
    conv = setup.convention
    check_count("prompt_len", prompt_len, minimum=1)
    check_count("new_tokens", new_tokens, minimum=1)
    check_count("samples", samples, minimum=1)
    check_count("batch", batch, minimum=1)
    check_window(setup.shape, prompt_len + new_tokens - 1)
    sequences = batch * samples
    prefill_tokens = sequences * prompt_len
    prefill_work = Workload(
        tokens=prefill_tokens,
        score_pairs=prefill_tokens * prompt_len,
        logit_rows=prefill_tokens if conv.prefill_logits == "all" else sequences,
        rope_positions=prefill_tokens,  # generate() passes per-sequence position ids
    )
    steps = new_tokens - 1
    decode_tokens = sequences * steps
    decode_work = Workload(
        tokens=decode_tokens,
        score_pairs=sequences * (steps * prompt_len + steps * (steps + 1) // 2),
        logit_rows=decode_tokens,
        rope_positions=decode_tokens,
    )
    prefill = _count(setup, prefill_work, batch=sequences, seq_len=prompt_len, past_len=0,
                     logits=conv.prefill_logits, phase="prefill")
    decode = _count(setup, decode_work, batch=sequences, seq_len=steps, past_len=prompt_len, logits="last",
                    phase="decode")
    return GenerationReport(prefill=prefill, decode=decode, prompt_len=prompt_len, new_tokens=new_tokens,
                            samples=samples, batch=batch)


def _count(setup: CountSetup, work: Workload, **meta: Any) -> FlopReport:
    ctx = CountContext(setup, work)
    # Decoder layers are identical: count one, repeat its entries for every layer index.
    layer = [(name, fn(ctx)) for name, fn in LAYER_COMPONENTS.items()]
    make = FlopEntry._make  # the tuple fast path: this loop is most of the counting time
    entries = (
        [FlopEntry(None, name, fn(ctx)) for name, fn in PRE_COMPONENTS.items()]
        + [make((i, name, count)) for i in range(setup.shape.num_layers) for name, count in layer]
        + [FlopEntry(None, name, fn(ctx)) for name, fn in POST_COMPONENTS.items()]
    )
    return FlopReport(entries=tuple(entries), setup=setup, **meta)
