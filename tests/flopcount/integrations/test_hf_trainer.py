"""``BudgetCallback`` in real HF ``Trainer`` runs on a small real Qwen2 model: every forward that
runs is paid before it runs, from its real batch; none runs that the budget cannot pay."""

from __future__ import annotations

import pytest
from transformers import EarlyStoppingCallback

from flopcount import BudgetExceeded, CountSetup, Ledger, audit_report, forward_flops, training_step_flops
from flopcount.integrations import BudgetCallback, ExperimentAlreadyRun

MIXED = [5, 16, 9, 64, 33, 12, 40, 7, 21, 64, 3, 30]


@pytest.fixture
def guarded(tiny_qwen2, tmp_path, harness):
    """A guarded Trainer on a fresh tiny model: (trainer, callback, setup, forwards that ran)."""
    def make(limit, lengths, **args):
        return trained(harness, tiny_qwen2, tmp_path, limit, lengths, **args)
    return make


def trained(harness, tiny_qwen2, tmp_path, limit, lengths, *, experiment="hf", eval_lengths=None, callbacks=(),
            **args):
    model = tiny_qwen2()
    setup = CountSetup.of(model.config)
    callback = BudgetCallback(limit, tmp_path / "ledger.sqlite", experiment, setup)
    eval_set = harness.TokenRows(eval_lengths, seed=1) if eval_lengths else None
    trainer = harness.make_trainer(model, tmp_path / "out", callback, harness.TokenRows(lengths), eval_set=eval_set,
                                   **args)
    for extra in callbacks:
        trainer.add_callback(extra)
    return trainer, callback, setup, harness.RanForwards().watch(model)


def test_a_limit_of_ten_and_a_half_steps_runs_exactly_ten_and_records_the_stop(tiny_qwen2, tmp_path, harness, guarded):
    setup = CountSetup.of(tiny_qwen2().config)
    step = 2 * training_step_flops(setup, 2, 16)
    limit = 10 * step + step // 2
    trainer, callback, setup, ran = guarded(limit, [16] * 64, gradient_accumulation_steps=2)
    trainer.train()
    assert trainer.state.global_step == 10 and len(ran.forwards) == 20
    harness.assert_guarded(tmp_path / "ledger.sqlite", limit, ran, setup)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        (usage,) = ledger.snapshot().experiments
        spent = ledger.spent
    assert usage.status == "stopped" and "after step 10" in usage.stop_reason
    assert trainer.state.total_flos == spent  # Trainer's own count agrees
    assert audit_report(tmp_path / "ledger.sqlite").rows[0].steps == 10


def test_a_declared_length_is_not_trusted_rows_of_64_are_charged_as_64(tiny_qwen2, tmp_path, harness, guarded):
    trainer, callback, setup, ran = guarded(10**15, [64] * 12, max_steps=3)
    callback.seq_len = 16  # a wrong planning estimate changes nothing charged
    trainer.train()
    assert {tokens for _, _, tokens, _ in harness.ledger_charges(tmp_path / "ledger.sqlite")} == {128}
    assert harness.ledger_charges(tmp_path / "ledger.sqlite")[0][3] == training_step_flops(setup, 2, 64)


@pytest.mark.parametrize("lengths, accumulation", [([16] * 12, 2), ([64] * 6, 1), (MIXED, 3)])
def test_every_forward_of_a_trainer_run_is_paid_before_it_runs(tiny_qwen2, tmp_path, lengths, accumulation, harness,
                                                                guarded):
    probe = CountSetup.of(tiny_qwen2().config)
    limit = 9 * accumulation * training_step_flops(probe, 2, max(lengths)) // 2
    trainer, callback, setup, ran = guarded(limit, lengths, eval_lengths=[16, 7, 64, 9, 12],
                                            gradient_accumulation_steps=accumulation, eval_strategy="steps",
                                            eval_steps=1, max_steps=20)
    try:
        trainer.train()
    except BudgetExceeded:
        pass  # a costlier step than any before: refused before its forward
    assert {phase for phase, _, _ in ran.forwards} == {"train", "validation"}
    harness.assert_guarded(tmp_path / "ledger.sqlite", limit, ran, setup)


def test_with_uneven_gradient_accumulation_total_flos_is_the_ledgers_training_total(tiny_qwen2, tmp_path, harness,
                                                                                   guarded):
    trainer, callback, setup, ran = guarded(10**15, MIXED[:10], gradient_accumulation_steps=4,
                                            num_train_epochs=1, max_steps=-1)
    trainer.train()  # 10 rows, batch 2: 5 micro-batches, steps of 4 and 1
    train = [c for c in harness.ledger_charges(tmp_path / "ledger.sqlite") if c[0] == "train"]
    assert len(train) == 5 and trainer.state.total_flos == sum(c[3] for c in train)


def test_evaluation_by_epoch_on_start_and_after_train_is_charged(tiny_qwen2, tmp_path, harness, guarded):
    trainer, callback, setup, ran = guarded(10**15, [16] * 6, eval_lengths=[16] * 5,
                                            eval_strategy="epoch", eval_on_start=True, num_train_epochs=2,
                                            max_steps=-1)
    trainer.train()
    trainer.evaluate()
    phases = [phase for phase, *_ in harness.ledger_charges(tmp_path / "ledger.sqlite")]
    assert phases == ["validation"] * 3 + ["train"] * 3 + ["validation"] * 3 + ["train"] * 3 \
        + ["validation"] * 3 * 2  # on start, epoch 1, epoch 2, evaluate(): 3 batches of 2, 2, 1
    harness.assert_guarded(tmp_path / "ledger.sqlite", 10**15, ran, setup)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        (usage,) = ledger.snapshot().experiments
    assert usage.status == "finished"


def test_evaluation_without_eval_examples_is_charged_from_its_batches(tiny_qwen2, tmp_path, harness, guarded):
    trainer, callback, setup, ran = guarded(10**15, [16] * 8, eval_lengths=[16] * 8,
                                            eval_strategy="steps", eval_steps=2, max_steps=2)
    trainer.train()
    validation = [c for c in harness.ledger_charges(tmp_path / "ledger.sqlite") if c[0] == "validation"]
    assert sum(c[2] for c in validation) == 8 * 16  # all eight rows scored, all eight charged


def test_resume_after_a_budget_stop_runs_no_free_step(tiny_qwen2, tmp_path, harness, guarded):
    setup = CountSetup.of(tiny_qwen2().config)
    step = training_step_flops(setup, 2, 16)
    limit = 4 * step + step // 2
    trainer, callback, setup, ran = guarded(limit, [16] * 20)
    trainer.train()
    assert trainer.state.global_step == 4
    resumed, _, _, ran_again = guarded(limit, [16] * 20)
    with pytest.raises(BudgetExceeded, match="train step 5"):
        resumed.train(resume_from_checkpoint=True)
    assert ran_again.forwards == [] and len(harness.ledger_charges(tmp_path / "ledger.sqlite")) == 4


def test_a_second_trainer_on_a_spent_ledger_runs_no_forward(tiny_qwen2, tmp_path, guarded):
    setup = CountSetup.of(tiny_qwen2().config)
    limit = 3 * training_step_flops(setup, 2, 16)
    guarded(limit, [16] * 20)[0].train()
    second, _, _, ran = guarded(limit, [16] * 20, experiment="second")
    with pytest.raises(BudgetExceeded):
        second.train()
    assert ran.forwards == []
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        usage = {u.name: u for u in ledger.snapshot().experiments}
        assert ledger.spent == limit and usage["second"].status == "stopped"


def test_early_stopping_pays_no_step_it_does_not_run(tiny_qwen2, tmp_path, harness, guarded):
    stop = EarlyStoppingCallback(early_stopping_patience=1, early_stopping_threshold=1e9)
    trainer, callback, setup, ran = guarded(10**15, [16] * 20, eval_lengths=[16] * 2,
                                            callbacks=[stop], eval_strategy="steps", eval_steps=1,
                                            metric_for_best_model="loss", load_best_model_at_end=True, save_steps=1)
    trainer.train()
    train = [c for c in harness.ledger_charges(tmp_path / "ledger.sqlite") if c[0] == "train"]
    assert len(train) == trainer.state.global_step == 2  # audit and Trainer agree
    harness.assert_guarded(tmp_path / "ledger.sqlite", 10**15, ran, setup)


def test_a_second_fresh_trainer_under_a_finished_experiment_name_is_refused(tiny_qwen2, tmp_path, guarded):
    first = guarded(10**15, [16] * 8, max_steps=2)[0]
    first.train()
    with pytest.raises(ExperimentAlreadyRun, match="already trained 2 steps"):
        first.train()  # a second train() on the same callback
    second, _, _, ran = guarded(10**15, [16] * 8, max_steps=2)
    with pytest.raises(ExperimentAlreadyRun, match="name a new experiment"):
        second.train()
    assert ran.forwards == []
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert not any(c.is_rerun for c in ledger.charges()) and len(ledger.charges()) == 2


@pytest.mark.slow  # ~20 s each: the real tokenizer's 151k-row vocabulary
@pytest.mark.parametrize("packing", [False, True])
def test_sft_trainer_with_padding_or_packing_pays_every_forward_before_it_runs(tiny_qwen2, tmp_path, harness,
                                                                               qwen_tokenizer, packing):
    import trl
    from datasets import Dataset

    model = tiny_qwen2(vocab_size=qwen_tokenizer.vocab_size + 256)
    setup = CountSetup.of(model.config)
    texts = [f"{i % 10}.{i % 7}{i % 3},{i % 5}.{i % 9}{i % 4};" * (1 + i % 6) for i in range(24)]
    limit = 5 * training_step_flops(setup, 2, 64) + 3 * 10**6
    callback = BudgetCallback(limit, tmp_path / "ledger.sqlite", "sft", setup, seq_len=8)  # 8: a wrong estimate
    config = trl.SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=12, per_device_train_batch_size=2,
                           gradient_accumulation_steps=2, report_to=[], use_cpu=True, save_strategy="no",
                           disable_tqdm=True, max_length=64, packing=packing, eval_strategy="steps", eval_steps=2,
                           per_device_eval_batch_size=3)
    dataset = Dataset.from_dict({"text": texts})
    trainer = trl.SFTTrainer(model=model, args=config, train_dataset=dataset, eval_dataset=dataset.select(range(5)),
                             processing_class=qwen_tokenizer, callbacks=[callback])
    ran = harness.RanForwards().watch(model)
    try:
        trainer.train()
    except BudgetExceeded:
        pass
    assert max(n for _, _, n in ran.forwards) > 8  # the real rows are longer than the declared 8 tokens
    harness.assert_guarded(tmp_path / "ledger.sqlite", limit, ran, setup)


def test_a_resumed_trainer_does_not_charge_its_finished_steps_again(guarded, tmp_path, harness):
    guarded(10**15, [16] * 40, max_steps=6)[0].train()
    resumed, _, _, ran = guarded(10**15, [16] * 40, max_steps=9)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-6"))
    assert resumed.state.global_step == 9 and len(ran.forwards) == 3
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        charges = ledger.charges()
        (usage,) = ledger.snapshot().experiments
    assert [c.step for c in charges] == list(range(1, 10)) and not any(c.is_rerun for c in charges)
    assert usage.sessions == 2 and usage.status == "finished"


def test_a_scheduled_evaluation_the_budget_cannot_pay_stops_training_cleanly(guarded, tmp_path, harness,
                                                                                  tiny_qwen2):
    setup = CountSetup.of(tiny_qwen2().config)
    step = training_step_flops(setup, 2, 16)
    evaluation = 3 * forward_flops(setup, 16, 2).total
    limit = 4 * step + evaluation + evaluation // 2  # steps 1-4, one evaluation; not a second one
    trainer, callback, setup, ran = guarded(limit, [16] * 40, eval_lengths=[16] * 6, eval_strategy="steps",
                                            eval_steps=2)
    trainer.train()
    assert trainer.state.global_step == 4 and "scheduled evaluation at step 4" in callback.stop_reason
    harness.assert_guarded(tmp_path / "ledger.sqlite", limit, ran, setup)



def test_a_budget_that_cannot_pay_the_first_step_runs_no_forward(guarded, tmp_path, tiny_qwen2):
    limit = training_step_flops(CountSetup.of(tiny_qwen2().config), 2, 16) - 1
    trainer, callback, setup, ran = guarded(limit, [16] * 8)
    with pytest.raises(BudgetExceeded, match="train step 1"):
        trainer.train()
    assert ran.forwards == [] and trainer.state.global_step == 0
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        (usage,) = ledger.snapshot().experiments
        assert ledger.spent == 0 and usage.status == "stopped"


def test_eval_examples_of_earlier_versions_is_accepted_and_evaluations_are_charged_from_their_batches(
        tiny_qwen2, tmp_path, harness):
    """Code written for the callback that charged evaluations from ``eval_examples`` still runs: the
    argument is ignored with a warning and the real batches are charged."""
    model = tiny_qwen2()
    setup = CountSetup.of(model.config)
    with pytest.warns(DeprecationWarning, match="eval_examples"):
        callback = BudgetCallback(10**15, tmp_path / "ledger.sqlite", "old", setup, seq_len=16, eval_examples=1)
    trainer = harness.make_trainer(model, tmp_path, callback, harness.TokenRows([16] * 4),
                                   eval_set=harness.TokenRows([16] * 6, seed=1), max_steps=1, save_strategy="no")
    trainer.train()
    trainer.evaluate()
    validation = [c for c in harness.ledger_charges(tmp_path / "ledger.sqlite") if c[0] == "validation"]
    assert sum(c[2] for c in validation) == 6 * 16


def test_a_finished_run_without_checkpoints_loses_no_work(tiny_qwen2, tmp_path, harness):
    """``save_strategy="no"``: the run keeps no checkpoints, so the audit shows none of its steps as
    lost to interruptions (they were all marked lost when the start was recorded as a checkpoint)."""
    model = tiny_qwen2()
    callback = BudgetCallback(10**15, tmp_path / "ledger.sqlite", "no-saves", CountSetup.of(model.config))
    harness.make_trainer(model, tmp_path, callback, harness.TokenRows([16] * 4), max_steps=2, save_strategy="no").train()
    report = audit_report(tmp_path / "ledger.sqlite")
    assert report.lost == 0 and report.useful == report.total > 0
