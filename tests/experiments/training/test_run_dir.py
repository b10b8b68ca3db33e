"""Run directories: one configuration each, compared field by field; nothing of another kind touched.
(A resume from a saved checkpoint is tested with the checkpoints, test_checkpoint.py.)"""

from __future__ import annotations

import json

import pytest

from experiments.training.run_dir import (
    RUN_CONFIG,
    ConfigMismatch,
    config_differences,
    config_hash,
    open_run_dir,
    read_run_config,
)

RUN_CONFIG_A = {"train": {"learning_rate": 1e-3, "lora_rank": 4}, "data": {"precision": 2}}


def test_a_fresh_run_over_another_configs_directory_is_refused(tmp_path):
    open_run_dir(tmp_path / "run", RUN_CONFIG_A)
    with pytest.raises(ConfigMismatch, match=r"data.precision: 2 -> 3"):
        open_run_dir(tmp_path / "run", {**RUN_CONFIG_A, "data": {"precision": 3}})


def test_a_directory_that_is_not_a_run_directory_is_left_alone(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="not a run directory"):
        open_run_dir(tmp_path, RUN_CONFIG_A)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_the_hash_and_the_differences_ignore_key_order_and_name_nested_fields():
    shuffled = {"data": {"precision": 2}, "train": {"lora_rank": 4, "learning_rate": 1e-3}}
    assert config_hash(shuffled) == config_hash(RUN_CONFIG_A) != config_hash({**RUN_CONFIG_A, "seed": 0})
    assert config_differences(RUN_CONFIG_A, shuffled) == []
    assert config_differences(RUN_CONFIG_A, {"train": {"learning_rate": 1e-3}, "seed": 1}) == [
        "data: {'precision': 2} -> '<absent>'", "seed: '<absent>' -> 1", "train.lora_rank: 4 -> '<absent>'"]


def test_a_new_run_directory_records_its_config_and_reads_it_back(tmp_path):
    assert open_run_dir(tmp_path / "run", RUN_CONFIG_A) is None  # nothing to resume
    assert read_run_config(tmp_path / "run" / RUN_CONFIG) == RUN_CONFIG_A
    assert open_run_dir(tmp_path / "run", json.loads(json.dumps(RUN_CONFIG_A))) is None
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="does not hold a JSON object"):
        read_run_config(tmp_path / "list.json")
    with pytest.raises(ValueError, match="cannot read the run configuration"):
        read_run_config(tmp_path / "missing.json")


def test_a_directory_that_is_not_a_run_directory_is_left_alone(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match=r"is not empty \(thesis.tex\) .* not a training run directory"):
        open_run_dir(tmp_path, RUN_CONFIG_A)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_a_checkpoint_resumes_only_the_run_whose_data_order_it_continues(tmp_path):
    from dataclasses import replace

    from experiments.training.checkpoint import TrainerState
    from experiments.training.run_dir import ConfigMismatch, check_resumable

    saved = TrainerState(step=4, seed=0, data_order_seed=0, world_size=1, config_hash="abc",
                         train_windows_digest="d1")
    check_resumable(saved, replace(saved, step=0), tmp_path)  # the same run, started afresh: resumes
    for field, value, meaning in (("world_size", 2, "process count"), ("train_windows_digest", "d2", "training windows"),
                                  ("data_order_seed", 1, "data order seed")):
        with pytest.raises(ConfigMismatch, match=rf"cannot resume from {tmp_path}: not the same {meaning}"):
            check_resumable(saved, replace(saved, step=0, **{field: value}), tmp_path)
