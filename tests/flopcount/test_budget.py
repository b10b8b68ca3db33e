"""``Budget``: analytic charges, refusal before the work, can_afford, pre-flight, statuses."""

from __future__ import annotations

import pytest

import flopcount
from flopcount.budget import Budget, ExperimentCapExceeded, PlanDoesNotFit
from flopcount.ledger.ledger import BudgetExceeded, Ledger, LedgerError
from flopcount.ledger.sqlite_file import MAX_FLOPS

MODEL = "qwen2.5-0.5b"
LORA = {"lora_rank": 4, "lora_targets": ("q_proj", "v_proj")}
SETUP = flopcount.CountSetup.of(MODEL, "coursework", **LORA)
STEP = flopcount.training_step_flops(SETUP, 4, 128)  # FLOPs


@pytest.fixture
def ledger_path(tmp_path):
    return tmp_path / "ledger.sqlite"


def budget(ledger_path, experiment="exp", limit=1000 * STEP, **kwargs) -> Budget:
    setup = flopcount.CountSetup.of(kwargs.pop("model", MODEL), kwargs.pop("convention", "coursework"),
                                    **{**LORA, **{k: kwargs.pop(k) for k in list(kwargs) if k in LORA}})
    return Budget(limit, ledger_path, experiment, setup, **kwargs)


def experiment_row(ledger_path, name="exp"):
    with Ledger(ledger_path) as ledger:
        return next(usage for usage in ledger.snapshot().experiments if usage.name == name)


@pytest.mark.parametrize("convention", ["coursework", "exact"])
def test_each_charge_is_exactly_the_analytic_count(ledger_path, convention):
    setup = flopcount.CountSetup.of(MODEL, convention, **LORA)
    with budget(ledger_path, convention=convention) as guard:
        train = guard.charge_training_step(batch=4, seq_len=128, step=0)
        validation = guard.charge_forward(batch=2, seq_len=128, step=0)
        generation = guard.reserve_generation(prompt_len=100, max_new_tokens=20, samples=3, step=0).charge
    assert train.flops == flopcount.training_step_flops(setup, 4, 128)
    assert train.flops == 3 * flopcount.forward_flops(setup, 128, 4).total
    assert validation.flops == flopcount.forward_flops(setup, 128, 2).total
    assert generation.flops == flopcount.generation_flops(setup, 100, 20, 3).total
    assert [(c.phase, c.tokens) for c in (train, validation, generation)] == [
        ("train", 4 * 128), ("validation", 2 * 128), ("generation", 3 * (100 + 19))
    ]  # fmt: skip
    with Ledger(ledger_path) as ledger:
        assert ledger.spent == train.flops + validation.flops + generation.flops


def test_a_config_path_prices_like_the_preset(ledger_path, qwen_assets):
    with budget(ledger_path, model=qwen_assets / "config.json") as guard:
        assert guard.charge_training_step(batch=4, seq_len=128, step=0).flops == STEP


def test_the_step_that_would_overspend_is_refused_before_it_runs(ledger_path):
    limit = 10 * STEP + STEP // 2
    executed = []
    with pytest.raises(BudgetExceeded) as refused, budget(ledger_path, limit=limit) as guard:
        for step in range(100):
            guard.charge_training_step(batch=4, seq_len=128, step=step)
            executed.append(step)
    assert executed == list(range(10)) and refused.value.step == 10
    assert refused.value.remaining == limit - 10 * STEP < STEP
    row = experiment_row(ledger_path)
    assert row.flops == 10 * STEP
    assert (row.status, row.stop_reason) == ("stopped", "budget exhausted at train step 10")


def test_a_loop_that_checks_first_stops_cleanly_and_records_why(ledger_path):
    with budget(ledger_path, limit=7 * STEP) as guard:
        assert guard.can_afford(7 * STEP) and not guard.can_afford(7 * STEP + 1)
        step = 0
        while guard.can_afford(guard.training_step_cost(4, 128)):
            guard.charge_training_step(batch=4, seq_len=128, step=step)
            step += 1
        guard.finish("stopped", f"budget exhausted at step {step}")
        assert guard.remaining == 0 and guard.spent == guard.limit
        with pytest.raises(RuntimeError, match="finished"):
            guard.charge("train", 0, step=step)
        with pytest.raises(RuntimeError, match=r"already finished \(stopped\)"):
            guard.finish("finished")
    row = experiment_row(ledger_path)
    assert (row.status, row.stop_reason, row.train_steps) == ("stopped", "budget exhausted at step 7", 7)


def test_remaining_counts_every_experiment_in_the_ledger(ledger_path):
    with budget(ledger_path, "first") as first:
        for step in range(3):
            first.charge_training_step(batch=4, seq_len=128, step=step)
    with budget(ledger_path, "second") as second:
        second.charge_training_step(batch=4, seq_len=128, step=0)
        assert second.spent == 4 * STEP and second.remaining == second.limit - 4 * STEP
        assert second.spent_by_experiment == {"first": 3 * STEP, "second": STEP}


def test_preflight_returns_the_estimate_of_a_plan_that_fits(ledger_path):
    plan = flopcount.TrainingWorkload(steps=500, batch=4, seq_len=128, eval_every=100, eval_windows=4)
    with budget(ledger_path) as guard:
        assert guard.preflight(plan) == flopcount.estimate_run(SETUP, plan)


def test_preflight_refuses_a_plan_that_does_not_fit_and_says_how_many_steps_would(ledger_path):
    plan = flopcount.TrainingWorkload(steps=2000, batch=4, seq_len=128, eval_every=50, eval_windows=8)
    with budget(ledger_path, "earlier") as earlier:
        for step in range(100):
            earlier.charge_training_step(batch=4, seq_len=128, step=step)
    with pytest.raises(PlanDoesNotFit) as refused, budget(ledger_path) as guard:
        guard.preflight(plan)
    remaining = 900 * STEP
    fits = lambda steps: flopcount.estimate_run(SETUP, plan.with_steps(steps)).total <= remaining  # noqa: E731
    assert refused.value.remaining == remaining
    assert fits(refused.value.max_steps) and not fits(refused.value.max_steps + 1)
    assert 0 < refused.value.max_steps < 900  # validation takes its share too
    assert f"the budget pays up to step {refused.value.max_steps}" in str(refused.value)
    row = experiment_row(ledger_path)
    assert row.status == "stopped" and f"at most {refused.value.max_steps} steps" in row.stop_reason


def test_preflight_prices_the_workload_with_the_budgets_own_setup(ledger_path):
    plan = flopcount.TrainingWorkload(steps=10, batch=4, seq_len=128)
    with budget(ledger_path, lora_rank=8) as guard:
        assert guard.preflight(plan).per_step == flopcount.training_step_flops(guard.setup, 4, 128)
        assert guard.preflight(plan).per_step > STEP  # rank 8 costs more than the rank-4 setup


def test_an_exception_marks_the_experiment_failed_and_propagates(ledger_path):
    with pytest.raises(ZeroDivisionError), budget(ledger_path) as guard:
        guard.charge_training_step(batch=4, seq_len=128, step=0)
        1 / 0  # noqa: B018
    row = experiment_row(ledger_path)
    assert row.status == "failed" and row.stop_reason.startswith("ZeroDivisionError")
    with budget(ledger_path):
        pass
    row = experiment_row(ledger_path)
    assert (row.status, row.stop_reason, row.sessions) == ("finished", None, 2)


def test_resuming_under_a_hub_alias_is_the_same_experiment_but_a_new_rank_is_not(ledger_path):
    with budget(ledger_path):
        pass
    with budget(ledger_path, model="Qwen/Qwen2.5-0.5B-Instruct"):
        pass
    with pytest.raises(LedgerError, match="mix cost models"), budget(ledger_path, lora_rank=8):
        pass


def test_a_budget_that_disagrees_with_the_ledger_limit_is_refused(ledger_path):
    with budget(ledger_path, limit=10**17):
        pass
    with pytest.raises(LedgerError, match=r"limit of 100000000000000000 FLOPs.*asks for 200000000000000000"):
        budget(ledger_path, limit=2 * 10**17).__enter__()


def test_a_budget_is_used_inside_its_with_block_only(ledger_path):
    guard = budget(ledger_path)
    with pytest.raises(RuntimeError, match="enter the Budget"):
        guard.charge_training_step(batch=4, seq_len=128, step=0)
    with guard, pytest.raises(RuntimeError, match="already entered"):
        guard.__enter__()
    assert guard.training_step_cost(4, 128) == STEP  # costs need no ledger


@pytest.mark.parametrize("limit", [0, -1, MAX_FLOPS + 1, 2.5])
def test_a_limit_that_is_not_a_positive_integer_up_to_max_flops_is_refused_at_construction(ledger_path, limit):
    with pytest.raises(ValueError, match="limit"):
        budget(ledger_path, limit=limit)
    assert not ledger_path.exists()


def test_an_experiment_cap_stops_one_experiment_across_sessions_and_spares_the_rest(ledger_path):
    cap = 5 * STEP + STEP // 2
    with budget(ledger_path, experiment_limit=cap) as guard:
        for step in range(3):
            guard.charge_training_step(batch=4, seq_len=128, step=step)
    executed = []  # resumed after a "crash" at step 3: steps 1-2 are re-run and paid from the same cap
    with pytest.raises(ExperimentCapExceeded) as refused, budget(ledger_path, experiment_limit=cap) as guard:
        for step in range(1, 100):
            guard.charge_training_step(batch=4, seq_len=128, step=step)
            executed.append(step)
    assert executed == [1, 2] and refused.value.step == 3  # 3 + 2 steps fit the cap; the 6th does not
    assert isinstance(refused.value, BudgetExceeded) and refused.value.spent == 5 * STEP
    row = experiment_row(ledger_path)
    assert (row.flops, row.rerun_flops) == (5 * STEP, 2 * STEP)
    assert (row.status, row.stop_reason) == ("stopped", "experiment cap exhausted at train step 3")
    with budget(ledger_path, experiment="other") as guard:  # the global budget still pays others
        guard.charge_training_step(batch=4, seq_len=128, step=0)


def test_an_experiment_cap_counts_reservations_at_their_settled_cost(ledger_path):
    reserved = flopcount.generation_flops(SETUP, 64, 32).total
    settled = flopcount.generation_flops(SETUP, 64, 8).total
    with budget(ledger_path, experiment_limit=reserved + settled) as guard:
        guard.reserve_generation(prompt_len=64, max_new_tokens=32).settle(8)
        guard.reserve_generation(prompt_len=64, max_new_tokens=32, step=1).settle(8)  # fits: only 2 x settled spent
        with pytest.raises(ExperimentCapExceeded):
            guard.reserve_generation(prompt_len=64, max_new_tokens=32, step=2)
    assert experiment_row(ledger_path).flops == 2 * settled


def test_ctrl_c_marks_the_experiment_stopped_interrupted_and_propagates(ledger_path):
    with pytest.raises(KeyboardInterrupt), budget(ledger_path) as guard:
        guard.charge_training_step(batch=4, seq_len=128, step=0)
        raise KeyboardInterrupt
    row = experiment_row(ledger_path)
    assert (row.status, row.stop_reason) == ("stopped", "interrupted (Ctrl-C)")  # not "failed: KeyboardInterrupt"
