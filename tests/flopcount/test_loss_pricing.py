"""The optional price of the loss: a convention flag, one component, shown apart in the audit."""

from __future__ import annotations

from flopcount import Budget, CountSetup, audit_report, forward_flops, get_convention, training_step_flops
from flopcount.count import formulas

V = 151936


def test_cross_entropy_by_hand():
    count = formulas.cross_entropy(3, 5)
    # per row: 4 cmp, 10 sub, 5 exp, 4 add, 1 log, 1 neg; the mean: 2 add, 1 div
    assert count.as_dict(nonzero=True) == {"add": 3 * 4 + 2, "sub": 30, "neg": 3, "div": 1, "cmp": 12, "exp": 15,
                                           "log": 3}
    assert count.flops == 3 * (4 + 10 + 5 * 10 + 4 + 10 + 1) + 2 + 1


def test_the_loss_is_priced_only_by_the_loss_conventions_and_only_when_positions_are_scored():
    for name in ("coursework", "exact"):
        plain, priced = CountSetup.of("qwen2.5-0.5b", name), CountSetup.of("qwen2.5-0.5b", f"{name}+loss")
        assert forward_flops(plain, 64, 2).component("loss").flops == 0
        loss = forward_flops(priced, 64, 2).component("loss")
        assert loss == formulas.cross_entropy(128, V)
        assert forward_flops(priced, 64, 2).total == forward_flops(plain, 64, 2).total + loss.flops
        assert forward_flops(priced, 1, 2, logits="last").component("loss").flops == 0  # generation: no loss
    assert get_convention("coursework+loss").loss and not get_convention("coursework").loss


def test_the_audit_shows_the_loss_apart(tmp_path):
    setup = CountSetup.of("qwen2.5-0.5b", "coursework+loss", lora_rank=4)
    with Budget(10**16, tmp_path / "ledger.sqlite", "priced", setup) as budget:
        step = budget.charge_training_step(batch=2, seq_len=64, step=1)
        budget.charge_forward(batch=1, seq_len=64, step=1)
    loss = forward_flops(setup, 64, 2).component("loss").flops
    assert step.flops == training_step_flops(setup, 2, 64) and step.payload == {"loss_flops": str(3 * loss)}
    (row,) = audit_report(tmp_path / "ledger.sqlite").rows
    assert row.loss == 3 * loss + forward_flops(setup, 64, 1).component("loss").flops
    assert f"price the loss (cross-entropy), shown apart" in audit_report(tmp_path / "ledger.sqlite").to_markdown()
