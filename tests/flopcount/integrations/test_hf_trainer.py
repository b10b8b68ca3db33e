"""``BudgetCallback`` in real HF ``Trainer`` runs on a small real Qwen2 model."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainingArguments

from flopcount import CountSetup, Ledger, audit_report, forward_flops, training_step_flops
from flopcount.integrations import BudgetCallback

SEQ_LEN, BATCH, ACCUM = 16, 2, 2


class FixedLengthTokens(torch.utils.data.Dataset):
    def __init__(self, n: int, vocab: int, seed: int = 0) -> None:
        self.ids = torch.randint(0, vocab, (n, SEQ_LEN), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def make_trainer(model, tmp_path, callback, max_steps: int, **overrides) -> Trainer:
    arguments = dict(output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=BATCH,
                     gradient_accumulation_steps=ACCUM, learning_rate=1e-3, report_to=[], use_cpu=True,
                     save_strategy="steps", save_steps=3, logging_steps=1, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=TrainingArguments(**{**arguments, **overrides}),
                      train_dataset=FixedLengthTokens(64, model.config.vocab_size),
                      eval_dataset=FixedLengthTokens(6, model.config.vocab_size, seed=1), callbacks=[callback])
    trainer.floating_point_ops = callback.floating_point_ops
    return trainer


def test_a_limit_of_ten_and_a_half_steps_runs_exactly_ten_and_records_the_stop(tiny_qwen2, tmp_path):
    model = tiny_qwen2()
    setup = CountSetup.of(model.config)
    step = ACCUM * training_step_flops(setup, BATCH, SEQ_LEN)
    callback = BudgetCallback(10 * step + step // 2, tmp_path / "ledger.sqlite", "hf", setup, seq_len=SEQ_LEN)
    trainer = make_trainer(model, tmp_path, callback, max_steps=50)
    trainer.train()
    assert trainer.state.global_step == 10
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        charges = ledger.charges()
        (usage,) = ledger.snapshot().experiments
    assert [(c.phase, c.step, c.flops) for c in charges] == [("train", s, step) for s in range(1, 11)]
    assert ledger.limit - sum(c.flops for c in charges) < step  # the 11th step was refused, never run
    assert usage.status == "stopped" and usage.stop_reason.startswith("budget exhausted at train step 11")
    assert trainer.state.total_flos == sum(c.flops for c in charges)  # Trainer's own count agrees
    audit = audit_report(tmp_path / "ledger.sqlite")
    assert audit.total == sum(c.flops for c in charges) and audit.rows[0].steps == 10


def test_evaluation_is_charged_before_it_runs(tiny_qwen2, tmp_path):
    model = tiny_qwen2()
    setup = CountSetup.of(model.config)
    callback = BudgetCallback(10**15, tmp_path / "ledger.sqlite", "hf", setup, seq_len=SEQ_LEN, eval_examples=6)
    trainer = make_trainer(model, tmp_path, callback, max_steps=4, eval_strategy="steps", eval_steps=2)
    trainer.train()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        charges = ledger.charges()
    assert [(c.phase, c.step) for c in charges] == [("train", 1), ("train", 2), ("validation", 2), ("train", 3),
                                                     ("train", 4), ("validation", 4)]
    assert {c.flops for c in charges if c.phase == "validation"} == {6 * forward_flops(setup, SEQ_LEN).total}
    blind = BudgetCallback(10**15, tmp_path / "other.sqlite", "hf", setup, seq_len=SEQ_LEN)
    with pytest.raises(ValueError, match="pass eval_examples"):
        make_trainer(tiny_qwen2(), tmp_path, blind, max_steps=2, eval_strategy="steps", eval_steps=1).train()


def test_a_resumed_trainer_does_not_charge_its_finished_steps_again(tiny_qwen2, tmp_path):
    model = tiny_qwen2()
    setup = CountSetup.of(model.config)
    path = tmp_path / "ledger.sqlite"
    make_trainer(model, tmp_path, BudgetCallback(10**15, path, "hf", setup, seq_len=SEQ_LEN), max_steps=6).train()
    resumed = make_trainer(tiny_qwen2(), tmp_path, BudgetCallback(10**15, path, "hf", setup, seq_len=SEQ_LEN),
                           max_steps=9)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-6"))
    assert resumed.state.global_step == 9
    with Ledger(path) as ledger:
        charges = ledger.charges()
        (usage,) = ledger.snapshot().experiments
    assert [c.step for c in charges] == list(range(1, 10)) and not any(c.is_rerun for c in charges)
    assert usage.sessions == 2 and usage.status == "finished"


@pytest.mark.slow
def test_sft_trainer_is_guarded_too(tmp_path, qwen_tokenizer):
    import trl
    from datasets import Dataset

    from experiments.models.loading import build_tiny_model

    model = build_tiny_model()
    texts = [f"{i % 10}.{i % 7}{i % 3},{i % 5}.{i % 9}{i % 4};" * 3 for i in range(24)]
    dataset = Dataset.from_dict({"text": texts})
    length = max(len(qwen_tokenizer(t)["input_ids"]) for t in texts)
    setup = CountSetup.of(model.config)
    step = training_step_flops(setup, BATCH, length)
    callback = BudgetCallback(4 * step + step // 2, tmp_path / "ledger.sqlite", "sft", setup, seq_len=length)
    config = trl.SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=20, per_device_train_batch_size=BATCH,
                           report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, max_length=length,
                           packing=False)
    trainer = trl.SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=qwen_tokenizer,
                             callbacks=[callback])
    trainer.train()
    assert trainer.state.global_step == 4
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert [(c.phase, c.step, c.flops) for c in ledger.charges()] == [("train", s, step) for s in range(1, 5)]
