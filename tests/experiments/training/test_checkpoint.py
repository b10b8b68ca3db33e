"""Checkpoints (atomic save, rotation, exact restore) and run directories (one config each)."""

from __future__ import annotations

import json

import pytest
import torch

from experiments.training.checkpoint import (
    TrainerState,
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from experiments.models.loading import build_tiny_model
from experiments.training.run_dir import RUN_CONFIG, ConfigMismatch, config_hash, open_run_dir
from lora import inject, lora_state_dict, trainable_parameters

RUN_CONFIG_A = {"train": {"learning_rate": 1e-3, "lora_rank": 4}, "data": {"precision": 2}}


def state(step: int, config: dict = RUN_CONFIG_A) -> TrainerState:
    return TrainerState(step=step, seed=0, data_order_seed=0, world_size=1, config_hash=config_hash(config),
                        train_windows_digest="d", last_val_loss=1.5, best_val_loss=1.25, best_val_step=step)


def trained_lora_model(steps: int = 2):
    """A tiny LoRA model and its Adam after ``steps`` steps on random gradients (non-trivial state)."""
    model = build_tiny_model(seed=0)
    inject(model, r=2)
    optimizer = torch.optim.Adam(trainable_parameters(model).values(), lr=1e-2)
    generator = torch.Generator().manual_seed(5)
    for _ in range(steps):
        for parameter in trainable_parameters(model).values():
            parameter.grad = torch.randn(parameter.shape, generator=generator)
        optimizer.step()
    return model, optimizer


def save(run_dir, step, model, optimizer, keep=2):
    return save_checkpoint(run_dir, state(step), model=model, optimizer=optimizer, rng_states=[capture_rng_state()],
                           run_config=RUN_CONFIG_A, keep=keep)


def test_a_checkpoint_restores_adapter_optimizer_and_rng_exactly(tmp_path):
    model, optimizer = trained_lora_model()
    checkpoint = save(tmp_path, 7, model, optimizer)
    expected_draw = torch.rand(4)  # what the RNG gives right after the save

    fresh_model, fresh_optimizer = trained_lora_model(steps=0)
    torch.manual_seed(123)
    load_checkpoint(read_checkpoint(checkpoint.path), model=fresh_model, optimizer=fresh_optimizer)
    assert torch.equal(torch.rand(4), expected_draw)
    for name, tensor in lora_state_dict(model).items():
        assert torch.equal(lora_state_dict(fresh_model)[name], tensor), name
    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert saved["state"].keys() == loaded["state"].keys()
    for index, entry in saved["state"].items():
        for key, value in entry.items():
            assert torch.equal(loaded["state"][index][key], value), (index, key)
    assert read_checkpoint(checkpoint.path).state == state(7)
    assert json.loads((checkpoint.path / RUN_CONFIG).read_text()) == RUN_CONFIG_A


def test_rotation_keeps_the_newest_and_touches_nothing_else(tmp_path):
    model, optimizer = trained_lora_model(steps=1)
    user_file = tmp_path / "checkpoints" / "notes.txt"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("mine")
    for step in (10, 20, 30):
        save(tmp_path, step, model, optimizer, keep=2)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [20, 30]
    assert latest_checkpoint(tmp_path).step == 30
    assert user_file.read_text() == "mine"


def test_a_half_written_checkpoint_is_never_the_latest_and_is_cleared_by_the_next_save(tmp_path):
    model, optimizer = trained_lora_model(steps=1)
    save(tmp_path, 10, model, optimizer)
    crashed = tmp_path / "checkpoints" / ".tmp-step-00000020"  # a save killed before its rename
    (crashed / "adapter").mkdir(parents=True)
    incomplete = checkpoint_path(tmp_path, 30)  # not ours: a step directory without trainer state
    incomplete.mkdir()
    assert latest_checkpoint(tmp_path).step == 10
    save(tmp_path, 20, model, optimizer)
    assert not crashed.exists()
    assert latest_checkpoint(tmp_path).step == 20


def test_an_existing_checkpoint_is_never_overwritten(tmp_path):
    model, optimizer = trained_lora_model(steps=1)
    save(tmp_path, 10, model, optimizer)
    before = (checkpoint_path(tmp_path, 10) / "optimizer.pt").read_bytes()
    _, more_steps = trained_lora_model(steps=3)
    with pytest.raises(FileExistsError, match="step 10 already exists"):
        save(tmp_path, 10, model, more_steps)
    assert (checkpoint_path(tmp_path, 10) / "optimizer.pt").read_bytes() == before


def test_a_directory_without_trainer_state_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        read_checkpoint(tmp_path)


# -- run directories ---------------------------------------------------------------------------


def test_a_run_directory_resumes_its_own_config_only(tmp_path):
    run_dir = tmp_path / "run"
    assert open_run_dir(run_dir, RUN_CONFIG_A) is None
    assert json.loads((run_dir / RUN_CONFIG).read_text()) == RUN_CONFIG_A
    model, optimizer = trained_lora_model(steps=1)
    save(run_dir, 5, model, optimizer)
    assert open_run_dir(run_dir, json.loads(json.dumps(RUN_CONFIG_A))).step == 5

    other = {**RUN_CONFIG_A, "train": {"learning_rate": 1e-2, "lora_rank": 4, "seed": 1}}
    with pytest.raises(ConfigMismatch) as refused:
        open_run_dir(run_dir, other)
    message = str(refused.value)
    assert "train.learning_rate: 0.001 -> 0.01" in message and "train.seed: '<absent>' -> 1" in message
    assert "lora_rank" not in message
    assert json.loads((run_dir / RUN_CONFIG).read_text()) == RUN_CONFIG_A


def test_a_fresh_run_over_another_configs_directory_is_refused(tmp_path):
    open_run_dir(tmp_path / "run", RUN_CONFIG_A)
    with pytest.raises(ConfigMismatch, match=r"data.precision: 2 -> 3"):
        open_run_dir(tmp_path / "run", {**RUN_CONFIG_A, "data": {"precision": 3}})


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    open_run_dir(run_dir, RUN_CONFIG_A)
    model, optimizer = trained_lora_model(steps=1)
    other = {**RUN_CONFIG_A, "data": {"precision": 3}}
    save_checkpoint(run_dir, state(5, other), model=model, optimizer=optimizer, rng_states=[capture_rng_state()],
                    run_config=other, keep=2)  # e.g. copied in from another run
    with pytest.raises(ConfigMismatch, match=r"step-00000005.*data.precision: 3 -> 2"):
        open_run_dir(run_dir, RUN_CONFIG_A)


def test_a_directory_that_is_not_a_run_directory_is_left_alone(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match=r"is not empty \(thesis.tex\) .* not a training run directory"):
        open_run_dir(tmp_path, RUN_CONFIG_A)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]
