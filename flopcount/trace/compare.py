"""Comparison tables: the analytic ``exact`` count against the traced count, layer by layer
and component by component, and the ``coursework`` convention against ``exact``.

Units: both sides are FLOPs priced by the same primitive table. fvcore's own default count
(one per multiply-add) is shown next to the matmul components: it must equal our ``mul``
count, i.e. our FLOPs = 2 x fvcore - outputs (+ bias adds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from flopcount.count.components import MATMUL_COMPONENTS, PROJECTIONS
from flopcount.count.engine import forward_flops
from flopcount.count.formatting import format_table
from flopcount.count.flop_report import FlopReport
from flopcount.count.conventions import COURSEWORK, EXACT
from flopcount.count.setup import CountSetup, as_setup
from flopcount.count.shape import model_shape
from flopcount.trace.fvcore_trace import TracedFlops, trace_flops
from flopcount.trace.hooks import setup_of

HOW_TRACED: dict[str, str] = {
    "embed": "aten::embedding: a lookup, 0",
    "pos_add": "no positional add in the real graph (RoPE instead)",
    "rope": "layer: apply_rotary_pos_emb on q and k (neg, mul, add); pre: rotary_emb table (mul, cos, sin, mul)",
    "input_norm": "RMSNorm: pow, mean, add eps, rsqrt, 2 mul",
    "post_attn_norm": "RMSNorm: pow, mean, add eps, rsqrt, 2 mul",
    "qk_norm": "Qwen3 q_norm / k_norm: RMSNorm over each head (hd wide)",
    "final_norm": "RMSNorm: pow, mean, add eps, rsqrt, 2 mul",
    "attn_scores": "q @ k^T matmul + the scale mul (sdpa: priced as its reference math)",
    "attn_mask": "additive causal mask: 1 add per score",
    "softmax": "stable softmax: max (cmp), sub, exp, sum (add), div",
    "attn_values": "probs @ v matmul",
    "attn_residual": "aten::add",
    "mlp_residual": "aten::add",
    "mlp_act": "aten::silu: neg, exp, add, div, mul",
    "mlp_mul": "act(gate) * up: aten::mul",
    "lm_head": "aten::linear on every position",
    "lora": "F.linear(x, A), F.linear(., B), scale mul, add",
    "loss": "not traced: the models return logits; only the +loss conventions price the cross-entropy",
    **dict.fromkeys(("q_proj", "k_proj", "v_proj", "o_proj", "mlp_gate", "mlp_up", "mlp_down"),
                    "aten::linear: m*p*(2n-1) + bias adds"),
}

WHY_COURSEWORK_DIFFERS: dict[str, str] = {
    "pos_add": "coursework adds a positional encoding to the embeddings (n*d adds); the real model uses RoPE",
    "k_proj": "coursework counts GQA as multi-head attention: k_proj as wide as q_proj",
    "v_proj": "coursework counts GQA as multi-head attention: v_proj as wide as q_proj",
    "rope": "coursework: positional encodings are free; exact: RoPE on q and k plus the cos/sin table",
    "attn_mask": "coursework treats causal masking as selection (free); exact adds the -inf mask",
    "softmax": "exact also counts the max (cmp) and the subtraction of the stable softmax",
    "lora": "LoRA on k/v targets is as wide as q under coursework",
    "qk_norm": "coursework counts GQA as multi-head attention: a k_norm per query head",
    "lm_head": "prefill logits: coursework every position, exact (HF generate) the last one",
}


@dataclass(frozen=True)
class ComparisonRow:
    """One (place, component): analytic vs traced FLOPs, and fvcore's own count."""

    place: str
    component: str
    analytic: int
    traced: int
    fvcore_macs: int | None
    traced_matmul_muls: int | None
    explanation: str

    @property
    def difference(self) -> int:
        return self.traced - self.analytic

    @property
    def macs_match(self) -> bool | None:
        """fvcore's default count of the matmul ops equals our mul count of the same ops
        (None: no matmul op here)."""
        return None if self.fvcore_macs is None else self.fvcore_macs == self.traced_matmul_muls


@dataclass(frozen=True)
class ComparisonTable:
    """Analytic ``exact`` vs traced, for one model and input shape."""

    title: str
    rows: tuple[ComparisonRow, ...]

    def layer_totals(self) -> dict[str, tuple[int, int]]:
        """(analytic, traced) FLOPs per place: ``"pre"``, layer indices, ``"post"``."""
        totals: dict[str, tuple[int, int]] = {}
        for row in self.rows:
            a, t = totals.get(row.place, (0, 0))
            totals[row.place] = (a + row.analytic, t + row.traced)
        return totals

    def max_layer_error(self) -> float:
        """Largest relative difference of a place's total (0.0 = all equal)."""
        return max(abs(t - a) / a if a else float(t != 0) for a, t in self.layer_totals().values())

    def matmul_rows(self) -> list[ComparisonRow]:
        return [r for r in self.rows if r.component in MATMUL_COMPONENTS]

    def unexplained(self) -> list[ComparisonRow]:
        return [r for r in self.rows if "UNEXPLAINED" in r.explanation]

    def to_markdown(self, skip_zero: bool = True) -> str:
        """The component table (rows where both sides are 0 skipped) and the place totals."""
        rows = [[r.place, r.component, f"{r.analytic:,}", f"{r.traced:,}", f"{r.difference:+,}",
                 "" if r.fvcore_macs is None else f"{r.fvcore_macs:,}", r.explanation]
                for r in self.rows if not (skip_zero and r.analytic == r.traced == 0)]
        totals = [[place, f"{a:,}", f"{t:,}", f"{t - a:+,}", f"{100 * (t - a) / a:+.4f}%" if a else "-"]
                  for place, (a, t) in self.layer_totals().items()]
        return "\n".join([
            f"### {self.title}", "",
            format_table(["layer", "component", "analytic exact", "traced", "difference", "fvcore default (MACs)",
                          "explanation"], rows, markdown=True), "",
            format_table(["layer", "analytic exact", "traced", "difference", "relative"], totals, markdown=True),
        ])

    def __str__(self) -> str:
        return self.to_markdown()


def compare_reports(analytic: FlopReport, traced: TracedFlops, title: str) -> ComparisonTable:
    """Row by row comparison of two reports with the same places and components."""
    rows = []
    for a, t in zip(analytic.entries, traced.report.entries, strict=True):
        if (a.layer, a.component) != (t.layer, t.component):
            raise ValueError(f"reports are not aligned: {(a.layer, a.component)} vs {(t.layer, t.component)}")
        place = str(a.layer) if a.layer is not None else ("post" if a.component in ("final_norm", "lm_head", "loss")
                                                           else "pre")
        macs = traced.fvcore_macs.get((a.layer, a.component))
        muls = traced.matmul_muls.get((a.layer, a.component))
        matched = a.count.flops == t.count.flops
        explanation = HOW_TRACED[a.component] if matched else \
            f"UNEXPLAINED: traced {t.count.as_dict(nonzero=True)} vs analytic {a.count.as_dict(nonzero=True)}"
        if macs is not None:
            explanation += "; fvcore MACs = our matmul mul count" if macs == muls else \
                f"; UNEXPLAINED: fvcore MACs {macs} != our matmul mul count {muls}"
        rows.append(ComparisonRow(place, a.component, a.count.flops, t.count.flops, macs, muls, explanation))
    return ComparisonTable(title, tuple(rows))


def compare_with_trace(model: nn.Module, seq_len: int, batch: int = 1, seed: int = 0) -> ComparisonTable:
    """Trace ``model`` on random ``(batch, seq_len)`` token ids and compare with the analytic
    ``exact`` count of the same shape (LoRA and lm_head bias read from the model)."""
    shape = model_shape(model)
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, shape.vocab_size, (batch, seq_len), generator=generator)
    analytic = forward_flops(setup_of(model, "exact"), seq_len, batch)
    attention = getattr(model.config, "_attn_implementation", "?")
    title = (f"{shape.name}: {shape.num_layers} layers, batch {batch} x {seq_len} tokens, {attention} attention, "
             f"LoRA rank {analytic.lora_rank} on {','.join(analytic.lora_targets) or '-'}")
    return compare_reports(analytic, trace_flops(model, input_ids), title)


def compare_conventions(setup: CountSetup | Any, seq_len: int, batch: int = 1) -> str:
    """Markdown table: coursework vs exact forward FLOPs per component of ``setup`` (or a
    model alone), with the reason of every difference (from ``WHY_COURSEWORK_DIFFERS``)."""
    setup = as_setup(setup)
    course = forward_flops(replace(setup, convention=COURSEWORK), seq_len, batch).by_component()
    exact = forward_flops(replace(setup, convention=EXACT), seq_len, batch).by_component()
    rows = [[name, f"{course[name]:,}", f"{exact[name]:,}", f"{course[name] - exact[name]:+,}",
             WHY_COURSEWORK_DIFFERS.get(name, "UNEXPLAINED") if course[name] != exact[name] else "same"]
            for name in course]
    rows.append(["total", f"{sum(course.values()):,}", f"{sum(exact.values()):,}",
                 f"{sum(course.values()) - sum(exact.values()):+,}", ""])
    return format_table(["component", "coursework", "exact", "coursework - exact", "why"], rows, markdown=True)
