"""Torch-side checks of the analytic widths on a small real Qwen2 (GQA, random weights):
matrix products per module, the widths forward hooks see, the backward/forward ratio."""

import pytest
import torch

import lora
from flopcount import COURSEWORK, EXACT, model_shape
from flopcount.trace.hooks import check_matmul_flops, measure_backward_ratio, record_linear_shapes, setup_of, \
    width_mismatches

BATCH, SEQ = 2, 7


def input_ids() -> torch.Tensor:
    return torch.randint(1, 128, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_every_modules_matrix_products_are_the_widths_the_count_assumes(tiny_qwen2, attention):
    checks = check_matmul_flops(tiny_qwen2(attention), input_ids())
    assert checks and all(check.ok for check in checks), [c for c in checks if not c.ok]
    assert {"lm_head"} <= {check.module.rsplit(".", 1)[-1] for check in checks}


def test_the_hooks_see_exacts_widths_and_courseworks_overstated_kv(tiny_qwen2):
    model = tiny_qwen2()
    recorded = record_linear_shapes(model, input_ids())
    assert recorded["model.layers.0.self_attn.k_proj"].out_features == 2 * 16  # 2 KV heads of 16
    assert recorded["lm_head"].rows == BATCH * SEQ
    assert width_mismatches(model_shape(model), recorded, BATCH * SEQ, EXACT) == []
    coursework = width_mismatches(model_shape(model), recorded, BATCH * SEQ, COURSEWORK)
    assert sorted(problem.split(":")[0].rsplit(".", 1)[-1] for problem in coursework) == ["k_proj", "k_proj",
                                                                                         "v_proj", "v_proj"]
    assert "coursework assumes 64 -> 64" in coursework[0]
    assert any("rows" in p for p in width_mismatches(model_shape(model), recorded, BATCH * SEQ + 1))


def test_the_setup_reads_the_injected_lora_and_the_backward_ratio_is_below_two(tiny_qwen2):
    model = tiny_qwen2()
    with pytest.raises(ValueError, match="no trainable parameter"):
        measure_backward_ratio(model.requires_grad_(False), input_ids())
    lora.inject(model, lora.LoRAConfig(r=2, targets=("q_proj", "o_proj")))
    setup = setup_of(model)
    assert (setup.lora_rank, setup.lora_targets, setup.convention.name) == (2, ("q_proj", "o_proj"), "exact")
    ratio = measure_backward_ratio(model, input_ids())
    assert ratio.forward > 0 and 0 < ratio.ratio < ratio.assumed == 2  # frozen base: no weight gradients
