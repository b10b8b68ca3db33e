"""Cost of FLOP accounting next to a training step (target: under 1 % of step time).

1. One charge, commit included: mean and p99 microseconds over ``--charges`` charges, with
   ``synchronous=FULL`` (the default: durable against power loss) and ``NORMAL`` (durable
   against process crashes only).
2. A LoRA training loop on the tiny Qwen2 model (hidden 64, 2 layers, real 151,936 vocabulary,
   rank 4 on q/v, Adam, batch 4 x 128 tokens): guarded steps (``charge_training_step`` then
   the step) and unguarded steps interleaved in one run (ABBA order), so drift hits both
   alike. Prints both median step times, their ratio, and the share of the guarded loop's
   time spent charging (the precise figure: the ratio carries the step-time noise).

The ledgers live in a temporary directory under ``--out`` (default ``benchmarks/out``, on the
disk runs use, not a RAM-backed /tmp) and are deleted afterwards.

    python benchmarks/bench_budget.py [--charges 500] [--steps 24] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

import lora
from experiments.models.loading import build_tiny_model
from flopcount import Budget, CountSetup, Ledger

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH, SEQ_LEN, RANK = 4, 128, 4


def time_charges(directory: Path, synchronous: str, charges: int) -> list[float]:
    """Seconds per ``Ledger.charge`` (one committed transaction each) on a fresh ledger."""
    with Ledger(directory / f"charges-{synchronous}.sqlite", 10**18, synchronous=synchronous) as ledger:
        session = ledger.begin_session("bench", model="tiny", convention="coursework", flop_settings={})
        seconds = []
        for step in range(charges):
            start = time.perf_counter()
            ledger.charge(session, "train", 6_772_771_627_008, step=step, tokens=BATCH * SEQ_LEN)
            seconds.append(time.perf_counter() - start)
    return seconds


def training_loop(directory: Path, steps: int) -> tuple[list[float], list[float], list[float]]:
    """Interleave unguarded and guarded steps; return (unguarded, guarded, charge) seconds."""
    torch.manual_seed(0)
    model = build_tiny_model().train()
    lora.inject(model, r=RANK)
    optimizer = torch.optim.Adam(lora.trainable_parameters(model).values(), lr=1e-4)
    tokens = torch.randint(0, model.config.vocab_size, (BATCH, SEQ_LEN))  # (B, T)

    def train_step() -> None:
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up: allocator, kernels
        train_step()
    unguarded, guarded, charging = [], [], []
    budget = Budget(10**18, directory / "loop.sqlite", "tiny-lora", CountSetup.of(model, lora_rank=RANK))
    with budget:
        for step in tqdm(range(steps), desc="guarded / unguarded steps", unit="pair"):
            order = ("plain", "guarded") if step % 2 == 0 else ("guarded", "plain")  # ABBA
            for kind in order:
                start = time.perf_counter()
                if kind == "guarded":
                    budget.charge_training_step(batch=BATCH, seq_len=SEQ_LEN, step=step)
                    charged = time.perf_counter()
                    charging.append(charged - start)
                train_step()
                (guarded if kind == "guarded" else unguarded).append(time.perf_counter() - start)
    return unguarded, guarded, charging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--charges", type=int, default=500, help="charges timed per durability mode")
    parser.add_argument("--steps", type=int, default=24, help="guarded and unguarded steps each")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=args.out, prefix="bench-budget-") as scratch:
        directory = Path(scratch)
        print(f"== one charge, commit included ({args.charges} charges each, ledger in {args.out})")
        for synchronous in ("FULL", "NORMAL"):
            seconds = sorted(time_charges(directory, synchronous, args.charges))
            p99 = seconds[int(0.99 * (len(seconds) - 1))]
            print(f"synchronous={synchronous:<6} mean {1e6 * statistics.fmean(seconds):8.1f} us"
                  f"   median {1e6 * statistics.median(seconds):8.1f} us   p99 {1e6 * p99:8.1f} us")
        unguarded, guarded, charging = training_loop(directory, args.steps)

    plain, with_charge = statistics.median(unguarded), statistics.median(guarded)
    noise = statistics.stdev(unguarded) / statistics.fmean(unguarded) / len(unguarded) ** 0.5
    print(f"\n== tiny Qwen2 + LoRA r={RANK}, batch {BATCH} x {SEQ_LEN} tokens, {args.steps} steps each, interleaved")
    print(f"unguarded step         {1e3 * plain:9.2f} ms (median)")
    print(f"guarded step           {1e3 * with_charge:9.2f} ms (median, charge included)")
    print(f"guarded / unguarded    {with_charge / plain:9.4f}   (standard error of the mean step: {100 * noise:.2f} %)")
    print(f"charge per step        {1e3 * statistics.fmean(charging):9.3f} ms (synchronous=FULL)")
    share = sum(charging) / sum(guarded)
    verdict = "met" if share < 0.01 else "NOT met"
    print(f"charging share of the guarded loop: {100 * share:.3f} %  (target < 1 %: {verdict})")


if __name__ == "__main__":
    main()
