"""The training config: checked on construction, the workload and count setup it implies, and its
JSON round trip."""

from __future__ import annotations

import pytest

from experiments.models.loading import tiny_config
from experiments.training.config import RUN_IDENTITY, TrainConfig
from flopcount import CountSetup, TrainingWorkload


def test_bad_trainer_options_are_refused():
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="step")


def test_the_workload_is_the_global_batch_and_needs_the_steps():
    config = TrainConfig(batch_size=4, context=64, eval_every=10, grad_accum_steps=2)
    with pytest.raises(ValueError, match="has no steps: set them with for_run"):
        config.workload(world_size=1, eval_windows=8)
    run = config.for_run("grid/r=8", 30)
    assert run.workload(world_size=2, eval_windows=8) == TrainingWorkload(
        steps=30, batch=8, seq_len=64, grad_accum_steps=2, eval_every=10, eval_windows=8)


def test_the_count_setup_carries_this_lora():
    config = TrainConfig(lora_rank=2, lora_targets=("q_proj", "o_proj"), lm_head_bias=True)
    setup = config.count_setup(tiny_config(), "exact")
    assert setup == CountSetup.of(tiny_config(), "exact", lora_rank=2, lora_targets=("q_proj", "o_proj"),
                                  lm_head_bias=True)


def test_settings_leave_out_the_run_identity_and_round_trip():
    run = TrainConfig(lora_targets=("q_proj", "k_proj"), report_to=("tensorboard",)).for_run("final", 12)
    assert set(run.to_dict()) - set(run.settings()) == set(RUN_IDENTITY)
    assert TrainConfig.from_dict(run.to_dict()) == run
    assert TrainConfig.from_dict(run.settings()) == TrainConfig(lora_targets=("q_proj", "k_proj"),
                                                                report_to=("tensorboard",))
