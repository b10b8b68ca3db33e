"""The base builder: its record, its FLOPs against the analytic count, determinism, resume."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from experiments.basemodel import pretrain
from experiments.basemodel.pretrain import CHECKPOINTS, RECORD_FILE, build_base, learning_rate, read_record
from experiments.basemodel.recipe import BUILDER_VERSION, DEMO_RECIPE, BaseRecipe
from experiments.models.loading import load_model, tiny_config
from experiments.training.interrupts import RunInterrupted
from flopcount import Ledger, forward_flops, training_step_flops

# A build of seconds: 6 steps of 2 rows of 256 tokens, validated after steps 3 and 6.
SMALL = BaseRecipe(name="small", sequences=48, validation_sequences=8, context=256,
                   batch_size=2, steps=6, warmup_steps=2, eval_every=3, eval_rows=4, checkpoint_every=2)


def weights(directory) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def small_base(tmp_path_factory, qwen_assets):
    directory = tmp_path_factory.mktemp("small-base")
    return directory, build_base(SMALL, directory, tokenizer_source=qwen_assets, progress=False)


def test_the_build_writes_an_ordinary_checkpoint_with_its_record(small_base, qwen_tokenizer):
    directory, record = small_base
    assert {"config.json", "model.safetensors", "tokenizer.json", "ledger.sqlite", RECORD_FILE} <= \
        {path.name for path in directory.iterdir()}
    assert not (directory / CHECKPOINTS).exists()  # removed once the base is complete
    assert read_record(directory) == json.loads((directory / RECORD_FILE).read_text()) == record
    assert record["status"] == "complete" and record["builder_version"] == BUILDER_VERSION
    assert record["recipe"] == SMALL.to_dict() and record["steps"] == 6 and record["seed"] == 0
    assert record["recipe_hash"] == SMALL.recipe_hash(tuple(record["alphabet_ids"]))
    assert record["rows"] == {"train": 48, "validation": 8, "scaled_by_first_steps": record["rows"][
        "scaled_by_first_steps"], "truncated": 56}  # every 100-step text is longer than 256 tokens
    assert [v["step"] for v in record["losses"]["validations"]] == [3, 6]
    assert record["losses"]["first_train"] > 11  # about log(151,936): the random start
    assert record["losses"]["final_train"] < record["losses"]["first_train"]
    model = load_model(directory)
    assert model.config.vocab_size == tiny_config().vocab_size
    ids = torch.tensor([qwen_tokenizer.encode("1.25,0.50;1.30,0.48;", add_special_tokens=False)])
    with torch.no_grad():
        assert model(input_ids=ids).logits.shape == (1, ids.shape[1], 151_936)


def test_its_flops_are_the_analytic_count_of_its_steps(small_base):
    directory, record = small_base
    step = training_step_flops(tiny_config(), 2, 256)  # coursework, full vocabulary, 3 x forward
    validation = forward_flops(tiny_config(), 256, batch=4).total
    expected = 6 * step + 2 * validation
    flops = record["flops"]
    assert flops["analytic"]["total"] == expected and flops["analytic"]["per_step"] == step
    assert flops["ledger"]["total"] == flops["ledger"]["useful"] == expected and flops["ledger"]["rerun"] == 0
    assert flops["ledger"]["by_phase"] == {"train": 6 * step, "validation": 2 * validation, "generation": 0}
    assert 0 < flops["analytic"]["compact_total"] < expected / 10  # what the 14-row head really computes
    with Ledger(directory / "ledger.sqlite") as ledger:
        charges = ledger.charges()
    assert [(c.phase, c.step) for c in charges] == [("train", 1), ("train", 2), ("train", 3), ("validation", 3),
                                                    ("train", 4), ("train", 5), ("train", 6), ("validation", 6)]
    assert sum(c.tokens for c in charges if c.phase == "train") == record["tokens"]


def test_a_build_is_deterministic_for_a_seed(small_base, tmp_path, qwen_assets):
    directory, record = small_base
    again = build_base(SMALL, tmp_path / "again", tokenizer_source=qwen_assets, progress=False)
    assert same(weights(directory), weights(tmp_path / "again"))
    assert again["losses"]["validations"] == record["losses"]["validations"]
    other = build_base(replace(SMALL, seed=1), tmp_path / "other", tokenizer_source=qwen_assets, progress=False)
    assert other["recipe_hash"] != record["recipe_hash"]
    assert not same(weights(directory), weights(tmp_path / "other"))


def test_an_interrupted_build_resumes_to_the_same_weights(small_base, tmp_path, qwen_assets):
    directory, _ = small_base
    partial = build_base(SMALL, tmp_path / "resumed", tokenizer_source=qwen_assets, progress=False, stop_after=3)
    assert partial["status"] == "building" and read_record(tmp_path / "resumed")["status"] == "building"
    assert [p.name for p in (tmp_path / "resumed" / CHECKPOINTS).iterdir()] == ["step-00000003"]
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    record = build_base(SMALL, tmp_path / "resumed", tokenizer_source=qwen_assets, progress=False)
    assert record["status"] == "complete" and record["flops"]["ledger"]["sessions"] == 2
    assert record["flops"]["ledger"]["rerun"] == 0  # it stopped on a checkpoint
    assert same(weights(directory), weights(tmp_path / "resumed"))


def test_steps_lost_to_a_crash_are_charged_again_as_re_runs(small_base, tmp_path, qwen_assets, monkeypatch):
    directory, clean = small_base
    step = pretrain._train_step

    def crash_at_step_4(*args):
        if len(crash_at_step_4.calls) == 3:  # after the checkpoint of step 2 and step 3
            raise KeyboardInterrupt
        crash_at_step_4.calls.append(1)
        return step(*args)

    crash_at_step_4.calls = []
    monkeypatch.setattr(pretrain, "_train_step", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        build_base(SMALL, tmp_path / "crashed", tokenizer_source=qwen_assets, progress=False)
    monkeypatch.setattr(pretrain, "_train_step", step)
    record = build_base(SMALL, tmp_path / "crashed", tokenizer_source=qwen_assets, progress=False)
    analytic = clean["flops"]["analytic"]
    # resumed from step 2: steps 3 and 4 and the validation after step 3 were paid for twice
    assert record["flops"]["ledger"]["rerun"] == 2 * analytic["per_step"] + analytic["per_validation"]
    assert record["flops"]["ledger"]["useful"] == clean["flops"]["analytic"]["total"]
    assert same(weights(directory), weights(tmp_path / "crashed"))


def test_ctrl_c_stops_at_the_step_boundary_checkpointed_and_the_resume_repeats_nothing(small_base, tmp_path,
                                                                                       qwen_assets, monkeypatch):
    directory, clean = small_base
    step = pretrain._train_step

    def ctrl_c_during_step_3(*args):
        ctrl_c_during_step_3.calls += 1
        if ctrl_c_during_step_3.calls == 3:
            os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, in the middle of the step
        return step(*args)

    ctrl_c_during_step_3.calls = 0
    monkeypatch.setattr(pretrain, "_train_step", ctrl_c_during_step_3)
    with pytest.raises(RunInterrupted, match="interrupted \\(Ctrl-C\\) after step 3 of 6") as stopped:
        build_base(SMALL, tmp_path / "stopped", tokenizer_source=qwen_assets, progress=False)
    assert stopped.value.step == 3 and ctrl_c_during_step_3.calls == 3  # step 3 finished, step 4 never began
    assert [p.name for p in (tmp_path / "stopped" / CHECKPOINTS).iterdir()] == ["step-00000003"]  # not a multiple of 2
    monkeypatch.setattr(pretrain, "_train_step", step)
    record = build_base(SMALL, tmp_path / "stopped", tokenizer_source=qwen_assets, progress=False)
    assert record["flops"]["ledger"]["rerun"] == 0 and record["flops"]["ledger"]["sessions"] == 2
    assert same(weights(directory), weights(tmp_path / "stopped"))


def test_a_directory_of_another_recipe_is_refused(small_base, qwen_assets):
    directory, _ = small_base
    with pytest.raises(FileExistsError, match="recipe"):
        build_base(replace(SMALL, steps=7), directory, tokenizer_source=qwen_assets, progress=False)
    assert read_record(directory)["steps"] == 6


def test_the_learning_rate_warms_up_then_decays_to_its_floor():
    recipe = replace(DEMO_RECIPE, steps=1000, warmup_steps=100, learning_rate=1e-3, min_lr_ratio=0.1)
    rates = [learning_rate(recipe, step) for step in range(1, 1001)]
    assert rates[0] == pytest.approx(1e-5) and rates[99] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[99:], rates[100:]))
    assert rates[-1] == pytest.approx(1e-4)
