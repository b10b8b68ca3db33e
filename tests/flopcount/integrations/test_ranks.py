"""Several processes: rank 0 decides and charges, every rank learns the decision. A real 2-process
DDP ``Trainer`` run on CPU (gloo, under torchrun) charges every rank's forwards before they run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flopcount import CountSetup, Ledger, training_step_flops
from flopcount.integrations.ranks import gathered, on_rank_zero, world

ROOT = Path(__file__).resolve().parents[3]


def test_without_a_process_group_this_process_is_rank_0_of_1_and_decides_alone():
    assert world() == (0, 1) and gathered("x") == ["x"]
    assert on_rank_zero(lambda: 7) == 7
    with pytest.raises(KeyError, match="no such row"):
        on_rank_zero(lambda: {}["no such row"])


SCRIPT = """
import json, sys, torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments
from flopcount import BudgetExceeded, CountSetup
from flopcount.integrations import BudgetCallback

ledger, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
model = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=1, intermediate_size=48, vocab_size=64))
lengths = [8, 16, 8, 16, 12, 16, 8, 10] * 4
rows = [{"input_ids": torch.arange(n) % 60 + 1, "labels": torch.arange(n) % 60 + 1} for n in lengths]
ran = []
callback = BudgetCallback(limit, ledger, "ddp", CountSetup.of(model.config))
args = TrainingArguments(output_dir=out, max_steps=20, per_device_train_batch_size=1, use_cpu=True, report_to=[],
                         save_strategy="no", disable_tqdm=True, ddp_backend="gloo", seed=0, learning_rate=1e-3)
trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback])
model.register_forward_pre_hook(lambda m, a, k: ran.append(list(k["input_ids"].shape)), with_kwargs=True)
try:
    trainer.train()
    outcome = "returned"
except BudgetExceeded:
    outcome = "refused"
rank = torch.distributed.get_rank()
with open(f"{out}/rank{rank}.json", "w") as file:
    json.dump({"ran": ran, "step": trainer.state.global_step, "outcome": outcome}, file)
"""


@pytest.mark.slow  # two torchrun processes importing transformers: ~30 s on 2 cores
def test_a_two_process_ddp_trainer_charges_every_ranks_forwards_and_stops_every_rank(tmp_path):
    from transformers import Qwen2Config

    setup = CountSetup.of(Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      num_key_value_heads=1, intermediate_size=48, vocab_size=64))
    limit = 5 * training_step_flops(setup, 2, 16)
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path / "ledger.sqlite"), str(tmp_path), str(limit)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert 0 < ranks[0]["step"] == ranks[1]["step"] < 20  # the budget stopped both ranks at the same step
    assert ranks[0]["outcome"] == ranks[1]["outcome"]
    assert len(ranks[0]["ran"]) == len(ranks[1]["ran"])
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        charges = ledger.charges()
        (usage,) = ledger.snapshot().experiments
    assert [c.tokens for c in charges] == [a[0] * a[1] + b[0] * b[1] for a, b in zip(ranks[0]["ran"], ranks[1]["ran"])]
    assert [c.flops for c in charges] == [training_step_flops(setup, *a) + training_step_flops(setup, *b)
                                          for a, b in zip(ranks[0]["ran"], ranks[1]["ran"])]
    assert sum(c.flops for c in charges) <= limit and usage.sessions == 1 and not any(c.is_rerun for c in charges)
