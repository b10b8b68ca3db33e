"""TrainingWorkload, its evaluation schedule, estimates and the steps that fit a budget."""

import dataclasses

import pytest

from flopcount import (
    PRESETS,
    CountSetup,
    TrainingWorkload,
    estimate_run,
    forward_flops,
    generation_flops,
    remaining_cost,
    steps_that_fit,
    training_step_flops,
)

Q = PRESETS["qwen2.5-0.5b"]


@pytest.mark.parametrize("steps, every, expected", [
    (10, 3, [3, 6, 9, 10]),
    (9, 3, [3, 6, 9]),
    (2, 5, [2]),
    (10, 0, []),
    (0, 3, []),
])
def test_evaluation_schedule(steps, every, expected):
    work = TrainingWorkload(steps=steps, batch=1, seq_len=8, eval_every=every)
    assert [step for step in range(-1, steps + 3) if work.validates_after(step)] == expected
    assert [work.validations_through(step) for step in range(steps + 1)] == [
        sum(1 for e in expected if e <= step) for step in range(steps + 1)]


def test_estimate_adds_up_the_phases():
    plan = TrainingWorkload(steps=25, batch=4, seq_len=128, eval_every=10, eval_windows=3, gen_series=2,
                            gen_prompt_len=60, gen_new_tokens=20, gen_samples=3)
    for convention in ("coursework", "exact"):
        estimate = estimate_run(CountSetup.of(Q, convention, lora_rank=8), plan)
        step = training_step_flops(CountSetup.of(Q, convention, lora_rank=8), 4, 128)
        window = forward_flops(CountSetup.of(Q, convention, lora_rank=8), 128, 1).total
        series = generation_flops(CountSetup.of(Q, convention, lora_rank=8), 60, 20, samples=3).total
        assert estimate.per_step == step and estimate.training == 25 * step
        assert estimate.validation == 3 * 3 * window  # after steps 10, 20 and the final 25
        assert estimate.generation == 2 * series
        assert estimate.total == 25 * step + 9 * window + 2 * series
        assert estimate.share(10**17) == estimate.total / 10**17
        assert estimate.to_dict()["total"] == estimate.total and estimate.to_dict()["workload"]["steps"] == 25


SETUP = CountSetup.of(Q, lora_rank=4)


def test_steps_that_fit_is_the_exact_boundary():
    plan = TrainingWorkload(steps=10**9, batch=2, seq_len=64, eval_every=7, eval_windows=2, gen_series=1,
                            gen_prompt_len=32, gen_new_tokens=8)

    def cost(steps):
        return estimate_run(SETUP, plan.with_steps(steps)).total

    for available in (cost(0), cost(13), cost(14) - 1, cost(14), cost(49) + 5, 10**17):
        steps = steps_that_fit(SETUP, plan, available)
        assert cost(steps) <= available < cost(steps + 1)
    assert steps_that_fit(SETUP, plan, cost(0) - 1) == 0  # not even the generation fits
    assert steps_that_fit(SETUP, plan, float(cost(20))) == 20
    assert steps_that_fit(SETUP, plan.with_steps(20), 10**17) == 20  # never more than the run has


def test_steps_that_fit_a_resumed_run_count_only_what_is_left():
    plan = TrainingWorkload(steps=40, batch=2, seq_len=64, eval_every=10, eval_windows=2)
    estimate = estimate_run(SETUP, plan)
    assert remaining_cost(estimate, 40, done=0) == estimate.total
    left = remaining_cost(estimate, 40, done=25)  # steps 26..40 and the validations after 30 and 40
    assert left == 15 * estimate.per_step + 2 * estimate.per_validation
    assert steps_that_fit(SETUP, plan, left, done=25) == 40
    assert steps_that_fit(SETUP, plan, left - 1, done=25) == 39  # step 40 ends the run: its validation stays
    assert steps_that_fit(SETUP, plan, 0, done=25) == 25


def test_steps_that_fit_is_closed_form_for_any_number_of_steps():
    plan = TrainingWorkload(steps=10**15, batch=4, seq_len=512, eval_every=1, eval_windows=8)
    available = 10**27  # about a tenth of the 10**15 steps
    steps = steps_that_fit(SETUP, plan, available)
    assert 0 < steps < plan.steps
    fitting, one_more = estimate_run(SETUP, plan.with_steps(steps)), estimate_run(SETUP, plan.with_steps(steps + 1))
    assert fitting.total <= available < one_more.total


def test_plan_validation():
    with pytest.raises(ValueError, match="TrainingWorkload.batch"):
        TrainingWorkload(steps=1, batch=0, seq_len=8)
    with pytest.raises(ValueError, match="gen_prompt_len"):
        TrainingWorkload(steps=1, batch=1, seq_len=8, gen_series=1, gen_new_tokens=4)
    with pytest.raises(ValueError, match="unknown LoRA target"):
        CountSetup.of(Q, lora_rank=2, lora_targets=["qkv"])
    with pytest.raises(ValueError, match="limit"):
        estimate_run(Q, TrainingWorkload(steps=1, batch=1, seq_len=8)).share(0)
    with pytest.raises(ValueError, match="whole number"):
        steps_that_fit(Q, TrainingWorkload(steps=1, batch=1, seq_len=8), 1.5)
    setup = CountSetup.of(Q, lora_rank=1, lora_targets=["q_proj"])
    assert setup.lora_targets == ("q_proj",)
    plan = TrainingWorkload(steps=1, batch=1, seq_len=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps = 3
