"""The component table: one small function per named component, one signature.

Each function takes a ``CountContext`` (model shape, convention, workload, LoRA) and returns
the ``OpCount`` of that component for ONE decoder layer (``LAYER_COMPONENTS``) or for the
parts outside the layers (``PRE_COMPONENTS``: before the first layer; ``POST_COMPONENTS``:
after the last). :func:`flopcount.count.engine.forward_flops` is the engine that runs the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flopcount.count import formulas as f
from flopcount.count.conventions import Convention
from flopcount.count.primitives import ZERO, OpCount
from flopcount.count.shape import ModelShape

if TYPE_CHECKING:
    from flopcount.count.setup import CountSetup

COMPONENTS: tuple[str, ...] = (
    "embed", "pos_add", "input_norm", "q_proj", "k_proj", "v_proj", "qk_norm", "rope", "attn_scores",
    "attn_mask", "softmax", "attn_values", "o_proj", "attn_residual", "post_attn_norm",
    "mlp_gate", "mlp_up", "mlp_act", "mlp_mul", "mlp_down", "mlp_residual", "final_norm",
    "lm_head", "lora", "loss",
)
"""All component names, in report order. A component a convention lacks counts 0."""

PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers of a decoder layer (HF module names); any subset can carry LoRA."""

MATMUL_COMPONENTS: frozenset[str] = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "mlp_gate", "mlp_up", "mlp_down", "attn_scores",
     "attn_values", "lm_head", "lora"})
"""Components whose work is (mostly) matrix products; the trace must match them exactly."""


@dataclass(frozen=True)
class Workload:
    """What one count covers, summed over all sequences of the batch.

    Attributes:
        tokens: positions pushed through every decoder layer.
        score_pairs: (query, key) attention scores per head; a row attends to every cached
            and new key (causal masking does not skip the dense work).
        logit_rows: positions whose logits lm_head computes.
        rope_positions: positions whose rotary cos/sin table is computed (a plain forward
            shares one ``(1, seq_len)`` table across the batch).
    """

    tokens: int
    score_pairs: int
    logit_rows: int
    rope_positions: int
    loss_rows: int = 0  # positions the loss is computed at (training and validation forwards)


@dataclass(frozen=True)
class CountContext:
    """Everything a component function reads: the count setup and the workload."""

    setup: CountSetup
    work: Workload

    @property
    def shape(self) -> ModelShape:
        return self.setup.shape

    @property
    def convention(self) -> Convention:
        return self.setup.convention

    def projection(self, name: str) -> tuple[int, int, bool]:
        """``(in_features, out_features, counted_bias)`` of a projection under the convention."""
        s, conv = self.shape, self.convention
        kv_width = s.q_width if conv.gqa_as_mha else s.kv_width
        in_f, out_f, bias = {
            "q_proj": (s.hidden_size, s.q_width, s.qkv_bias),
            "k_proj": (s.hidden_size, kv_width, s.qkv_bias),
            "v_proj": (s.hidden_size, kv_width, s.qkv_bias),
            "o_proj": (s.q_width, s.hidden_size, s.o_bias),
            "gate_proj": (s.hidden_size, s.intermediate_size, s.mlp_bias),
            "up_proj": (s.hidden_size, s.intermediate_size, s.mlp_bias),
            "down_proj": (s.intermediate_size, s.hidden_size, s.mlp_bias),
        }[name]
        return in_f, out_f, bias and conv.bias_adds

    @property
    def kv_heads(self) -> int:
        """Key/value heads as counted: ``num_heads`` when GQA is counted as MHA."""
        return self.shape.num_heads if self.convention.gqa_as_mha else self.shape.num_kv_heads


ComponentFn = Callable[[CountContext], OpCount]


def _projection(module: str) -> ComponentFn:
    def count(ctx: CountContext) -> OpCount:
        return f.linear(ctx.work.tokens, *ctx.projection(module))

    count.__name__ = f"count_{module}"
    return count


def count_pos_add(ctx: CountContext) -> OpCount:
    """Coursework: positional encoding added to the embeddings, ``tokens * d`` adds."""
    return f.pointwise(ctx.work.tokens * ctx.shape.hidden_size, "add") if ctx.convention.positional_add else ZERO


def count_rope_table(ctx: CountContext) -> OpCount:
    """Exact: the cos/sin table, computed once per forward before the layers."""
    return f.rope_table(ctx.work.rope_positions, ctx.shape.head_dim) if ctx.convention.rope_tables else ZERO


def count_norm(ctx: CountContext) -> OpCount:
    return f.rmsnorm(ctx.work.tokens, ctx.shape.hidden_size)


def count_qk_norm(ctx: CountContext) -> OpCount:
    """Qwen3: RMSNorm over every query head and every key head (``hd`` wide) of every token,
    before RoPE (keys as wide as queries when GQA is counted as MHA)."""
    if not ctx.shape.qk_norm:
        return ZERO
    return f.rmsnorm(ctx.work.tokens * (ctx.shape.num_heads + ctx.kv_heads), ctx.shape.head_dim)


def count_rope(ctx: CountContext) -> OpCount:
    """Exact: RoPE on every q head and every (real) k head of every token; never on v."""
    if not ctx.convention.rope_elementwise:
        return ZERO
    return f.rope(ctx.work.tokens * (ctx.shape.num_heads + ctx.kv_heads), ctx.shape.head_dim)


def count_attn_scores(ctx: CountContext) -> OpCount:
    """``num_heads`` heads of scaled ``q @ k^T`` (GQA shares k across heads, not the work)."""
    w = ctx.work
    return f.attention_scores(w.tokens, w.score_pairs, ctx.shape.head_dim) * ctx.shape.num_heads


def count_attn_mask(ctx: CountContext) -> OpCount:
    """Exact: the additive causal mask, one add per score; coursework: selection, free."""
    return f.pointwise(ctx.work.score_pairs * ctx.shape.num_heads, "add") if ctx.convention.causal_mask_add else ZERO


def count_softmax(ctx: CountContext) -> OpCount:
    heads = ctx.shape.num_heads
    return f.softmax(ctx.work.tokens * heads, ctx.work.score_pairs * heads, ctx.convention.softmax_max_subtraction)


def count_attn_values(ctx: CountContext) -> OpCount:
    w = ctx.work
    return f.attention_values(w.tokens, w.score_pairs, ctx.shape.head_dim) * ctx.shape.num_heads


def count_residual(ctx: CountContext) -> OpCount:
    return f.pointwise(ctx.work.tokens * ctx.shape.hidden_size, "add")


def count_mlp_act(ctx: CountContext) -> OpCount:
    return f.silu(ctx.work.tokens * ctx.shape.intermediate_size)


def count_mlp_mul(ctx: CountContext) -> OpCount:
    """SwiGLU: ``act(gate) * up``, one mul per MLP element."""
    return f.pointwise(ctx.work.tokens * ctx.shape.intermediate_size, "mul")


def count_lora(ctx: CountContext) -> OpCount:
    """Every LoRA target's unmerged update, with the target's widths under the convention."""
    rank = ctx.setup.lora_rank
    if not rank:
        return ZERO
    updates = (f.lora_update(ctx.work.tokens, *ctx.projection(t)[:2], rank) for t in ctx.setup.lora_targets)
    return OpCount.total_of(updates)


def count_lm_head(ctx: CountContext) -> OpCount:
    """``logit_rows`` positions times the (tied or untied) output matrix, plus the optional
    trainable bias (``logit_rows * vocab`` adds)."""
    bias = ctx.setup.lm_head_bias and ctx.convention.bias_adds
    return f.linear(ctx.work.logit_rows, ctx.shape.hidden_size, ctx.shape.vocab_size, bias)


def count_loss(ctx: CountContext) -> OpCount:
    """The cross-entropy at every scored position, when the convention prices the loss."""
    if not ctx.convention.loss:
        return ZERO
    return f.cross_entropy(ctx.work.loss_rows, ctx.shape.vocab_size)


def count_nothing(ctx: CountContext) -> OpCount:
    """Embedding lookup is indexing: 0 by the brief's rules."""
    return ZERO


PRE_COMPONENTS: dict[str, ComponentFn] = {
    "embed": count_nothing,
    "pos_add": count_pos_add,
    "rope": count_rope_table,
}

LAYER_COMPONENTS: dict[str, ComponentFn] = {
    "input_norm": count_norm,
    "q_proj": _projection("q_proj"),
    "k_proj": _projection("k_proj"),
    "v_proj": _projection("v_proj"),
    "qk_norm": count_qk_norm,
    "rope": count_rope,
    "attn_scores": count_attn_scores,
    "attn_mask": count_attn_mask,
    "softmax": count_softmax,
    "attn_values": count_attn_values,
    "o_proj": _projection("o_proj"),
    "attn_residual": count_residual,
    "post_attn_norm": count_norm,
    "mlp_gate": _projection("gate_proj"),
    "mlp_up": _projection("up_proj"),
    "mlp_act": count_mlp_act,
    "mlp_mul": count_mlp_mul,
    "mlp_down": _projection("down_proj"),
    "mlp_residual": count_residual,
    "lora": count_lora,
}

POST_COMPONENTS: dict[str, ComponentFn] = {
    "final_norm": count_norm,
    "lm_head": count_lm_head,
    "loss": count_loss,
}
