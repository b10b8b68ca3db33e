"""The analytic count against fvcore's trace, component by component, and the two conventions
side by side."""

import pytest

from flopcount import CountSetup, PRESETS, forward_flops
from flopcount.trace.compare import compare_conventions, compare_reports, compare_with_trace
from flopcount.trace.fvcore_trace import trace_flops


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_the_trace_agrees_with_exact_in_every_matmul_and_explains_the_rest(tiny_qwen2, attention):
    table = compare_with_trace(tiny_qwen2(attention), seq_len=6, batch=2)
    assert table.matmul_rows() and all(row.difference == 0 for row in table.matmul_rows())
    assert table.unexplained() == [] and table.max_layer_error() == 0.0
    assert all(row.macs_match in (None, True) for row in table.rows)
    markdown = table.to_markdown()
    assert markdown.startswith(f"### {table.title}") and table.title.startswith("qwen2: 2 layers, batch 2 x 6 tokens")
    assert "q_proj" in markdown and str(table) == markdown


def test_a_report_of_another_workload_shows_its_differences(tiny_qwen2):
    import torch

    model = tiny_qwen2()
    traced = trace_flops(model, torch.ones((1, 4), dtype=torch.long))
    wrong = compare_reports(forward_flops(CountSetup.of(model, "exact"), 5, 1), traced, "5 positions counted, 4 run")
    assert wrong.title == "5 positions counted, 4 run"
    assert any(row.difference < 0 for row in wrong.matmul_rows())  # the count assumed more work than ran


def test_the_conventions_table_names_each_difference():
    text = compare_conventions(CountSetup.of(PRESETS["qwen2.5-0.5b"]), seq_len=16)
    header, rule, *rows = text.splitlines()
    assert header.startswith("| component") and "coursework - exact" in header and rule.startswith("|-")
    k_proj = next(row for row in rows if row.startswith("| k_proj"))
    assert "coursework counts GQA as multi-head attention" in k_proj and "+528,482,304" in k_proj
    rope = next(row for row in rows if row.startswith("| rope"))
    assert "positional encodings are free" in rope
