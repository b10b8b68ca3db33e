"""FLOPs of building a base: the analytic count of its steps and the ledger they are charged to.

Everything the base builder asks ``flopcount`` lives here, in one place. The base stands in
for the base model's own pretraining, so it is charged to a ledger of its own (``ledger.sqlite``
in the base's directory), never to a plan's budget.

Convention: the coursework rules on the *full-vocabulary* ``tiny`` model (lm_head over all
151,936 rows at every position), although the builder computes the 14-row compact head: the
two give the same loss exactly, and the convention prices the simplest version of an
operation, never a trick. ``compact_total`` is the same count with 14 output rows, i.e. the
arithmetic the compact head actually performs; it is recorded, not charged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flopcount import Budget, CountSetup, audit_report, forward_flops, training_step_flops

from experiments.basemodel.recipe import BaseRecipe
from experiments.models.loading import tiny_config

CONVENTION = "coursework"
EXPERIMENT = "pretrain-base"
LEDGER_FILE = "ledger.sqlite"
LEDGER_HEADROOM = 10  # the ledger's limit is this many times the recipe's count: room for re-runs


@dataclass(frozen=True)
class BaseFlops:
    """Analytic FLOPs of a recipe: one training step, one validation pass (``eval_rows`` rows),
    and the totals over its ``steps`` and validations; ``compact_total`` with the 14-row head."""

    per_step: int
    per_validation: int
    steps: int
    validations: int
    training: int
    validation: int
    total: int
    compact_total: int
    convention: str = CONVENTION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _step_and_validation(model: Any, recipe: BaseRecipe) -> tuple[int, int]:
    """The only calls into the FLOP model: one step (``batch_size x context``, 3 x forward) and
    one validation forward of ``eval_rows x context`` tokens, in FLOPs."""
    setup = CountSetup.of(model, CONVENTION)
    step = training_step_flops(setup, recipe.batch_size, recipe.context)
    validation = forward_flops(setup, recipe.context, batch=recipe.eval_rows).total
    return step, validation


def base_flops(recipe: BaseRecipe, compact_rows: int = 14) -> BaseFlops:
    """The analytic count of every step and validation of ``recipe`` (FLOPs)."""
    per_step, per_validation = _step_and_validation(tiny_config(), recipe)
    compact = tiny_config()
    compact.vocab_size = compact_rows
    compact_step, compact_validation = _step_and_validation(compact, recipe)
    validations = len(recipe.evaluation_steps())
    return BaseFlops(
        per_step=per_step, per_validation=per_validation, steps=recipe.steps, validations=validations,
        training=recipe.steps * per_step, validation=validations * per_validation,
        total=recipe.steps * per_step + validations * per_validation,
        compact_total=recipe.steps * compact_step + validations * compact_validation,
    )  # fmt: skip


def open_base_budget(recipe: BaseRecipe, directory: Path, recipe_hash: str) -> Budget:
    """The ``Budget`` (not yet entered) that charges a build of ``recipe`` in ``directory``."""
    return Budget(LEDGER_HEADROOM * base_flops(recipe).total, directory / LEDGER_FILE, EXPERIMENT,
                  CountSetup.of(tiny_config(), CONVENTION),
                  config={"recipe": recipe.to_dict(), "recipe_hash": recipe_hash})


def charge_step(budget: Budget, recipe: BaseRecipe, step: int, tokens: int) -> int:
    """Charge training step ``step`` (``tokens`` non-padding tokens) before it runs; its FLOPs."""
    return budget.charge_training_step(batch=recipe.batch_size, seq_len=recipe.context, step=step,
                                       tokens=tokens).flops


def charge_validation(budget: Budget, recipe: BaseRecipe, step: int, tokens: int) -> int:
    """Charge the validation after step ``step`` (``eval_rows`` rows) before it runs; its FLOPs."""
    return budget.charge_forward(batch=recipe.eval_rows, seq_len=recipe.context, step=step, tokens=tokens).flops


def ledger_flops(directory: Path) -> dict[str, Any]:
    """What the base's ledger holds for its build: FLOPs by phase, useful, re-run and total."""
    row = next(row for row in audit_report(directory / LEDGER_FILE).rows if row.name == EXPERIMENT)
    return {"by_phase": dict(row.by_phase), "useful": row.useful, "rerun": row.rerun, "total": row.total,
            "sessions": row.sessions, "steps": row.steps, "tokens": row.tokens}


__all__ = ["CONVENTION", "EXPERIMENT", "LEDGER_FILE", "BaseFlops", "base_flops", "charge_step", "charge_validation",
           "ledger_flops", "open_base_budget"]
