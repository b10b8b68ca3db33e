"""The loop's trainer options: mixed precision, learning-rate schedules, gradient accumulation,
and how each is charged (the FLOP charges never depend on precision or schedule)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import get_scheduler

from experiments.data import DataConfig, prepare_data
from experiments.models.loading import build_tiny_model
from experiments.training.checkpoint import ADAPTER, OPTIMIZER_STATE, checkpoint_path
from experiments.training.config import BudgetConfig, TrainConfig
from experiments.training.distributed import make_accelerator
from experiments.training.loop import train
from experiments.training.metrics_log import read_metrics
from flopcount import CountSetup, Ledger, audit_report, forward_flops, training_step_flops
from lora import ADAPTER_WEIGHTS, trainable_parameters

CONTEXT = 32


@pytest.fixture(scope="module")
def data(qwen_tokenizer):
    return prepare_data(DataConfig(simulate_systems=10), qwen_tokenizer)


def config(**overrides) -> TrainConfig:
    fields = dict(experiment="lora", steps=4, batch_size=2, context=CONTEXT, learning_rate=2e-3, eval_every=2,
                  eval_windows=2, checkpoint_every=2, keep_checkpoints=5)
    return TrainConfig(**{**fields, **overrides})


def run(data, tmp_path, name: str, **overrides):
    model = build_tiny_model()
    result = train(model, data, config(**overrides), tmp_path / name, BudgetConfig(10**17, tmp_path / f"{name}.sqlite"),
                   progress=False)
    return model, result


def charges(path):
    with Ledger(path) as ledger:
        return ledger.charges()


def test_bf16_autocast_charges_the_same_flops_and_loses_about_the_same(data, tmp_path):
    _, plain = run(data, tmp_path, "no", mixed_precision="no")
    model, mixed = run(data, tmp_path, "bf16", mixed_precision="bf16")
    assert [(c.phase, c.step, c.flops) for c in charges(tmp_path / "no.sqlite")] == \
        [(c.phase, c.step, c.flops) for c in charges(tmp_path / "bf16.sqlite")]
    assert mixed.final_train_loss == pytest.approx(plain.final_train_loss, rel=0.02)
    assert mixed.last_val_loss == pytest.approx(plain.last_val_loss, rel=0.02)
    assert mixed.final_train_loss != plain.final_train_loss  # autocast really ran in bf16
    assert {p.dtype for p in trainable_parameters(model).values()} == {torch.float32}  # the adapter stays fp32
    state = torch.load(mixed.checkpoint / OPTIMIZER_STATE, weights_only=True)["state"]
    assert {t.dtype for s in state.values() for t in (s["exp_avg"], s["exp_avg_sq"])} == {torch.float32}


def test_a_run_refuses_an_accelerator_of_another_precision(data, tmp_path):
    accelerator = make_accelerator(cpu=True, mixed_precision="no")
    with pytest.raises(ValueError, match="autocasts 'no' but the run asks for 'bf16'"):
        train(build_tiny_model(), data, config(mixed_precision="bf16"), tmp_path / "r",
              BudgetConfig(10**17, tmp_path / "l.sqlite"), accelerator=accelerator, progress=False)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_the_learning_rate_follows_the_schedule(data, tmp_path, schedule):
    _, result = run(data, tmp_path, schedule, steps=6, lr_schedule=schedule, warmup_steps=2)
    logged = [record["lr"] for record in read_metrics(result.metrics_path, kind="train")]
    name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[schedule]
    reference = get_scheduler(name, torch.optim.SGD([torch.zeros(1)], lr=2e-3), num_warmup_steps=2,
                              num_training_steps=6)
    expected = []
    for _ in range(6):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step()
        reference.step()
    assert logged == pytest.approx(expected, abs=1e-12)
    assert logged[0] == 0.0 and logged[2] == pytest.approx(2e-3)  # warmup from 0 to the peak
    if schedule != "constant":
        assert logged[-1] < logged[2] / 2


def test_resume_continues_the_schedule_bit_identically(data, tmp_path):
    overrides = dict(steps=6, lr_schedule="cosine", warmup_steps=2, checkpoint_every=3)
    _, whole = run(data, tmp_path, "whole", **overrides)
    model = build_tiny_model()
    ledger = BudgetConfig(10**17, tmp_path / "parts.sqlite", require_fit=False)
    # stop after step 3 by a cap on this experiment's FLOPs, then resume without it
    setup = CountSetup.of(model.config, lora_rank=4)
    step, validation = training_step_flops(setup, 2, CONTEXT), forward_flops(setup, CONTEXT, 2).total
    capped = BudgetConfig(10**17, tmp_path / "parts.sqlite", require_fit=False,
                          experiment_limit=3 * step + validation + step // 2)
    first = train(model, data, config(**overrides), tmp_path / "parts", capped, progress=False)
    assert first.status == "stopped" and first.steps_done == 3
    resumed = train(build_tiny_model(), data, config(**overrides), tmp_path / "parts", ledger, progress=False)
    assert (resumed.status, resumed.resumed_from) == ("finished", 3)
    a = load_file(whole.checkpoint / ADAPTER / ADAPTER_WEIGHTS)
    b = load_file(resumed.checkpoint / ADAPTER / ADAPTER_WEIGHTS)
    assert all(torch.equal(a[name], b[name]) for name in a)
    lrs = lambda path: [r["lr"] for r in read_metrics(path, kind="train")]  # noqa: E731
    assert lrs(resumed.metrics_path) == lrs(whole.metrics_path)


def test_accumulation_charges_every_micro_batch_before_it_runs(data, tmp_path):
    _, one = run(data, tmp_path, "accum1", grad_accum_steps=1)
    _, two = run(data, tmp_path, "accum2", grad_accum_steps=2)
    first, second = charges(tmp_path / "accum1.sqlite"), charges(tmp_path / "accum2.sqlite")
    train_one = [c for c in first if c.phase == "train"]
    train_two = [c for c in second if c.phase == "train"]
    assert sum(c.flops for c in train_two) == 2 * sum(c.flops for c in train_one)
    assert [c.step for c in train_two] == [1, 1, 2, 2, 3, 3, 4, 4]  # two micro-batches per optimizer step
    assert [c.payload for c in train_two[:2]] == [{"micro_batch": 1, "of": 2}, {"micro_batch": 2, "of": 2}]
    assert not any(c.is_rerun for c in second)
    assert [c.flops for c in second if c.phase == "validation"] == [c.flops for c in first if c.phase == "validation"]
    assert [r["micro_batches"] for r in read_metrics(two.metrics_path, kind="train")] == [2, 2, 2, 2]
    (row,) = audit_report(tmp_path / "accum2.sqlite").rows
    assert row.steps == 4  # optimizer steps; the charges are the micro-batches
    assert two.steps_done == 4 and math.isfinite(two.final_train_loss)


def test_accumulating_two_micro_batches_is_one_batch_of_twice_the_size(data, tmp_path):
    """The gradient of the token-weighted mean over both micro-batches: the same update (to
    float rounding) as one batch holding the same windows."""
    _, accumulated = run(data, tmp_path, "micro", batch_size=2, grad_accum_steps=2, steps=3, eval_every=0)
    _, single = run(data, tmp_path, "whole", batch_size=4, grad_accum_steps=1, steps=3, eval_every=0)
    losses = lambda result: [r["loss"] for r in read_metrics(result.metrics_path, kind="train")]  # noqa: E731
    assert losses(accumulated) == pytest.approx(losses(single), rel=1e-5)
    a = load_file(checkpoint_path(tmp_path / "micro", 3) / ADAPTER / ADAPTER_WEIGHTS)
    b = load_file(checkpoint_path(tmp_path / "whole", 3) / ADAPTER / ADAPTER_WEIGHTS)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)


def test_a_non_finite_loss_stops_the_run_cleanly_with_the_last_finite_adapter(data, tmp_path):
    """The loss of step 3 turns NaN (a forward hook on the real model's lm_head): the step is
    not applied, the run stops with the reason in the ledger and keeps step 2's adapter."""
    model, calls = build_tiny_model(), []

    def poison(module, args, output):
        calls.append(1)
        return output * float("nan") if len(calls) == 3 else output

    model.lm_head.register_forward_hook(poison)
    result = train(model, data, config(steps=6, eval_every=0, checkpoint_every=1), tmp_path / "nan",
                   BudgetConfig(10**17, tmp_path / "nan.sqlite"), progress=False)
    assert (result.status, result.steps_done) == ("stopped", 2)
    assert result.stop_reason.startswith("non-finite training loss at step 3")
    assert not result.stopped_by_budget  # stopped, but not by the budget: the CLI exits 5, not 4
    assert result.checkpoint == checkpoint_path(tmp_path / "nan", 2)
    weights = load_file(result.checkpoint / ADAPTER / ADAPTER_WEIGHTS)
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    with Ledger(tmp_path / "nan.sqlite") as ledger:
        (usage,) = ledger.snapshot().experiments
    assert usage.status == "stopped" and usage.stop_reason == result.stop_reason


def test_report_to_tensorboard_logs_every_metric_and_the_flops_charged(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, result = run(data, tmp_path, "tb", report_to=("tensorboard",))
    (events,) = (tmp_path / "tb" / "trackers" / "lora").glob("events.out.tfevents.*")  # (hparams: a subfolder)
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    scalars = lambda tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]  # noqa: E731
    train = read_metrics(result.metrics_path, kind="train")
    assert scalars("train/loss") == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in train]
    assert [v for _, v in scalars("train/flops_spent_total")] == pytest.approx([r["flops_spent_total"] for r in train])
    with Ledger(tmp_path / "tb.sqlite") as ledger:
        assert scalars("validation/flops_spent_total")[-1][1] == pytest.approx(ledger.spent)
    assert [step for step, _ in scalars("validation/val_loss")] == [2, 4]
    with pytest.raises(ValueError, match="report_to must be distinct names"):
        TrainConfig(report_to=("tensorbored",))
    assert TrainConfig(report_to=("none",)).report_to == ()
