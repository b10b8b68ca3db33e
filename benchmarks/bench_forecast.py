"""Forecast throughput: KV cache + batching against ``generate`` without a cache, one prompt at a time.

On the ``tiny`` Qwen2 model (random weights, real 151,936-entry vocabulary), ``--trajectories``
real test trajectories (``lvdata.split_indices(1000, seed=0).test``; simulated ones without
``../shared``) are forecast ``m`` steps from ``k``, constrained and greedy, three ways in one run:

1. ``cache+batch``: ``forecast_series`` as used (KV cache, all prompts in one left-padded batch);
2. ``cache``: KV cache, one prompt per ``generate`` call (the batching share of the gain);
3. ``no-cache``: ``generate(use_cache=False)``, one prompt per call (the baseline).

Prints trajectories/s and generated tokens/s of each (median of ``--repeats`` interleaved rounds
after a warm-up round), the speed-up of (1) over (3) as a ratio, whether the three wrote the same text, and
the analytic FLOPs per forecast: with a KV cache (what the budget charges) and without one
(every step re-reads the whole sequence), for the tiny model and for Qwen2.5-0.5B at the same
token counts (coursework convention).

The grammar processor's own cost is timed apart: one call on a batch of random logits, as a
share of one decoding step of the ``cache+batch`` run.

    python benchmarks/bench_forecast.py [--trajectories 8] [--k 50] [--m 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # runs from a checkout without `pip install -e .`

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import flopcount  # noqa: E402
import lvdata  # noqa: E402
from experiments.forecasting.generate import ForecastConfig, ForecastOutput, forecast_series  # noqa: E402
from experiments.forecasting.grammar import LLMTimeGrammar, LLMTimeLogitsProcessor  # noqa: E402
from experiments.models.loading import build_tiny_model, default_tokenizer_source  # noqa: E402

VARIANTS = {  # name -> (use_cache, one batch for all prompts)
    "cache+batch": (True, True),
    "cache": (True, False),
    "no-cache": (False, False),
}
REAL_MODEL = "qwen2.5-0.5b"


def test_examples(n: int, k: int, m: int) -> list[lvdata.ForecastExample]:
    dataset = lvdata.load_dataset()
    ids = lvdata.split_indices(dataset.n_systems, seed=0).test[:n]
    alphas = lvdata.per_trajectory_alpha(dataset.trajectories[ids])
    print(f"{len(ids)} test trajectories of {dataset.source}, k={k}, m={m}")
    return [lvdata.prompt_target_split(dataset.trajectories[i], a, k=k, m=m) for i, a in zip(ids, alphas)]


def time_variants(model, tokenizer, examples, configs: dict[str, ForecastConfig],
                  repeats: int) -> tuple[dict[str, float], dict[str, ForecastOutput]]:
    """Median seconds per variant over ``repeats`` rounds after one warm-up round, and the outputs.

    Each round runs every variant once (interleaved), so load that drifts during the run
    slows all of them alike."""
    outputs = {name: forecast_series(model, tokenizer, examples, config, progress=False)
               for name, config in configs.items()}  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    for _ in tqdm(range(repeats), desc="rounds", unit="round"):
        for name, config in configs.items():
            start = time.perf_counter()
            outputs[name] = forecast_series(model, tokenizer, examples, config, progress=False)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in seconds.items()}, outputs


def processor_seconds(tokenizer, rows: int, grammar: LLMTimeGrammar, vocab: int) -> float:
    """Median seconds of one grammar-processor call on ``rows`` sequences, over a whole
    constrained generation (random logits, the argmax fed back)."""
    processor = LLMTimeLogitsProcessor(grammar, tokenizer, tokenizer.eos_token_id)
    input_ids = torch.zeros((rows, 1), dtype=torch.int64)
    seconds = []
    for _ in range(grammar.max_new_tokens):
        scores = torch.randn(rows, vocab)
        start = time.perf_counter()
        constrained = processor(input_ids, scores)
        seconds.append(time.perf_counter() - start)
        input_ids = torch.cat([input_ids, constrained.argmax(dim=1, keepdim=True)], dim=1)
    return statistics.median(seconds)


def flops_per_forecast(model, output: ForecastOutput, use_cache: bool) -> int:
    """Analytic FLOPs of the generate calls of ``output`` (coursework), per trajectory.

    With a cache: :func:`flopcount.generation_flops` (prefill + decoding). Without: step ``t``
    runs a full forward over ``prompt_len + t`` positions, logits at the last one only."""
    total = 0
    for batch in output.batches:
        rows = len(batch.indices)
        if use_cache:
            total += flopcount.generation_flops(model, batch.prompt_len, batch.new_tokens, batch.samples, rows).total
        else:
            total += sum(flopcount.forward_flops(model, batch.prompt_len + t, rows * batch.samples,
                                                 logits="last").total for t in range(batch.new_tokens))
    return total // len(output.values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=8)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = lvdata.load_tokenizer(default_tokenizer_source())
    model = build_tiny_model(seed=0)
    examples = test_examples(args.trajectories, args.k, args.m)
    n = len(examples)

    configs = {name: ForecastConfig(k=args.k, m=args.m, use_cache=use_cache, batch_size=n if batched else 1)
               for name, (use_cache, batched) in VARIANTS.items()}
    seconds, outputs = time_variants(model, tokenizer, examples, configs, args.repeats)
    rows = [(name, seconds[name], n / seconds[name], int(outputs[name].generated_tokens.sum()) / seconds[name])
            for name in VARIANTS]

    print("\n| variant | seconds | trajectories/s | tokens/s |\n|---|---:|---:|---:|")
    for name, elapsed, per_s, tokens_per_s in rows:
        print(f"| {name} | {elapsed:.3f} | {per_s:.2f} | {tokens_per_s:.1f} |")
    speedup = rows[0][2] / rows[-1][2]
    print(f"\nspeed-up of KV cache + batching over generate(use_cache=False) one at a time: {speedup:.1f}x "
          f"(batching alone adds {rows[0][2] / rows[1][2]:.1f}x over the cache)")
    same = all(outputs[name].texts == outputs["no-cache"].texts for name in VARIANTS)
    print(f"all three variants wrote the same forecasts: {same}")
    batched = outputs["cache+batch"].batches[0]
    per_step = seconds["cache+batch"] / batched.new_tokens
    processor = processor_seconds(tokenizer, n, LLMTimeGrammar(n_steps=args.m), model.config.vocab_size)
    print(f"grammar processor: {1e3 * processor:.3f} ms per call on {n} rows, {processor / per_step:.1%} of a "
          f"cache+batch decoding step ({1e3 * per_step:.1f} ms)")

    cached, uncached = outputs["cache"], outputs["no-cache"]
    print("\nFLOPs per forecast (analytic, coursework), per-prompt batches as generated above:")
    print("| model | with KV cache (charged) | without cache | ratio |\n|---|---:|---:|---:|")
    for label, shape in (("tiny", model.config), (REAL_MODEL, REAL_MODEL)):
        with_cache, without = flops_per_forecast(shape, cached, True), flops_per_forecast(shape, uncached, False)
        print(f"| {label} | {with_cache:.4g} | {without:.4g} | {without / with_cache:.1f}x |")
    prompt_tokens = np.mean([batch.prompt_len for batch in cached.batches])
    print(f"mean prompt {prompt_tokens:.0f} tokens, mean {cached.generated_tokens.mean():.0f} generated tokens")


if __name__ == "__main__":
    main()
