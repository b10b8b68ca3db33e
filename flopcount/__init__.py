"""flopcount: FLOP accounting for fine-tuning decoder LMs under a hard budget.

Four layers, arrows pointing down:

- :mod:`flopcount.count`: the analytic model (pure Python). One read-only price table, small
  formula functions, one component table, two conventions (``coursework``, the budget's rules;
  ``exact``, the real transformers module graph). ``CountSetup`` says what is counted.
- :mod:`flopcount.trace`: validation of ``exact`` against fvcore / torch traces (torch, fvcore).
- :mod:`flopcount.ledger`: the SQLite ledger every charge is committed to before its work.
- :class:`flopcount.Budget` (the guard: count + ledger) and :mod:`flopcount.audit` (the table
  of every FLOP spent).
"""

from flopcount.audit import AuditReport, AuditRow, audit_report
from flopcount.budget import Budget, ExperimentCapExceeded, GenerationReservation, PlanDoesNotFit
from flopcount.count import (
    COMPONENTS,
    COURSEWORK,
    DEFAULT_LORA_TARGETS,
    EXACT,
    PRESETS,
    PRIMITIVE_COSTS,
    PRIMITIVES,
    PROJECTIONS,
    Convention,
    CountSetup,
    FlopEntry,
    FlopReport,
    GenerationReport,
    ModelShape,
    OpCount,
    RunEstimate,
    TrainingWorkload,
    estimate_run,
    forward_flops,
    generation_flops,
    get_convention,
    model_shape,
    remaining_cost,
    steps_that_fit,
    training_step_flops,
)
from flopcount.ledger import BudgetExceeded, Ledger, LedgerError

# Trace validation (needs torch and fvcore): imported on first use, see __getattr__.
_LAZY = {
    "TraceError", "TracedFlops", "trace_flops", "ComparisonTable", "compare_with_trace", "compare_reports",
    "compare_conventions", "BackwardRatio", "measure_backward_ratio", "check_matmul_flops",
    "record_linear_shapes", "width_mismatches",
}

__all__ = [
    "AuditReport", "AuditRow", "Budget", "BudgetExceeded", "ExperimentCapExceeded", "GenerationReservation",
    "Ledger", "LedgerError", "PlanDoesNotFit", "audit_report",
    "COMPONENTS", "COURSEWORK", "Convention", "CountSetup", "DEFAULT_LORA_TARGETS", "EXACT", "FlopEntry",
    "FlopReport", "GenerationReport", "ModelShape", "OpCount", "PRESETS", "PRIMITIVES", "PRIMITIVE_COSTS",
    "PROJECTIONS", "RunEstimate", "TrainingWorkload", "estimate_run", "forward_flops", "generation_flops",
    "get_convention", "model_shape", "remaining_cost", "steps_that_fit", "training_step_flops",
    *sorted(_LAZY),
]


def __getattr__(name: str):
    # The trace validation needs torch and fvcore: imported on first use so that
    # `import flopcount` stays light for planning and budgeting.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module("flopcount.trace"), name)
    raise AttributeError(f"module 'flopcount' has no attribute {name!r}")
