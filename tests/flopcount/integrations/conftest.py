"""Fixtures of the Trainer tests (``harness``): datasets of real token rows, a padding collator, and a record
of the forwards that really ran (a forward pre-hook registered after the guard's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

import torch
from transformers import Trainer, TrainingArguments

from flopcount import CountSetup, Ledger, forward_flops, training_step_flops


class TokenRows(torch.utils.data.Dataset):
    """Rows of random token ids of the given lengths (labels = the ids)."""

    def __init__(self, lengths: list[int], vocab: int = 128, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.rows = [torch.randint(1, vocab, (n,), generator=generator) for n in lengths]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.rows[index], "labels": self.rows[index]}


def pad(rows: list[dict]) -> dict:
    """Right-pad a batch to its longest row: pad id 0, attention mask, labels -100."""
    width = max(len(row["input_ids"]) for row in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row["input_ids"])] = row["input_ids"]
        mask[i, :len(row["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


@dataclass
class RanForwards:
    """(phase, batch, tokens) of every forward that ran, in order."""

    forwards: list[tuple[str, int, int]] = field(default_factory=list)

    def watch(self, model) -> RanForwards:
        def record(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            phase = "train" if torch.is_grad_enabled() else "validation"
            self.forwards.append((phase, int(ids.shape[0]), int(ids.shape[1])))
        model.register_forward_pre_hook(record, with_kwargs=True)
        return self

    def flops(self, setup: CountSetup) -> int:
        """The analytic count of the forwards that ran (training ones with their backward)."""
        return sum(training_step_flops(setup, b, n) if phase == "train" else forward_flops(setup, n, b).total
                   for phase, b, n in self.forwards)


def ledger_charges(path) -> list[tuple[str, int, int]]:
    with Ledger(path) as ledger:
        return [(c.phase, c.step, c.tokens, c.flops) for c in ledger.charges()]


def assert_guarded(path, limit: int, ran: RanForwards, setup: CountSetup) -> None:
    """The ledger paid every forward that ran, in order and from its real shape, and never passed
    the limit: a forward after a refusal would appear in ``ran`` and not in the ledger."""
    charges = ledger_charges(path)
    total = sum(c[3] for c in charges)
    assert total >= ran.flops(setup) and total <= limit
    assert [(phase, tokens) for phase, _, tokens, _ in charges] == [(p, b * n) for p, b, n in ran.forwards]


def make_trainer(model, out, callback, train, *, eval_set=None, collator=pad, **overrides) -> Trainer:
    arguments = dict(output_dir=str(out), max_steps=50, per_device_train_batch_size=2,
                     per_device_eval_batch_size=2, gradient_accumulation_steps=1, learning_rate=1e-3, report_to=[],
                     use_cpu=True, save_strategy="steps", save_steps=2, logging_steps=1, disable_tqdm=True, seed=0,
                     dataloader_num_workers=0)
    trainer = Trainer(model=model, args=TrainingArguments(**{**arguments, **overrides}), train_dataset=train,
                      eval_dataset=eval_set, data_collator=collator, callbacks=[callback])
    trainer.floating_point_ops = callback.floating_point_ops
    return trainer


@pytest.fixture
def harness() -> SimpleNamespace:
    return SimpleNamespace(TokenRows=TokenRows, pad=pad, RanForwards=RanForwards, ledger_charges=ledger_charges,
                           assert_guarded=assert_guarded, make_trainer=make_trainer)
