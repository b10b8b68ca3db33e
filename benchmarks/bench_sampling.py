"""Token sampling: ``GumbelMaxSampler`` against ``generate``'s own sampler (softmax + multinomial).

One decoding step's sampling on ``--rows`` rows of LLMTIME-constrained scores over Qwen's
151,936-token vocabulary (14 finite entries per row), both ways in one run (median of
``--repeats`` interleaved rounds): HF's path is ``softmax`` then ``torch.multinomial`` over the
whole vocabulary, ours draws by Gumbel-max over the columns the grammar leaves and lets
``generate`` take the argmax. Then a whole sampled forecast of the tiny model (``--samples``
per trajectory, constrained) against the greedy forecast of the same trajectories, so the
sampling overhead shows as a ratio. Prints seconds and the ratios.

    python benchmarks/bench_sampling.py [--rows 200] [--repeats 5] [--trajectories 10] [--samples 5]
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

import lvdata  # noqa: E402
from experiments.forecasting.generate import ForecastConfig, forecast_series  # noqa: E402
from experiments.forecasting.sampling import GumbelMaxSampler  # noqa: E402
from experiments.models.loading import build_tiny_model, default_tokenizer_source  # noqa: E402

VOCAB = 151_936


def hf_sample(scores: torch.Tensor) -> torch.Tensor:
    return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)


def gumbel_sample(scores: torch.Tensor) -> torch.Tensor:
    return GumbelMaxSampler()(None, scores).argmax(dim=1)


def median_seconds(function, *args, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trajectories", type=int, default=10)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--m", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    scores = torch.full((args.rows, VOCAB), float("-inf"))
    scores[:, :14] = torch.randn(args.rows, 14)
    hf = median_seconds(hf_sample, scores, repeats=args.repeats)
    ours = median_seconds(gumbel_sample, scores, repeats=args.repeats)
    print(f"one sampling step, {args.rows} rows x {VOCAB:,} tokens (14 allowed): softmax + multinomial "
          f"{1e3 * hf:.1f} ms, Gumbel-max {1e3 * ours:.1f} ms: {hf / ours:.0f}x faster")

    tokenizer = lvdata.load_tokenizer(default_tokenizer_source())
    model = build_tiny_model(seed=0)
    trajectories = np.random.default_rng(0).uniform(0.5, 9.0, size=(args.trajectories, 50 + args.m, 2))
    examples = [lvdata.prompt_target_split(t, 1.0, k=50, m=args.m) for t in trajectories]
    greedy = ForecastConfig(k=50, m=args.m, batch_size=args.trajectories, max_int_digits=2)
    sampled = ForecastConfig(k=50, m=args.m, batch_size=args.trajectories, max_int_digits=2, do_sample=True,
                             samples=args.samples)
    run = {name: lambda config=config: forecast_series(model, tokenizer, examples, config, progress=False)
           for name, config in (("greedy", greedy), ("sampled", sampled))}
    run["greedy"]()  # warm-up
    seconds = {name: median_seconds(forecast, repeats=args.repeats) for name, forecast in run.items()}
    print(f"tiny model, {args.trajectories} trajectories, m={args.m}: greedy {seconds['greedy']:.2f} s, "
          f"{args.samples} samples each {seconds['sampled']:.2f} s: {seconds['sampled'] / seconds['greedy']:.1f}x the "
          f"greedy time for {args.samples}x the rows")


if __name__ == "__main__":
    main()
