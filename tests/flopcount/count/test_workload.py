"""RunPlan, its evaluation schedule, estimates and the affordable number of steps."""

import dataclasses

import pytest

from flopcount import PRESETS, RunPlan, estimate_run, forward_flops, generation_flops, max_affordable_steps, \
    training_step_flops

Q = PRESETS["qwen2.5-0.5b"]


@pytest.mark.parametrize("steps, every, expected", [
    (10, 3, [3, 6, 9, 10]),
    (9, 3, [3, 6, 9]),
    (2, 5, [2]),
    (10, 0, []),
    (0, 3, []),
])
def test_evaluation_schedule(steps, every, expected):
    assert RunPlan(steps=steps, batch=1, seq_len=8, eval_every=every).evaluation_steps() == expected


def test_estimate_adds_up_the_phases():
    plan = RunPlan(steps=25, batch=4, seq_len=128, lora_rank=8, eval_every=10, eval_windows=3, gen_series=2,
                   gen_prompt_len=60, gen_new_tokens=20, gen_samples=3)
    for convention in ("coursework", "exact"):
        estimate = estimate_run(Q, plan, convention)
        step = training_step_flops(Q, 4, 128, 8, convention)
        window = forward_flops(Q, 128, 1, 8, convention).total
        series = generation_flops(Q, 60, 20, samples=3, lora_rank=8, convention=convention).total
        assert estimate.per_step == step and estimate.training == 25 * step
        assert estimate.validation == 3 * 3 * window  # after steps 10, 20 and the final 25
        assert estimate.generation == 2 * series
        assert estimate.total == 25 * step + 9 * window + 2 * series
        assert estimate.share(10**17) == estimate.total / 10**17
        assert estimate.to_dict()["total"] == estimate.total and estimate.to_dict()["plan"]["steps"] == 25


def test_max_affordable_steps_is_the_exact_boundary():
    plan = RunPlan(steps=1, batch=2, seq_len=64, lora_rank=4, eval_every=7, eval_windows=2, gen_series=1,
                   gen_prompt_len=32, gen_new_tokens=8)

    def cost(steps):
        return estimate_run(Q, plan.with_steps(steps)).total

    for available in (cost(0), cost(13), cost(14) - 1, cost(14), cost(49) + 5, 10**17):
        steps = max_affordable_steps(Q, plan, available)
        assert cost(steps) <= available < cost(steps + 1)
    assert max_affordable_steps(Q, plan, cost(0) - 1) == 0  # not even the generation fits
    assert max_affordable_steps(Q, plan, float(cost(20))) == 20


def test_plan_validation():
    with pytest.raises(ValueError, match="RunPlan.batch"):
        RunPlan(steps=1, batch=0, seq_len=8)
    with pytest.raises(ValueError, match="gen_prompt_len"):
        RunPlan(steps=1, batch=1, seq_len=8, gen_series=1, gen_new_tokens=4)
    with pytest.raises(ValueError, match="unknown LoRA target"):
        RunPlan(steps=1, batch=1, seq_len=8, lora_rank=2, lora_targets=["qkv"])
    with pytest.raises(ValueError, match="limit"):
        estimate_run(Q, RunPlan(steps=1, batch=1, seq_len=8)).share(0)
    with pytest.raises(ValueError, match="whole number"):
        max_affordable_steps(Q, RunPlan(steps=1, batch=1, seq_len=8), 1.5)
    plan = RunPlan(steps=1, batch=1, seq_len=8, lora_targets=["q_proj"])
    assert plan.lora_targets == ("q_proj",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps = 3
