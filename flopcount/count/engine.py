"""The counting engine: forward passes, training steps and generation.

``forward_flops`` runs the component table (:mod:`flopcount.count.components`) for one workload
and itemises the result by layer and component; ``training_step_flops`` charges
``(1 + backward_multiplier)`` forwards; ``generation_flops`` counts a prefill plus KV-cached
decoding in closed form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from flopcount.count.arguments import check_count, check_lora
from flopcount.count.components import LAYER_COMPONENTS, POST_COMPONENTS, PRE_COMPONENTS, CountContext, Workload
from flopcount.count.conventions import Convention, get_convention
from flopcount.count.flop_report import FlopEntry, FlopReport, GenerationReport
from flopcount.count.shape import ModelShape, model_shape

DEFAULT_LORA_TARGETS: tuple[str, ...] = ("q_proj", "v_proj")


def forward_flops(
    model: Any,
    seq_len: int,
    batch: int = 1,
    lora_rank: int = 0,
    convention: str | Convention = "coursework",
    *,
    lora_targets: Sequence[str] = DEFAULT_LORA_TARGETS,
    past_len: int = 0,
    logits: Literal["all", "last"] = "all",
    lm_head_bias: bool = False,
) -> FlopReport:
    """FLOPs of one forward pass of ``batch`` sequences of ``seq_len`` new tokens.

    Args:
        model: anything :func:`flopcount.model_shape` accepts (preset, config, model, ...).
        seq_len: new positions per sequence (tokens).
        batch: sequences.
        lora_rank: rank of the unmerged LoRA adapters on ``lora_targets`` (0: none).
        convention: ``"coursework"``, ``"exact"`` or a ``Convention``.
        lora_targets: projections carrying LoRA (HF names: q_proj, k_proj, v_proj, o_proj,
            gate_proj, up_proj, down_proj).
        past_len: positions already in the KV cache; each new token attends to
            ``past_len + seq_len`` keys (dense: causal masking does not skip work).
        logits: ``"all"`` positions through lm_head, or only the ``"last"`` one per sequence.
        lm_head_bias: count a trainable lm_head bias (``logit rows * vocab`` adds).
    """
    shape, conv = model_shape(model), get_convention(convention)
    check_count("seq_len", seq_len, minimum=1)
    check_count("batch", batch, minimum=1)
    check_count("past_len", past_len, minimum=0)
    if logits not in ("all", "last"):
        raise ValueError(f"logits must be 'all' or 'last', got {logits!r}")
    targets = check_lora(lora_rank, lora_targets)
    tokens = batch * seq_len
    work = Workload(
        tokens=tokens,
        score_pairs=tokens * (past_len + seq_len),
        logit_rows=tokens if logits == "all" else batch,
        rope_positions=seq_len,  # position ids (1, seq_len) are shared by the batch
    )
    return _count(shape, conv, work, lora_rank, targets, lm_head_bias, batch=batch, seq_len=seq_len,
                  past_len=past_len, logits=logits, phase="forward")


def training_step_flops(
    model: Any,
    batch: int,
    seq_len: int,
    lora_rank: int = 0,
    convention: str | Convention = "coursework",
    *,
    lora_targets: Sequence[str] = DEFAULT_LORA_TARGETS,
    lm_head_bias: bool = False,
) -> int:
    """FLOPs charged for one optimiser step on a ``batch x seq_len`` batch: the forward
    (lm_head on every position) times ``1 + backward_multiplier`` (3 in both conventions).
    This is exactly what ``Budget.charge_training_step`` charges."""
    conv = get_convention(convention)
    forward = forward_flops(model, seq_len, batch, lora_rank, conv, lora_targets=lora_targets,
                            lm_head_bias=lm_head_bias)
    return (1 + conv.backward_multiplier) * forward.total


def generation_flops(
    model: Any,
    prompt_len: int,
    new_tokens: int,
    samples: int = 1,
    batch: int = 1,
    lora_rank: int = 0,
    convention: str | Convention = "coursework",
    *,
    lora_targets: Sequence[str] = DEFAULT_LORA_TARGETS,
    lm_head_bias: bool = False,
) -> GenerationReport:
    """FLOPs of ``generate`` producing ``new_tokens`` tokens for each of ``samples`` samples
    of ``batch`` prompts of ``prompt_len`` tokens.

    HF expands the prompts to ``batch * samples`` sequences before the prefill. The prefill
    computes the first new token (lm_head positions per ``convention.prefill_logits``); then
    ``new_tokens - 1`` decoding steps each push one token per sequence, step ``i`` (from 1)
    attending to ``prompt_len + i`` cached keys, with lm_head on that token only. The steps
    are summed in closed form (an arithmetic series), not looped.
    """
    shape, conv = model_shape(model), get_convention(convention)
    check_count("prompt_len", prompt_len, minimum=1)
    check_count("new_tokens", new_tokens, minimum=1)
    check_count("samples", samples, minimum=1)
    check_count("batch", batch, minimum=1)
    targets = check_lora(lora_rank, lora_targets)
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
    common = dict(batch=sequences, lora_rank=lora_rank, targets=targets, lm_head_bias=lm_head_bias)
    prefill = _count(shape, conv, prefill_work, seq_len=prompt_len, past_len=0, logits=conv.prefill_logits,
                     phase="prefill", **common)
    decode = _count(shape, conv, decode_work, seq_len=steps, past_len=prompt_len, logits="last",
                    phase="decode", **common)
    return GenerationReport(prefill=prefill, decode=decode, prompt_len=prompt_len, new_tokens=new_tokens,
                            samples=samples, batch=batch)


def _count(shape: ModelShape, conv: Convention, work: Workload, lora_rank: int, targets: tuple[str, ...],
           lm_head_bias: bool, **meta: Any) -> FlopReport:
    ctx = CountContext(shape, conv, work, lora_rank, targets, lm_head_bias)
    # Decoder layers are identical: count one, repeat its entries for every layer index.
    layer = [(name, fn(ctx)) for name, fn in LAYER_COMPONENTS.items()]
    make = FlopEntry._make  # the tuple fast path: this loop is most of the counting time
    entries = (
        [FlopEntry(None, name, fn(ctx)) for name, fn in PRE_COMPONENTS.items()]
        + [make((i, name, count)) for i in range(shape.num_layers) for name, count in layer]
        + [FlopEntry(None, name, fn(ctx)) for name, fn in POST_COMPONENTS.items()]
    )
    return FlopReport(entries=tuple(entries), model=shape.name, num_layers=shape.num_layers,
                      convention=conv.name, lora_rank=lora_rank, lora_targets=targets,
                      lm_head_bias=lm_head_bias, **meta)
