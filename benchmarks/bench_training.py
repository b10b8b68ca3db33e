"""Training throughput of ``experiments.training.loop`` against peft + a plain Hugging Face step.

All on the tiny Qwen2 model (hidden 64, 2 layers, the real 151,936-token vocabulary), LoRA
rank 4 on q/v, Adam, the same batches (``--batch`` windows of ``--context`` tokens from the
simulated data, in the loop's data order), the same number of steps, in one run:

1. Step throughput: ``experiments.training.loop.train_step`` (our LoRA, our token-weighted loss,
   through ``accelerate``) against a peft-wrapped model stepped with ``model(...,
   labels=...).loss.backward()``; blocks of steps interleaved (ABBA) so drift hits both.
2. End to end: one ``train()`` call (charges, metrics, the final checkpoint) for ``--steps``
   steps against the plain peft loop over the same batches, in tokens/s.
3. The guard: our step with ``Budget.charge_training_step`` before it (a committed,
   ``synchronous=FULL`` ledger transaction) against the same step unguarded, interleaved.

Tokens are the non-padding tokens of each batch. Ratios above 1 mean our loop is faster.
Ledgers and runs go to a temporary directory under ``--out`` and are deleted afterwards.

    python benchmarks/bench_training.py [--steps 24] [--batch 4] [--context 128] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # runs from a checkout without `pip install -e .`

from experiments.training.batching import Batch, WindowOrder
from experiments.data import DataConfig, prepare_data
from experiments.training.distributed import make_accelerator
from experiments.training.loss import count_targets
from experiments.models.loading import build_tiny_model, default_tokenizer_source, load_tokenizer
from experiments.training.loop import ensure_lora, train, train_step
from experiments.training.config import BudgetConfig, TrainConfig
from flopcount import Budget, CountSetup
from lora import trainable_parameters

RANK, LEARNING_RATE, BLOCK = 4, 1e-4, 4


def peft_stepper(batches: list[Batch]) -> Callable[[int], None]:
    """A plain peft + Hugging Face training step on ``batches[i]``."""
    model = get_peft_model(build_tiny_model(seed=0), LoraConfig(r=RANK, lora_alpha=RANK, lora_dropout=0.0,
                                                                target_modules=["q_proj", "v_proj"]))
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)

    def step(index: int) -> None:
        batch = batches[index]
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def our_stepper(batches: list[Batch], budget: Budget | None, context: int,
                charge_seconds: list[float] | None = None) -> Callable[[int], None]:
    """``experiments.training.loop.train_step`` on ``batches[i]``, charged first when ``budget`` is
    given (each charge's seconds appended to ``charge_seconds``)."""
    accelerator = make_accelerator(cpu=True)
    model = build_tiny_model(seed=0)
    ensure_lora(model, TrainConfig("bench", steps=1, lora_rank=RANK).lora_config())
    optimizer = torch.optim.Adam(trainable_parameters(model).values(), lr=LEARNING_RATE)
    model, optimizer = accelerator.prepare(model, optimizer)
    targets = [count_targets(batch.labels.numpy()) for batch in batches]
    calls = [0]

    def step(index: int) -> None:
        batch = batches[index]
        if budget is not None:
            calls[0] += 1
            start = time.perf_counter()
            budget.charge_training_step(batch=len(batch.input_ids), seq_len=context, step=calls[0],
                                        tokens=int(batch.attention_mask.sum()))
            if charge_seconds is not None:
                charge_seconds.append(time.perf_counter() - start)
        train_step(model, optimizer, batch, accelerator, global_targets=targets[index])

    return step


def interleaved(steppers: dict[str, Callable[[int], None]], steps: int) -> dict[str, list[float]]:
    """Seconds per step of each stepper, run in blocks of ``BLOCK`` steps in ABBA order."""
    names, seconds = list(steppers), {name: [] for name in steppers}
    for name in names:  # warm-up: allocator, kernels, first ledger transaction
        steppers[name](0)
    for block in range(steps // BLOCK):
        for name in names if block % 2 == 0 else reversed(names):
            for i in range(block * BLOCK, (block + 1) * BLOCK):
                start = time.perf_counter()
                steppers[name](i)
                seconds[name].append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24, help="steps per variant (a multiple of 4)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft calls a deprecated transformers API

    data = prepare_data(DataConfig(simulate_systems=10), load_tokenizer(default_tokenizer_source()))
    windows = data.train_windows(args.context)
    order = WindowOrder(len(windows), seed=0)
    batches = [Batch.from_windows(windows, order.step(s, args.batch)[0]) for s in range(1, args.steps + 1)]
    tokens = [int(b.attention_mask.sum()) for b in batches]
    print(f"tiny Qwen2 (vocab 151,936), LoRA r={RANK} q/v, batch {args.batch} x {args.context} tokens, "
          f"{args.steps} steps per variant, {torch.get_num_threads()} threads")

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-training-", dir=args.out) as scratch:
        scratch = Path(scratch)
        charges: list[float] = []
        peft_step = peft_stepper(batches)
        with Budget(10**18, scratch / "guard.sqlite", "bench-guard",
                    CountSetup.of(build_tiny_model().config, lora_rank=RANK)) as budget:
            seconds = interleaved({"peft": peft_step, "ours": our_stepper(batches, None, args.context),
                                   "guarded": our_stepper(batches, budget, args.context, charges)}, args.steps)
        median = {name: statistics.median(values) for name, values in seconds.items()}
        rate = {name: statistics.mean(tokens) / value for name, value in median.items()}

        def peft_loop() -> float:
            start = time.perf_counter()
            for index in range(args.steps):
                peft_step(index)
            return time.perf_counter() - start

        config = TrainConfig("bench-train", steps=args.steps, batch_size=args.batch, context=args.context,
                             learning_rate=LEARNING_RATE, eval_every=0, checkpoint_every=args.steps)
        model = build_tiny_model(seed=0)
        before = peft_loop()  # A B A: the plain loop on both sides of train()
        start = time.perf_counter()
        train(model, data, config, scratch / "run", BudgetConfig(10**18, scratch / "train.sqlite"),
              progress=False)
        end_to_end = time.perf_counter() - start
        plain = (before + peft_loop()) / 2

    spread = {name: statistics.quantiles(values, n=4) for name, values in seconds.items()}
    print("\n1. step throughput (median step [quartiles], non-padding tokens/s)")
    for name, label in (("peft", "peft + HF step"), ("ours", "experiments.train_step")):
        low, _, high = spread[name]
        print(f"   {label:<24} {median[name] * 1e3:7.1f} ms [{low * 1e3:.0f}-{high * 1e3:.0f}]"
              f"   {rate[name]:8.0f} tokens/s")
    print(f"   ratio ours / peft (tokens/s)   {rate['ours'] / rate['peft']:.3f}")
    print("\n2. end to end over the same batches (plain loop timed before and after train())")
    print(f"   train(): charges, metrics, final checkpoint  {sum(tokens) / end_to_end:8.0f} tokens/s "
          f"({end_to_end:.2f} s)")
    print(f"   peft + HF loop                               {sum(tokens) / plain:8.0f} tokens/s ({plain:.2f} s)")
    print(f"   ratio train() / peft loop (tokens/s)         {plain / end_to_end:.3f}")
    print("\n3. the guard")
    print(f"   median step unguarded {median['ours'] * 1e3:.1f} ms, guarded {median['guarded'] * 1e3:.1f} ms: "
          f"ratio guarded / unguarded {median['guarded'] / median['ours']:.4f}")
    print(f"   one charge (synchronous=FULL commit): median {statistics.median(charges) * 1e3:.2f} ms = "
          f"{statistics.median(charges) / median['guarded']:.3%} of a guarded step (the precise figure)")


if __name__ == "__main__":
    main()
