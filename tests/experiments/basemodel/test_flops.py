"""The base's FLOPs: the analytic count of its recipe, and a ledger of its own charged step by step."""

from __future__ import annotations

from experiments.basemodel.flops import (
    EXPERIMENT,
    LEDGER_FILE,
    LEDGER_HEADROOM,
    base_flops,
    charge_step,
    charge_validation,
    ledger_flops,
    open_base_budget,
)
from experiments.basemodel.recipe import BaseRecipe
from experiments.models.loading import tiny_config
from flopcount import CountSetup, Ledger, forward_flops, training_step_flops

RECIPE = BaseRecipe(name="counted", sequences=48, validation_sequences=8, context=64, batch_size=2, steps=5,
                    warmup_steps=1, eval_every=2, eval_rows=3, checkpoint_every=5)


def test_the_count_is_every_step_and_validation_of_the_recipe():
    flops = base_flops(RECIPE)
    setup = CountSetup.of(tiny_config(), "coursework")
    assert flops.per_step == training_step_flops(setup, 2, 64)
    assert flops.per_validation == forward_flops(setup, 64, batch=3).total
    assert (flops.steps, flops.validations) == (5, 3)  # after steps 2, 4 and 5
    assert flops.total == 5 * flops.per_step + 3 * flops.per_validation == flops.training + flops.validation
    assert 0 < flops.compact_total < flops.total  # a 14-row head instead of 151,936 rows
    assert flops.to_dict()["convention"] == "coursework"


def test_a_build_is_charged_to_its_own_ledger_with_headroom(tmp_path):
    budget = open_base_budget(RECIPE, tmp_path, recipe_hash="abc")
    with budget:
        assert charge_step(budget, RECIPE, step=1, tokens=100) == base_flops(RECIPE).per_step
        assert charge_validation(budget, RECIPE, step=1, tokens=30) == base_flops(RECIPE).per_validation
        budget.finish("finished")
    with Ledger(tmp_path / LEDGER_FILE) as ledger:
        assert ledger.limit == LEDGER_HEADROOM * base_flops(RECIPE).total
        (usage,) = ledger.snapshot().experiments
        assert usage.name == EXPERIMENT and usage.config["recipe_hash"] == "abc"
    held = ledger_flops(tmp_path)
    assert held["by_phase"]["train"] == base_flops(RECIPE).per_step and held["rerun"] == 0
    assert held["total"] == base_flops(RECIPE).per_step + base_flops(RECIPE).per_validation
    assert (held["sessions"], held["steps"], held["tokens"]) == (1, 1, 130)
