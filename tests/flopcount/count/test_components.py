"""The component table: every component in one place, projections as each convention sees them."""

import pytest

from flopcount import COMPONENTS, COURSEWORK, EXACT, CountSetup, ModelShape
from flopcount.count.components import (
    LAYER_COMPONENTS,
    POST_COMPONENTS,
    PRE_COMPONENTS,
    PROJECTIONS,
    CountContext,
    Workload,
)
from flopcount.count.primitives import OpCount

GQA = ModelShape(hidden_size=8, num_layers=1, num_heads=4, num_kv_heads=1, head_dim=2, intermediate_size=16,
                 vocab_size=32, tie_word_embeddings=True, qkv_bias=True, name="gqa")
WORK = Workload(tokens=3, score_pairs=9, logit_rows=3, rope_positions=3)


def context(convention) -> CountContext:
    return CountContext(CountSetup.of(GQA, convention.name), WORK)


def test_every_component_is_priced_by_exactly_one_table_in_report_order():
    tables = [*PRE_COMPONENTS, *LAYER_COMPONENTS, *POST_COMPONENTS]
    assert sorted(set(tables)) == sorted(COMPONENTS)
    assert len(tables) == len(COMPONENTS) + 1  # "rope": the table before the layers, the rotation in them
    assert PROJECTIONS == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.mark.parametrize("convention", [COURSEWORK, EXACT], ids=lambda c: c.name)
def test_projections_follow_the_conventions_gqa_and_bias_rules(convention):
    ctx = context(convention)
    kv = GQA.num_heads * GQA.head_dim if convention.gqa_as_mha else GQA.num_kv_heads * GQA.head_dim
    assert ctx.projection("k_proj") == ctx.projection("v_proj") == (8, kv, convention.bias_adds)
    assert ctx.projection("q_proj") == (8, 8, convention.bias_adds)  # q/k/v carry a bias in this shape
    assert ctx.projection("o_proj") == (8, 8, False) and ctx.projection("down_proj") == (16, 8, False)
    assert ctx.kv_heads == (GQA.num_heads if convention.gqa_as_mha else GQA.num_kv_heads)


def test_the_component_functions_share_one_signature_and_return_counts():
    for convention in (COURSEWORK, EXACT):
        ctx = context(convention)
        for table in (PRE_COMPONENTS, LAYER_COMPONENTS, POST_COMPONENTS):
            assert all(isinstance(count(ctx), OpCount) for count in table.values())
        assert LAYER_COMPONENTS["lora"](ctx) == OpCount()  # no LoRA in this setup
        assert LAYER_COMPONENTS["q_proj"](ctx).flops > 0
