"""The training loop in one process: learning, exact steps and charges, budget stops, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from experiments.training.checkpoint import OPTIMIZER_STATE, checkpoint_path, list_checkpoints
from experiments.data import DataConfig, prepare_data
from experiments.training.validation import validate, validation_indices
from experiments.training.loss import count_targets
from experiments.models.loading import build_tiny_model
from experiments.training.metrics_log import read_metrics
from experiments.training.run_dir import ConfigMismatch
from experiments.training.loop import ensure_lora, train
from experiments.training.config import BudgetConfig, TrainConfig
from flopcount import CountSetup, Ledger, PlanDoesNotFit, forward_flops, training_step_flops
from lora import ADAPTER_WEIGHTS, LoRAConfig, inject

CONTEXT = 64
BIG = 10**17


@pytest.fixture(scope="module")
def data(qwen_tokenizer):
    return prepare_data(DataConfig(simulate_systems=10), qwen_tokenizer)


def config(**overrides) -> TrainConfig:
    fields = dict(experiment="lora", steps=7, batch_size=4, context=CONTEXT, learning_rate=1e-3, eval_every=3,
                  eval_windows=4, checkpoint_every=3)
    return TrainConfig(**{**fields, **overrides})


def step_cost(model, batch: int = 4) -> int:
    return training_step_flops(CountSetup.of(model.config, lora_rank=4), batch, CONTEXT)


def validation_cost(model, windows: int = 4) -> int:
    return forward_flops(CountSetup.of(model.config, lora_rank=4), CONTEXT, windows).total


def charges(ledger, phase: str | None = None):
    with Ledger(ledger) as opened:
        return [c for c in opened.charges() if phase in (None, c.phase)]


def experiment_usage(ledger):
    with Ledger(ledger) as opened:
        (usage,) = opened.snapshot().experiments
    return usage


def test_a_short_run_lowers_the_training_and_the_validation_loss(tiny_model, data, tmp_path):
    validation = data.validation_windows(CONTEXT)
    before = validate(tiny_model, validation, validation_indices(len(validation), None, 0), batch_size=8)
    result = train(tiny_model, data, config(steps=20, learning_rate=1e-2, eval_every=20, eval_windows=None,
                                            checkpoint_every=20), tmp_path / "run",
                   BudgetConfig(BIG, tmp_path / "ledger.sqlite"), progress=False)
    losses = [record["loss"] for record in read_metrics(result.metrics_path, kind="train")]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1
    assert result.last_val_loss < before.cross_entropy_nats - 0.1
    assert result.best_val_step == 20 and result.last_val_perplexity == pytest.approx(np.exp(result.last_val_loss))


def test_exactly_the_asked_steps_run_each_charged_once_before_it_ran(tiny_model, data, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    result = train(tiny_model, data, config(), tmp_path / "run", BudgetConfig(BIG, ledger), progress=False)
    assert (result.status, result.steps_done, result.stop_reason) == ("finished", 7, None)
    assert not result.stopped_by_budget

    train_charges, validation_charges = charges(ledger, "train"), charges(ledger, "validation")
    assert [c.step for c in train_charges] == list(range(1, 8))
    assert {c.flops for c in train_charges} == {step_cost(tiny_model)}
    assert [c.step for c in validation_charges] == [3, 6, 7]  # every 3 steps, and after the last
    assert {c.flops for c in validation_charges} == {validation_cost(tiny_model)}
    assert result.flops_charged == sum(c.flops for c in charges(ledger)) == experiment_usage(ledger).flops
    assert experiment_usage(ledger).status == "finished"
    assert experiment_usage(ledger).config["train"]["steps"] == 7

    records = read_metrics(result.metrics_path)
    assert len(result.metrics_path.read_text().splitlines()) == 7 + 3
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["tokens"] for r in train_records] == [c.tokens for c in train_charges]
    assert [r["flops_spent_total"] for r in train_records] == sorted(r["flops_spent_total"] for r in train_records)

    # Validation scores held-out windows only: the same seeded subset of the validation split each time.
    validation = data.validation_windows(CONTEXT)
    subset = validation_indices(len(validation), 4, seed=0)
    assert {r["val_tokens"] for r in records if r["kind"] == "validation"} == {
        count_targets(validation.labels[subset])}
    assert set(validation.source[subset].tolist()) <= set(data.split.validation.tolist())

    assert [step for step, _ in list_checkpoints(result.run_dir)] == [6, 7]  # keep_checkpoints=2
    optimizer_state = torch.load(result.checkpoint / OPTIMIZER_STATE, weights_only=True)
    assert {float(entry["step"]) for entry in optimizer_state["state"].values()} == {7.0}


def test_budget_exhaustion_stops_cleanly_with_a_checkpoint_and_the_reason(tiny_model, data, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    per_step, per_validation = step_cost(tiny_model), validation_cost(tiny_model)
    limit = 6 * per_step + per_validation + per_step // 2  # steps 1-6 and the validation at 5 fit; 7 does not
    setup = config(steps=10, eval_every=5, checkpoint_every=100)
    partial = BudgetConfig(limit, ledger, require_fit=False)  # start although step 7 cannot be paid
    result = train(tiny_model, data, setup, tmp_path / "run", partial, progress=False)

    assert (result.status, result.steps_done) == ("stopped", 6)
    assert result.stop_reason.startswith("budget exhausted at train step 7") and result.stopped_by_budget
    assert result.checkpoint == checkpoint_path(tmp_path / "run", 6) and result.checkpoint.is_dir()
    usage = experiment_usage(ledger)
    assert (usage.status, usage.stop_reason) == ("stopped", result.stop_reason)
    assert [c.step for c in charges(ledger, "train")] == list(range(1, 7))
    assert usage.flops == 6 * per_step + per_validation <= limit
    assert len(read_metrics(result.metrics_path, kind="train")) == 6

    # Running it again resumes at step 6 and stops at once: nothing more is charged or written.
    again = train(build_tiny_model(), data, setup, tmp_path / "run", partial, progress=False)
    assert (again.status, again.steps_done, again.resumed_from, again.flops_charged) == ("stopped", 6, 6, 0)
    assert again.stopped_by_budget
    assert experiment_usage(ledger).flops == usage.flops


def test_a_validation_the_budget_cannot_pay_stops_after_its_step(tiny_model, data, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    limit = 5 * step_cost(tiny_model) + validation_cost(tiny_model) // 2
    result = train(tiny_model, data, config(steps=10, eval_every=5), tmp_path / "run",
                   BudgetConfig(limit, ledger, require_fit=False), progress=False)
    assert (result.status, result.steps_done, result.last_val_loss) == ("stopped", 5, None)
    assert result.stop_reason.startswith("budget exhausted at validation step 5") and result.stopped_by_budget
    assert result.checkpoint == checkpoint_path(tmp_path / "run", 5) and result.checkpoint.is_dir()
    assert charges(ledger, "validation") == []


def test_a_run_that_cannot_fit_is_refused_up_front_by_default(tiny_model, data, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    limit = 3 * step_cost(tiny_model)
    with pytest.raises(PlanDoesNotFit, match="the budget pays up to step 2") as refused:
        train(tiny_model, data, config(), tmp_path / "run", BudgetConfig(limit, ledger), progress=False)
    assert refused.value.max_steps == 2  # 3 steps, minus the validation after step 3
    assert charges(ledger) == [] and experiment_usage(ledger).status == "stopped"


def test_resuming_with_another_config_is_refused_before_any_charge(tiny_model, data, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    train(tiny_model, data, config(steps=1), tmp_path / "run", BudgetConfig(BIG, ledger), progress=False)
    spent = experiment_usage(ledger).flops
    with pytest.raises(ConfigMismatch, match=r"train.learning_rate: 0.001 -> 0.01"):
        train(build_tiny_model(), data, config(steps=1, learning_rate=1e-2), tmp_path / "run",
              BudgetConfig(BIG, ledger), progress=False)
    assert experiment_usage(ledger).flops == spent
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["train"]["learning_rate"] == 1e-3


def test_only_the_configured_lora_is_trained(tiny_model):
    inject(tiny_model, r=2)
    with pytest.raises(ValueError, match="already carries LoRA"):
        ensure_lora(tiny_model, LoRAConfig(r=4))
    tiny_model.model.norm.weight.requires_grad_(True)
    with pytest.raises(ValueError, match="model.norm.weight"):
        ensure_lora(tiny_model, LoRAConfig(r=2))


def test_the_seed_makes_a_run_reproducible(data, tmp_path):
    def adapter(seed: int, name: str) -> dict[str, torch.Tensor]:
        result = train(build_tiny_model(), data, config(steps=2, eval_every=0, seed=seed, experiment=name),
                       tmp_path / name, BudgetConfig(BIG, tmp_path / "ledger.sqlite"), progress=False)
        return load_file(result.checkpoint / "adapter" / ADAPTER_WEIGHTS)

    first, again, other = adapter(0, "a"), adapter(0, "b"), adapter(1, "c")  # three experiments, one ledger
    assert all(torch.equal(again[name], tensor) for name, tensor in first.items())
    assert not all(torch.equal(other[name], tensor) for name, tensor in first.items())
