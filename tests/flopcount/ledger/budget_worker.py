"""A Budget-guarded charging loop, run as a subprocess by the crash and concurrency tests.

Prints ``ready`` once imported, waits for ``--go-file`` to exist (if given), then charges
training steps ``--first-step`` .. ``--stop-step - 1`` of the preset qwen2.5-0.5b model
(``BATCH x SEQ_LEN`` tokens, LoRA rank 4) and, every ``--validate-every`` steps, one
validation forward; with ``--charge-flops N`` each step is instead a plain charge of ``N``
FLOPs (any size). It prints ``charged <phase> <step>`` after each committed charge and
``refused <step>`` (then stops the experiment) when the budget refuses one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from flopcount import CountSetup
from flopcount.budget import Budget
from flopcount.ledger.ledger import BudgetExceeded

MODEL, BATCH, SEQ_LEN, LORA_RANK = "qwen2.5-0.5b", 2, 64, 4


def charging_loop(budget: Budget, first_step: int, stop_step: int, validate_every: int, work_s: float,
                  charge_flops: int | None = None) -> None:
    for step in range(first_step, stop_step):
        try:
            if charge_flops is None:
                budget.charge_training_step(batch=BATCH, seq_len=SEQ_LEN, step=step)
            else:
                budget.charge("train", charge_flops, step=step, tokens=BATCH * SEQ_LEN)
        except BudgetExceeded:
            budget.finish("stopped", f"budget exhausted at step {step}")
            print(f"refused {step}", flush=True)
            return
        print(f"charged train {step}", flush=True)
        time.sleep(work_s)  # the training step itself
        if validate_every and (step + 1) % validate_every == 0:
            budget.charge_forward(batch=1, seq_len=SEQ_LEN, step=step + 1)
            print(f"charged validation {step + 1}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--limit", type=int, required=True, help="FLOPs")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--first-step", type=int, default=0)
    parser.add_argument("--stop-step", type=int, required=True)
    parser.add_argument("--validate-every", type=int, default=0)
    parser.add_argument("--work-seconds", type=float, default=0.0)
    parser.add_argument("--go-file", type=Path)
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--charge-flops", type=int, help="charge this many FLOPs per step instead of a training step")
    args = parser.parse_args()
    print("ready", flush=True)
    while args.go_file and not args.go_file.exists():
        time.sleep(0.002)
    guard = Budget(args.limit, args.ledger, args.experiment, CountSetup.of(MODEL, lora_rank=LORA_RANK),
                   synchronous=args.synchronous)
    with guard:
        charging_loop(guard, args.first_step, args.stop_step, args.validate_every, args.work_seconds,
                      args.charge_flops)
    print("done", flush=True)


if __name__ == "__main__":
    main()
