"""The cost of ``ForwardGuard`` per training step, against an unguarded step in the same run.

One Qwen2 model (random weights) trains ``--steps`` steps of ``--batch`` x ``--seq-len`` tokens
(forward, backward, Adam) unguarded and guarded, alternating the two in rounds so that both see
the same machine state; the guard prices each forward from its real shape and commits the
charge to a real SQLite ledger (``synchronous`` FULL, the default, or NORMAL) before it runs.
Prints the median step time of each, their ratio, and the guard's own time per forward (the
hook alone, timed around the charge).

    python benchmarks/bench_guard.py [--size small|0.5b] [--device cpu|cuda] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # runs from a checkout without `pip install -e .`

import torch  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from flopcount import CountSetup  # noqa: E402
from flopcount.integrations import ForwardGuard  # noqa: E402

SIZES = {
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=704, vocab_size=8192),
    "0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936),
}


def step_times(model, optimizer, batch: torch.Tensor, steps: int, device: str) -> list[float]:
    """Seconds of each of ``steps`` training steps (forward, backward, optimizer step)."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per round and per variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**SIZES[args.size], tie_word_embeddings=True)).to(args.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    batch = torch.randint(0, model.config.vocab_size, (args.batch, args.seq_len), device=args.device)
    step_times(model, optimizer, batch, 2, args.device)  # warm-up: allocator, kernels

    setup = CountSetup.of(model.config)
    ledger = Path(tempfile.mkdtemp()) / "ledger.sqlite"
    guard = ForwardGuard(10**30, ledger, "bench", setup)
    guard.budget._synchronous = args.synchronous
    charge_times: list[float] = []
    charge = guard.charge

    def timed_charge(work) -> None:
        start = time.perf_counter()
        charge(work)
        charge_times.append(time.perf_counter() - start)

    guard.charge = timed_charge
    unguarded, guarded = [], []
    for _ in range(args.rounds):
        unguarded += step_times(model, optimizer, batch, args.steps, args.device)
        guard.attach(model)
        guarded += step_times(model, optimizer, batch, args.steps, args.device)
        guard.detach()
    guard.close()

    plain, with_guard = statistics.median(unguarded), statistics.median(guarded)
    hook = statistics.median(charge_times)
    print(f"model {args.size} on {args.device}, batch {args.batch} x {args.seq_len} tokens, "
          f"{args.rounds} rounds of {args.steps} steps each, ledger synchronous={args.synchronous}")
    print(f"unguarded step: {1e3 * plain:.2f} ms (median)")
    print(f"guarded step:   {1e3 * with_guard:.2f} ms (median)")
    print(f"ratio guarded / unguarded: {with_guard / plain:.4f}")
    print(f"the guard's charge per forward: {1e3 * hook:.3f} ms (median), {hook / plain:.2%} of an unguarded step")


if __name__ == "__main__":
    main()
