"""Trace-based counting: fvcore ``FlopCountAnalysis`` on a real transformers model, every aten
op priced by :mod:`flopcount.trace.handles` and placed in a (layer, component) of the
analytic model, so the two can be compared entry by entry (:mod:`flopcount.trace.compare`).

Placement: ops inside a module take the module's component (``layers.3.mlp.up_proj`` ->
``mlp_up``); inside a projection, the op whose weight has the projection's own shape is the
projection and every other op is its LoRA branch; ops of the attention module itself are told
apart by the HF function they run in (``apply_rotary_pos_emb``/``rotate_half`` -> ``rope``) and
by data flow (the matmul fed by the softmax is ``attn_values``; a residual add fed by the MLP is
``mlp_residual``). An op that costs FLOPs and cannot be placed is a ``TraceError``.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass, replace

import torch
from torch import nn

with warnings.catch_warnings():  # fvcore scripts its losses at import: torch warns jit.script is deprecated
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script` is deprecated", category=DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn import jit_handles as fvcore_handles

from flopcount.count.components import LAYER_COMPONENTS, POST_COMPONENTS, PRE_COMPONENTS, PROJECTIONS, CountContext, \
    Workload
from flopcount.count.conventions import EXACT

TRACE = replace(EXACT, name="trace")  # a traced report: exact widths, counted by the trace
from flopcount.count.primitives import OpCount
from flopcount.count.flop_report import FlopEntry, FlopReport
from flopcount.count.setup import CountSetup
from flopcount.count.shape import ModelShape, model_shape
from flopcount.trace.handles import OP_HANDLES, Handle, TraceError

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)(?:\.|$)")
_FRAME = re.compile(r"\(\d+\): (\w+)$")
_COMPONENT_OF_PROJECTION = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "o_proj": "o_proj",
                            "gate_proj": "mlp_gate", "up_proj": "mlp_up", "down_proj": "mlp_down"}
_PASS_THROUGH = {"aten::to", "aten::dropout", "aten::contiguous", "aten::type_as", "aten::view", "aten::reshape"}
_FVCORE_DEFAULTS = {"aten::linear": fvcore_handles.linear_flop_jit, "aten::matmul": fvcore_handles.matmul_flop_jit,
                    "aten::mm": fvcore_handles.matmul_flop_jit, "aten::bmm": fvcore_handles.bmm_flop_jit,
                    "aten::addmm": fvcore_handles.addmm_flop_jit}
FVCORE_MACS = "fvcore_macs"
"""Key of fvcore's own default count (one per multiply-add) of the matmul ops in a place."""
MATMUL_MULS = "matmul_muls"
"""Key of our ``mul`` count of the same matmul ops (must equal fvcore's count)."""

Place = tuple[int | None, str]


class LogitsOnly(nn.Module):
    """``input_ids (B, n) -> logits (B, n, V)`` of a causal LM without a KV cache: the
    traceable forward the analytic ``forward_flops(..., logits="all")`` describes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


class ComponentPlacer:
    """Decides the (layer, component) of a traced op of a Qwen2-family model."""

    def __init__(self, shape: ModelShape) -> None:
        ctx = CountContext(CountSetup(shape, EXACT), Workload(0, 0, 0, 0))
        # weight shape (out, in) of each real projection
        self.weights = {name: list(reversed(ctx.projection(name)[:2])) for name in PROJECTIONS}

    def place(self, node: torch._C.Node) -> Place:
        path = node.scopeName().split("/")[-1]
        parts = path.split(".")
        layer_match = _LAYER.search(path)
        if layer_match is None:
            return None, self._outside_layers(parts, node)
        layer = int(layer_match.group(1))
        for module, component in _COMPONENT_OF_PROJECTION.items():
            if module in parts:
                return layer, component if self._is_base(node, module) else "lora"
        for module, component in (("input_layernorm", "input_norm"), ("post_attention_layernorm", "post_attn_norm"),
                                  ("q_norm", "qk_norm"), ("k_norm", "qk_norm"),
                                  ("act_fn", "mlp_act")):
            if module in parts:
                return layer, component
        if parts[-1] == "mlp" and node.kind() == "aten::mul":
            return layer, "mlp_mul"
        if parts[-1] == "self_attn":
            return layer, self._attention(node)
        if parts[-1] == layer_match.group(1) and node.kind() == "aten::add":
            producers = " ".join(v.node().scopeName() for v in node.inputs())
            return layer, "mlp_residual" if ".mlp" in producers else "attn_residual"
        raise TraceError(f"cannot place {node.kind()} in module {path!r}")

    def _outside_layers(self, parts: list[str], node: torch._C.Node) -> str:
        for module, component in (("embed_tokens", "embed"), ("rotary_emb", "rope"), ("lm_head", "lm_head")):
            if module in parts:
                return component
        if parts[-1] == "norm":
            return "final_norm"
        raise TraceError(f"{node.kind()} costs FLOPs outside any known module ({'.'.join(parts)!r})")

    def _is_base(self, node: torch._C.Node, module: str) -> bool:
        """Whether ``node`` is the projection's own product (weight of its exact shape)."""
        inputs = list(node.inputs())
        return node.kind() == "aten::linear" and list(inputs[1].type().sizes()) == self.weights[module]

    @staticmethod
    def _attention(node: torch._C.Node) -> str:
        functions = {m.group(1) for line in node.sourceRange().splitlines() if (m := _FRAME.search(line))}
        kind = node.kind()
        if functions & {"apply_rotary_pos_emb", "rotate_half"}:
            return "rope"
        if kind == "aten::matmul":
            return "attn_values" if _fed_by(next(node.inputs()), "aten::softmax") else "attn_scores"
        if kind == "aten::mul":
            return "attn_scores"  # the 1/sqrt(head_dim) scale of the scores
        if kind == "aten::add":
            return "attn_mask"
        if kind == "aten::softmax":
            return "softmax"
        raise TraceError(f"cannot place {kind} in the attention module")


def _fed_by(value: torch._C.Value, kind: str) -> bool:
    """Whether ``value`` comes from a ``kind`` op through casts/views/dropout only."""
    node = value.node()
    while node.kind() in _PASS_THROUGH:
        node = next(node.inputs()).node()
    return node.kind() == kind


@dataclass(frozen=True)
class TracedFlops:
    """Counts read from one traced forward.

    Attributes:
        report: a ``FlopReport`` (convention ``"trace"``) with the same layers and components
            as the analytic one.
        fvcore_macs: fvcore's default count (one per multiply-add) of the matmul ops in each
            place, for the unit conversion check;
        matmul_muls: our ``mul`` count of the same ops (equal to ``fvcore_macs``: our FLOPs of
            an m x n @ n x p product are 2 x fvcore - m*p, plus the bias adds).
        ops: how many times each aten op ran in the trace.
    """

    report: FlopReport
    fvcore_macs: dict[Place, int]
    matmul_muls: dict[Place, int]
    ops: dict[str, int]


class PrimitiveFlopCountAnalysis(FlopCountAnalysis):
    """``FlopCountAnalysis`` with our handle for every aten op and NO ignore list: an op in the
    trace without a handle is reported by ``unsupported_ops()`` (``trace_flops`` raises).

    Each handle returns a Counter keyed ``"layer|component|primitive"`` (and
    ``"layer|component|fvcore_macs"`` for matmuls), so fvcore's aggregation keeps the places.
    """

    def __init__(self, model: nn.Module, inputs: tuple, placer: ComponentPlacer) -> None:
        super().__init__(model, inputs)
        self._ignored_ops = set()  # fvcore ignores e.g. aten::relu, aten::max by default: we price everything
        self.clear_op_handles()
        self.set_op_handle(**{kind: self._placing(kind, handle, placer) for kind, handle in OP_HANDLES.items()})
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)
        self.op_calls: Counter[str] = Counter()

    def _placing(self, kind: str, handle: Handle, placer: ComponentPlacer) -> Handle:
        default = _FVCORE_DEFAULTS.get(kind)

        def handle_and_place(inputs: list, outputs: list) -> Counter:
            self.op_calls[kind] += 1
            count = handle(inputs, outputs)
            if not count:
                return Counter()
            node = outputs[0].node()
            layer, component = placer.place(node) if isinstance(count, OpCount) else (_layer_of(node), None)
            parts = count.items() if isinstance(count, dict) else [(component, count)]
            placed = Counter()
            for part, part_count in parts:
                for primitive, n in part_count.as_dict(nonzero=True).items():
                    placed[f"{layer}|{part}|{primitive}"] += n
            if default is not None:
                placed[f"{layer}|{component}|{FVCORE_MACS}"] += int(default(inputs, outputs))
                placed[f"{layer}|{component}|{MATMUL_MULS}"] += count["mul"]
            return placed

        return handle_and_place


def _layer_of(node: torch._C.Node) -> int | None:
    match = _LAYER.search(node.scopeName().split("/")[-1])
    return int(match.group(1)) if match else None


def trace_flops(model: nn.Module, input_ids: torch.Tensor) -> TracedFlops:
    """Trace ``model(input_ids)`` (no cache, all logits) with fvcore and count every op.

    ``model`` is a transformers causal LM (LoRA-injected or not); ``input_ids`` is ``(B, n)``.
    Raises ``TraceError`` for an op without a handle or a costly op that cannot be placed.
    """
    shape = model_shape(model)
    analysis = PrimitiveFlopCountAnalysis(LogitsOnly(model).eval(), (input_ids,), ComponentPlacer(shape))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.(trace|script)` is deprecated",
                                category=DeprecationWarning)
        placed = analysis.by_operator()
    missing = analysis.unsupported_ops()
    if missing:
        raise TraceError(f"aten ops in the trace without a FLOP handle: {dict(missing)}")
    counts: dict[Place, Counter] = {}
    matmuls: dict[str, dict[Place, int]] = {FVCORE_MACS: {}, MATMUL_MULS: {}}
    for key, n in placed.items():
        layer_text, component, primitive = key.split("|")
        place = (None if layer_text == "None" else int(layer_text), component)
        if primitive in matmuls:
            matmuls[primitive][place] = matmuls[primitive].get(place, 0) + n
        else:
            counts.setdefault(place, Counter())[primitive] += n
    batch, seq_len = input_ids.shape
    return TracedFlops(report=_as_report(shape, counts, batch, seq_len), fvcore_macs=matmuls[FVCORE_MACS],
                       matmul_muls=matmuls[MATMUL_MULS], ops=dict(analysis.op_calls))


def _as_report(shape: ModelShape, counts: dict[Place, Counter], batch: int, seq_len: int) -> FlopReport:
    places = ([(None, name) for name in PRE_COMPONENTS]
              + [(i, name) for i in range(shape.num_layers) for name in LAYER_COMPONENTS]
              + [(None, name) for name in POST_COMPONENTS])
    unknown = set(counts) - set(places)
    if unknown:
        raise TraceError(f"traced FLOPs in places the analytic model does not have: {sorted(unknown, key=str)}")
    entries = tuple(FlopEntry(layer, name, OpCount(**counts.get((layer, name), {}))) for layer, name in places)
    return FlopReport(entries=entries, setup=CountSetup(shape, TRACE), batch=batch, seq_len=seq_len, phase="forward")
