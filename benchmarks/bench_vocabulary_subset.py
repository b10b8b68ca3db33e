"""Constrained forecasts over a vocabulary subset against the same forecasts over all 151,936 tokens.

The tiny model (hidden 64, Qwen's vocabulary), ``--trajectories`` prompts of 50 steps, ``--m``
forecast steps, greedy and sampled (``--samples`` per trajectory), both ways in one run (median
of ``--repeats`` interleaved rounds). The full-vocabulary path is the one a model whose output
layer is not a plain ``nn.Linear`` takes. Checks that both give the same texts; prints seconds
and the speed-up.

    python benchmarks/bench_vocabulary_subset.py [--trajectories 20] [--m 20] [--samples 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # runs from a checkout without `pip install -e .`

import numpy as np  # noqa: E402

import lvdata  # noqa: E402
from experiments.forecasting import generate  # noqa: E402
from experiments.forecasting.generate import ForecastConfig, forecast_series  # noqa: E402
from experiments.models.loading import build_tiny_model, default_tokenizer_source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=20)
    parser.add_argument("--m", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tokenizer = lvdata.load_tokenizer(default_tokenizer_source())
    model = build_tiny_model(seed=0)
    trajectories = np.random.default_rng(0).uniform(0.5, 9.0, size=(args.trajectories, 50 + args.m, 2))
    examples = [lvdata.prompt_target_split(t, 1.0, k=50, m=args.m) for t in trajectories]
    configs = {
        "greedy": ForecastConfig(k=50, m=args.m, batch_size=args.trajectories, max_int_digits=2),
        f"sampled x{args.samples}": ForecastConfig(k=50, m=args.m, batch_size=args.trajectories, max_int_digits=2,
                                                   do_sample=True, samples=args.samples, seed=1),
    }

    def forecast(config: ForecastConfig, full_vocabulary: bool) -> tuple[float, list]:
        every_token = mock.patch.object(generate, "subset_is_exact", lambda model: False)
        with every_token if full_vocabulary else nullcontext():
            start = time.perf_counter()
            output = forecast_series(model, tokenizer, examples, config, progress=False)
            return time.perf_counter() - start, output.texts

    forecast(configs["greedy"], full_vocabulary=False)  # warm-up
    for name, config in configs.items():
        seconds: dict[bool, list[float]] = {False: [], True: []}
        texts = {}
        for _ in range(args.repeats):
            for full_vocabulary in (True, False):
                elapsed, texts[full_vocabulary] = forecast(config, full_vocabulary)
                seconds[full_vocabulary].append(elapsed)
        if texts[True] != texts[False]:
            raise SystemExit(f"{name}: the vocabulary subset changed the forecasts")
        full, subset = statistics.median(seconds[True]), statistics.median(seconds[False])
        rows = args.trajectories * config.samples
        print(f"{name:>12}, {rows} rows x {args.m} steps: all 151,936 tokens {full:.2f} s, "
              f"vocabulary subset {subset:.2f} s: {full / subset:.1f}x faster, the same texts")


if __name__ == "__main__":
    main()
