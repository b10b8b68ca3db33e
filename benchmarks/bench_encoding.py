"""Encode + tokenize the full real dataset; vectorised encoder vs a naive per-value Python loop.

Measured in one run on the same data (per-trajectory α, precision 2), best of ``--repeats``:

1. ``lvdata.encode`` (numpy, no per-value Python) and the naive loop
   ``";".join(",".join(f"{v / α:.2f}" ...))``: seconds each and the speed-up ratio.
2. Batched tokenization of the encoded texts with the real Qwen2.5 tokenizer.
3. Encode + tokenize end to end: seconds and tokens/s.

Also checks that both encoders write the same text up to rounding ties (values differing by
one unit in the last digit are counted and shown).

    python benchmarks/bench_encoding.py [--data PATH] [--tokenizer DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout without `pip install -e .`

import numpy as np  # noqa: E402

from lvdata import Scaler, decode, encode, load_tokenizer, load_trajectories, tokenize_texts  # noqa: E402
from lvdata.defaults import DEFAULT_DATA_PATH, default_tokenizer_source  # noqa: E402


def naive_encode(trajectories: np.ndarray, alphas: np.ndarray) -> list[str]:
    """The reference starter code's approach: Python formatting of every value."""
    return [
        ";".join(",".join(f"{value / alpha:.2f}" for value in step) for step in trajectory)
        for trajectory, alpha in zip(trajectories.astype(np.float64).tolist(), alphas.tolist())
    ]


def best_time(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Fastest of ``repeats`` wall-clock runs (seconds) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA_PATH))
    parser.add_argument("--tokenizer", default=str(default_tokenizer_source()))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    trajectories, _ = load_trajectories(args.data)  # (N, T, 2)
    tokenizer = load_tokenizer(args.tokenizer)
    alphas = Scaler.per_trajectory(trajectories).alphas(np.arange(len(trajectories)))
    n_values = trajectories.size
    print(f"data: {args.data}: {trajectories.shape[0]} trajectories x {trajectories.shape[1]} steps x 2")

    vector_s, texts = best_time(lambda: encode(trajectories, alphas), args.repeats)
    naive_s, naive_texts = best_time(lambda: naive_encode(trajectories, alphas), args.repeats)
    tokenize_s, token_ids = best_time(lambda: tokenize_texts(tokenizer, texts), args.repeats)
    end_to_end_s, _ = best_time(lambda: tokenize_texts(tokenizer, encode(trajectories, alphas)), args.repeats)
    n_tokens = sum(len(ids) for ids in token_ids)

    differing = [index for index, (a, b) in enumerate(zip(texts, naive_texts)) if a != b]
    gaps = [np.abs(decode(texts[i]).values - decode(naive_texts[i]).values).max() for i in differing]
    max_gap = max(gaps, default=0.0)
    print(f"encode, vectorised      {vector_s * 1e3:9.1f} ms  ({n_values / vector_s / 1e6:.2f} M values/s)")
    print(f"encode, naive loop      {naive_s * 1e3:9.1f} ms  ({n_values / naive_s / 1e6:.2f} M values/s)")
    print(f"speed-up (naive / vectorised): {naive_s / vector_s:.1f}x")
    print(f"tokenize (batched fast) {tokenize_s * 1e3:9.1f} ms  ({n_tokens / tokenize_s / 1e6:.2f} M tok/s)")
    print(
        f"encode + tokenize       {end_to_end_s * 1e3:9.1f} ms  {n_tokens} tokens, "
        f"{n_tokens / end_to_end_s / 1e6:.2f} M tokens/s; with the naive encoder "
        f"{(naive_s + tokenize_s) * 1e3:.1f} ms ({(naive_s + tokenize_s) / end_to_end_s:.2f}x)"
    )
    print(
        f"texts identical to the naive encoder: {len(texts) - len(differing)}/{len(texts)}; "
        f"largest scaled difference elsewhere (rounding ties): {max_gap:.2f}"
    )


if __name__ == "__main__":
    main()
