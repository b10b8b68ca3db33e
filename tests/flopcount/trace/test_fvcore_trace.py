"""Trace counting on tiny real Qwen2 models: analytic exact == fvcore trace, entry by entry."""

import pytest
import torch
from torch import nn

import lora
from flopcount import CountSetup, COMPONENTS, compare_with_trace, forward_flops, trace_flops
from flopcount.count.components import MATMUL_COMPONENTS
from flopcount.trace.handles import TraceError


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("seq_len, batch", [(1, 1), (6, 2), (17, 1)])
@pytest.mark.parametrize("rank", [0, 4])
def test_every_component_matches_the_trace(tiny_qwen2, attention, seq_len, batch, rank):
    model = tiny_qwen2(attention)
    if rank:
        lora.inject(model, rank, targets=("q_proj", "k_proj", "v_proj", "down_proj"))
    table = compare_with_trace(model, seq_len, batch)
    assert table.unexplained() == []
    assert all(row.traced == row.analytic for row in table.rows), table.to_markdown()
    assert table.max_layer_error() == 0.0
    matmuls = [r for r in table.matmul_rows() if r.fvcore_macs is not None]
    assert {r.component for r in matmuls} >= {"q_proj", "k_proj", "v_proj", "o_proj", "mlp_gate", "mlp_up",
                                              "mlp_down", "lm_head"} | ({"lora"} if rank else set())
    assert all(r.macs_match for r in matmuls)  # fvcore's one-per-multiply-add count == our mul count
    assert all(r.traced > 0 for r in table.rows if r.component in MATMUL_COMPONENTS and r.place != "pre"
               and (rank or r.component != "lora"))


def test_trace_report_has_the_analytic_layout(tiny_qwen2):
    model = tiny_qwen2("eager")
    traced = trace_flops(model, torch.randint(0, 128, (2, 5)))
    analytic = forward_flops(CountSetup.of(model, "exact"), 5, 2)
    assert traced.report.by_layer() == analytic.by_layer()
    assert traced.report.by_primitive() == analytic.by_primitive()
    assert list(traced.report.by_component()) == list(COMPONENTS)
    # integer mask/position work ran and was priced 0, not skipped by name
    assert {"aten::cumsum", "aten::diff", "aten::ne", "aten::le"} <= set(traced.ops)


def test_an_op_without_a_handle_is_an_error(tiny_qwen2):
    model = tiny_qwen2("eager")
    model.model.layers[0].mlp.act_fn = nn.Tanh()  # aten::tanh has no handle
    with pytest.raises(TraceError, match="aten::tanh"):
        trace_flops(model, torch.randint(0, 128, (1, 4)))


def test_costly_work_outside_the_known_modules_is_an_error(tiny_qwen2):
    model = tiny_qwen2("eager")
    model.model.register_forward_hook(lambda module, args, output: setattr(
        output, "last_hidden_state", output.last_hidden_state * 2.0) or output)
    with pytest.raises(TraceError, match="outside any known module"):
        trace_flops(model, torch.randint(0, 128, (1, 4)))
