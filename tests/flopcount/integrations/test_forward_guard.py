"""``ForwardGuard`` on a real model in a plain PyTorch loop: every forward charged from its real
shapes before it runs, none run that the budget cannot pay."""

from __future__ import annotations

import threading

import pytest
import torch

from flopcount import Budget, BudgetExceeded, CountSetup, Ledger, forward_flops, generation_flops, training_step_flops
from flopcount.integrations import ForwardGuard, UnpricedForward


def count_forwards(model) -> list[tuple[int, int]]:
    """(batch, tokens) of every forward that really runs (a hook after the guard's)."""
    ran: list[tuple[int, int]] = []
    model.register_forward_pre_hook(lambda module, args, kwargs: ran.append(tuple(
        kwargs.get("input_ids", args[0] if args else None).shape)), with_kwargs=True)
    return ran


def test_every_forward_is_charged_from_its_real_shape_before_it_runs(tiny_qwen2, tmp_path):
    model = tiny_qwen2().train()
    setup = CountSetup.of(model.config)
    guard = ForwardGuard(10**12, tmp_path / "ledger.sqlite", "plain", setup).attach(model)
    for batch, length in ((2, 16), (1, 64), (3, 5)):
        model(torch.zeros(batch, length, dtype=torch.long)).logits.sum().backward()
    with torch.no_grad():
        model.eval()(torch.zeros(4, 9, dtype=torch.long))
    guard.close()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        charges = [(c.phase, c.step, c.tokens, c.flops) for c in ledger.charges()]
        (usage,) = ledger.snapshot().experiments
    assert charges == [("train", 1, 32, training_step_flops(setup, 2, 16)),
                       ("train", 2, 64, training_step_flops(setup, 1, 64)),
                       ("train", 3, 15, training_step_flops(setup, 3, 5)),
                       ("validation", 3, 36, forward_flops(setup, 9, 4).total)]
    assert usage.status == "finished"


def test_a_forward_the_budget_cannot_pay_never_runs(tiny_qwen2, tmp_path):
    model = tiny_qwen2().train()
    setup = CountSetup.of(model.config)
    step = training_step_flops(setup, 2, 16)
    guard = ForwardGuard(2 * step + step // 2, tmp_path / "ledger.sqlite", "plain", setup).attach(model)
    ran = count_forwards(model)
    model(torch.zeros(2, 16, dtype=torch.long))
    model(torch.zeros(2, 16, dtype=torch.long))
    for _ in range(2):  # refused, and refused again: nothing runs after a refusal
        with pytest.raises(BudgetExceeded):
            model(torch.zeros(2, 16, dtype=torch.long))
    assert ran == [(2, 16), (2, 16)] and guard.forwards == 2
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        (usage,) = ledger.snapshot().experiments
        assert ledger.spent == 2 * step
    assert usage.status == "stopped" and "exhausted at train step 3" in usage.stop_reason


def test_a_forward_whose_size_cannot_be_read_is_refused_before_it_runs(tiny_qwen2, tmp_path):
    model = tiny_qwen2()
    ForwardGuard(10**12, tmp_path / "ledger.sqlite", "plain", CountSetup.of(model.config)).attach(model)
    ran = count_forwards(model)
    with pytest.raises(UnpricedForward):
        model(input_ids=torch.zeros(5, dtype=torch.long))
    assert ran == []


@pytest.mark.parametrize("convention", ["coursework", "exact"])
def test_generate_is_charged_what_generation_flops_counts(tiny_qwen2, tmp_path, convention):
    model = tiny_qwen2()
    setup = CountSetup.of(model.config, convention)
    guard = ForwardGuard(10**12, tmp_path / "ledger.sqlite", "gen", setup).attach(model)
    with torch.no_grad():
        model.generate(torch.ones(2, 6, dtype=torch.long), attention_mask=torch.ones(2, 6, dtype=torch.long),
                       max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0)
    guard.close()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        charges = ledger.charges()
    assert {c.phase for c in charges} == {"generation"} and len(charges) == 5
    assert sum(c.flops for c in charges) == generation_flops(setup, 6, 5, batch=2).total


def test_a_forward_in_another_thread_is_charged_like_a_data_parallel_replica(tiny_qwen2, tmp_path):
    model = tiny_qwen2()
    setup = CountSetup.of(model.config)
    guard = ForwardGuard(10**12, tmp_path / "ledger.sqlite", "replicas", setup).attach(model)
    guard.open()  # the ledger is opened in this thread, as nn.DataParallel's caller does

    def replica() -> None:
        with torch.no_grad():
            model(torch.zeros(3, 7, dtype=torch.long))

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    guard.close()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert [c.flops for c in ledger.charges()] == [forward_flops(setup, 7, 3).total] * 2


def test_a_guarded_forward_records_the_loss_flops_budget_records_for_the_same_shape(tiny_qwen2, tmp_path):
    """One rule for a charge's loss FLOPs (``Budget.loss_flops``): the guard's training and
    validation charges carry what ``charge_training_step`` and ``charge_forward`` record."""
    model = tiny_qwen2()
    setup = CountSetup.of(model.config, "coursework+loss")
    with ForwardGuard(10**15, tmp_path / "guard.sqlite", "guard", setup).attach(model):
        model(torch.zeros(2, 16, dtype=torch.long))
        with torch.no_grad():
            model(torch.zeros(3, 8, dtype=torch.long))
    with Budget(10**15, tmp_path / "budget.sqlite", "budget", setup) as budget:
        budget.charge_training_step(batch=2, seq_len=16, step=1)
        budget.charge_forward(batch=3, seq_len=8, step=1)
    with Ledger(tmp_path / "guard.sqlite") as guarded, Ledger(tmp_path / "budget.sqlite") as direct:
        assert [c.payload for c in guarded.charges()] == [c.payload for c in direct.charges()]
    loss = forward_flops(setup, 16, 2).component("loss").flops
    assert budget.loss_flops("train", 2, 16) == 3 * loss and budget.loss_flops("generation", 2, 16) == 0
