"""HF ``generate`` under torch's FlopCounterMode against the closed-form generation count:
prefill of the expanded prompts, KV-cached decoding over the growing cache, lm_head on the
last position only (``logits_to_keep=1``)."""

import pytest
import torch

from flopcount import CountSetup, generation_flops, model_shape
from flopcount.trace.hooks import ROTARY_MODULE, counting_mode, rope_table_product_flops

PRODUCTS = ("q_proj", "k_proj", "v_proj", "o_proj", "mlp_gate", "mlp_up", "mlp_down", "attn_values", "lm_head")


def multiply_adds(report) -> int:
    """Multiplications inside matrix products: all the muls of the pure products, plus those
    of ``attn_scores`` minus its one scale mul per score (= one mask add per score, exact)."""
    total = 0
    for part in report.parts:
        total += sum(part.component(name)["mul"] for name in PRODUCTS)
        total += part.component("attn_scores")["mul"] - part.component("attn_mask")["add"]
    return total


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("prompt_len, new_tokens, samples", [(9, 6, 3), (4, 1, 1), (20, 12, 2)])
def test_generate_matmuls_match_the_closed_form(tiny_qwen2, attention, prompt_len, new_tokens, samples):
    model = tiny_qwen2(attention)
    prompt = torch.randint(1, 128, (1, prompt_len), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), counting_mode() as counter:
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, do_sample=samples > 1, num_return_sequences=samples,
                                pad_token_id=0, eos_token_id=None)
    assert output.shape == (samples, prompt_len + new_tokens)
    report = generation_flops(CountSetup.of(model, "exact"), prompt_len, new_tokens, samples=samples)
    # the RoPE table is a product up to transformers 5.18 and a broadcast multiply from 5.19:
    # every generated sequence builds it for its prompt, then for one position per decoding step
    rope = sum(sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name.endswith(ROTARY_MODULE))
    positions = samples * (prompt_len + new_tokens - 1)
    assert rope in (0, rope_table_product_flops(model_shape(model), positions))
    assert counter.get_total_flops() == 2 * multiply_adds(report) + rope  # FlopCounterMode: 2*m*n*p per product
