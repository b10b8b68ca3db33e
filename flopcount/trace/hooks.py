"""Runtime checks with torch itself: ``FlopCounterMode`` matmul counts, forward hooks on the
modules (real input/output widths), and the measured backward / forward ratio of a LoRA step.

``FlopCounterMode`` counts only matrix products (mm, addmm, bmm, attention kernels), as
``2*m*n*p`` each: it is twice our ``mul`` count of the products and ignores bias adds and all
elementwise work. The figures here are in those units.

torch 2.13's ``FlopCounterMode`` has no formula for the CPU flash-attention kernel that
``scaled_dot_product_attention`` dispatches to on CPU (it would count 0); ``counting_mode()``
adds torch's own sdpa formulas for it, forward and backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from flopcount.count.components import PROJECTIONS, CountContext, Workload
from flopcount.count.conventions import COURSEWORK, EXACT, Convention, get_convention
from flopcount.count.setup import CountSetup
from flopcount.count.shape import ModelShape, model_shape


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


CPU_SDPA_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


def counting_mode() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also counts the CPU flash-attention kernel."""
    return FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FORMULAS)


@dataclass(frozen=True)
class MatmulCheck:
    """One module's matrix-product FLOPs: measured by ``FlopCounterMode`` vs expected from the
    widths the analytic model assumes (``2*m*n*p`` per product)."""

    module: str
    measured: int
    expected: int

    @property
    def ok(self) -> bool:
        return self.measured == self.expected


def matmul_flops_by_module(model: nn.Module, input_ids: torch.Tensor) -> dict[str, int]:
    """``FlopCounterMode`` FLOPs of one no-cache forward, per module path (``"model.layers.0.
    self_attn.q_proj"``; ``""`` is the whole model). Each counts its submodules too."""
    with torch.no_grad(), counting_mode() as counter:
        model(input_ids=input_ids, use_cache=False)
    root = type(model).__name__
    return {("" if name in ("Global", root) else name.removeprefix(root + ".")): sum(ops.values())
            for name, ops in counter.get_flop_counts().items()}


def setup_of(model: nn.Module, convention: str = "exact") -> CountSetup:
    """The ``CountSetup`` of ``model`` as it is: its shape, LoRA rank/targets (modules with
    ``lora_A`` and an int ``r``) and lm_head bias, read from the modules."""
    found = {name.rsplit(".", 1)[-1]: m.r for name, m in model.named_modules()
             if hasattr(m, "lora_A") and isinstance(getattr(m, "r", None), int)}
    if len(set(found.values())) > 1:
        raise ValueError(f"LoRA ranks differ between targets: {found}")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return CountSetup.of(model, convention, lora_rank=next(iter(found.values()), 0),
                         lora_targets=tuple(p for p in PROJECTIONS if p in found),
                         lm_head_bias=getattr(head, "bias", None) is not None)


def expected_matmul_flops(setup: CountSetup, batch: int, seq_len: int) -> dict[str, int]:
    """``2*m*n*p`` FLOPs per module of a no-cache forward, from the analytic widths.

    Keys: each projection (with its LoRA products when it is a target), each layer's
    ``self_attn`` and ``mlp`` (submodules included), and ``lm_head``.
    """
    ctx = CountContext(setup, Workload(batch * seq_len, 0, 0, 0))
    shape, lora_rank, lora_targets = setup.shape, setup.lora_rank, setup.lora_targets
    tokens = batch * seq_len
    expected: dict[str, int] = {}
    for layer in range(shape.num_layers):
        prefix = f"model.layers.{layer}"
        for name in PROJECTIONS:
            in_f, out_f, _ = ctx.projection(name)
            lora = lora_rank * (in_f + out_f) if name in lora_targets else 0
            parent = "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            expected[f"{prefix}.{parent}.{name}"] = 2 * tokens * (in_f * out_f + lora)
        scores_and_values = 2 * 2 * batch * shape.num_heads * seq_len * seq_len * shape.head_dim
        expected[f"{prefix}.self_attn"] = scores_and_values + sum(
            expected[f"{prefix}.self_attn.{p}"] for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
        expected[f"{prefix}.mlp"] = sum(expected[f"{prefix}.mlp.{p}"] for p in ("gate_proj", "up_proj", "down_proj"))
    expected["lm_head"] = 2 * tokens * shape.hidden_size * shape.vocab_size
    return expected


ROTARY_MODULE = "model.rotary_emb"


def rope_table_product_flops(shape: ModelShape, positions: int) -> int:
    """``2*m*n*p`` FLOPs of the RoPE angle table for ``positions`` positions when transformers
    builds it as a matrix product, ``inv_freq (hd/2 x 1) @ positions (1 x L)`` per sequence (its
    Qwen2 code up to 5.18); from 5.19 it broadcasts a multiply, which FlopCounterMode does not
    count (0). The analytic ``rope_table`` holds the same ``hd/2`` multiplications per position
    either way: a product with an inner size of 1 costs ``m*p*(2*1 - 1)``."""
    return 2 * positions * (shape.head_dim // 2)


def check_matmul_flops(model: nn.Module, input_ids: torch.Tensor) -> list[MatmulCheck]:
    """Measured vs expected (exact widths) matrix-product FLOPs for every module of
    ``expected_matmul_flops``, the rotary table (``rope_table_product_flops`` where the installed
    transformers multiplies matrices for it, else 0), and the whole model; the LoRA is read
    from ``model``."""
    batch, seq_len = input_ids.shape
    measured = matmul_flops_by_module(model, input_ids)
    shape = model_shape(model)
    expected = expected_matmul_flops(setup_of(model, "exact"), batch, seq_len)
    layers = [k for k in expected if k.count(".") == 3]  # model.layers.i.{self_attn,mlp}
    # a forward without position ids builds one table, (1, seq_len), for the whole batch
    expected[ROTARY_MODULE] = rope_table_product_flops(shape, seq_len) if measured.get(ROTARY_MODULE) else 0
    expected[""] = sum(expected[k] for k in layers) + expected["lm_head"] + expected[ROTARY_MODULE]
    return [MatmulCheck(module, measured.get(module, 0), flops) for module, flops in expected.items()]


@dataclass(frozen=True)
class LinearShape:
    """What a forward hook saw at an ``nn.Linear``: rows (positions) and widths."""

    rows: int
    in_features: int
    out_features: int


def record_linear_shapes(model: nn.Module, input_ids: torch.Tensor) -> dict[str, LinearShape]:
    """Run one no-cache forward with hooks on every ``nn.Linear``; their runtime shapes by
    module path (LoRA's wrapped base layer appears as ``...q_proj.base``)."""
    seen: dict[str, LinearShape] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0]
            seen[name] = LinearShape(x.numel() // x.shape[-1], x.shape[-1], output.shape[-1])
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            model(input_ids=input_ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def width_mismatches(shape: ModelShape, recorded: dict[str, LinearShape], tokens: int,
                     convention: str | Convention = EXACT) -> list[str]:
    """Where the runtime shapes differ from what ``convention`` assumes: the (in, out) width
    of every projection and the rows (``tokens``, all positions) of every projection and
    lm_head. Empty when they all agree."""
    ctx = CountContext(CountSetup(shape, get_convention(convention)), Workload(tokens, 0, 0, 0))
    problems = []
    for name, seen in recorded.items():
        parts = name.split(".")
        projection = next((p for p in PROJECTIONS if p in parts), None)
        if projection is None and parts[-1] != "lm_head":
            continue
        if projection is not None and parts[-1] not in (projection, "base", "base_layer"):
            continue  # a LoRA factor, not the projection
        assumed = ctx.projection(projection)[:2] if projection else (shape.hidden_size, shape.vocab_size)
        if (seen.in_features, seen.out_features) != assumed:
            problems.append(f"{name}: runs {seen.in_features} -> {seen.out_features}, "
                            f"{ctx.convention.name} assumes {assumed[0]} -> {assumed[1]}")
        if seen.rows != tokens:
            problems.append(f"{name}: runs on {seen.rows} rows, the count assumes {tokens}")
    return problems


@dataclass(frozen=True)
class BackwardRatio:
    """Matrix-product FLOPs (``FlopCounterMode``) of one training step's forward and backward.

    The budget rule assumes ``backward = assumed x forward``. With the base frozen, the
    backward computes no weight gradients for the base layers (only input gradients and the
    small LoRA weight gradients), so the measured ratio is below 2.
    """

    forward: int
    backward: int
    assumed: int = 2

    @property
    def ratio(self) -> float:
        return self.backward / self.forward


def measure_backward_ratio(model: nn.Module, input_ids: torch.Tensor) -> BackwardRatio:
    """Count one training step (causal-LM loss on ``input_ids``) with ``FlopCounterMode``:
    forward and backward separately. ``model`` should have its trainable parameters set
    (e.g. ``lora.inject``); nothing is updated."""
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("measure_backward_ratio: the model has no trainable parameter")
    was_training = model.training
    model.train()
    try:
        with counting_mode() as forward:
            loss = model(input_ids=input_ids, labels=input_ids, use_cache=False).loss
        with counting_mode() as backward:
            loss.backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return BackwardRatio(forward=forward.get_total_flops(), backward=backward.get_total_flops(),
                         assumed=COURSEWORK.backward_multiplier)
