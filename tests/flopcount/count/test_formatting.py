"""The text and Markdown tables of FLOP reports."""

from flopcount import CountSetup, ModelShape, forward_flops, generation_flops
from flopcount.count.formatting import describe, flops_text, format_generation, format_report, format_table

TINY = ModelShape(hidden_size=8, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=4, intermediate_size=16,
                  vocab_size=32, tie_word_embeddings=True, qkv_bias=True, name="tiny")


def test_tables_align_text_left_and_numbers_right():
    rows = [["q_proj", "1,024"], ["lm_head", "7"]]
    assert format_table(["component", "FLOPs"], rows).splitlines() == [
        "component  FLOPs", "---------  -----", "q_proj     1,024", "lm_head        7"]
    assert format_table(["component", "FLOPs"], rows, markdown=True).splitlines() == [
        "| component | FLOPs |", "|-----------|------:|", "| q_proj    | 1,024 |", "| lm_head   |     7 |"]


def test_small_figures_are_exact_and_large_ones_scientific():
    assert flops_text(999_999) == "999,999" and flops_text(10**6) == "1.0000e+06"


def test_a_report_says_what_it_counts_and_its_total():
    report = forward_flops(CountSetup.of(TINY, "exact", lora_rank=2), 3, 2)
    assert describe(report) == ("tiny | exact convention | forward: batch 2 x seq_len 3 | logits all | "
                                "LoRA r=2 on q_proj,v_proj")
    text = format_report(report)
    assert text.startswith(describe(report)) and text.endswith(f"total: {report.total:,} FLOPs ({report.total:.4e})")
    assert "|-" not in text and "mlp_gate" in text and "FLOPs each" in text  # plain tables, not Markdown
    assert describe(report.scaled(3)).endswith(", x3")


def test_a_generation_report_shows_its_prefill_and_decode_parts():
    report = generation_flops(CountSetup.of(TINY), 6, 4, samples=2)
    lines = format_generation(report).splitlines()
    assert lines[0] == "generation: 1 prompt(s) x 2 sample(s), prompt_len 6, 4 new token(s)"
    assert lines[1].startswith(f"  prefill: {flops_text(report.prefill.total)}")
    assert lines[2].startswith(f"  decode:  {flops_text(report.decode.total)}") and "past_len 6" in lines[2]
