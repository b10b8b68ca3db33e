"""flopcount: analytic FLOP model of Qwen2-family transformers, validated against traces.

Counts are kept by primitive (add, mul, exp, ...) and priced by one cost table; every figure
is an exact int. Two conventions: ``coursework`` (the budget's rules) and ``exact`` (the real
transformers Qwen2 module graph, checked against fvcore / torch traces in
:mod:`flopcount.trace.fvcore_trace` and :mod:`flopcount.trace.compare`).
"""

from flopcount.audit.table import AuditReport, AuditRow, audit_report
from flopcount.budget import Budget, ExperimentCapExceeded, GenerationReservation, PlanDoesNotFit
from flopcount.count.components import COMPONENTS, PROJECTIONS
from flopcount.count.conventions import COURSEWORK, EXACT, Convention, get_convention
from flopcount.ledger.ledger import BudgetExceeded, Ledger, LedgerError
from flopcount.count.engine import DEFAULT_LORA_TARGETS, forward_flops, generation_flops, training_step_flops
from flopcount.count.workload import PlanEstimate, RunPlan, estimate_run, max_affordable_steps
from flopcount.count.primitives import PRIMITIVE_COSTS, PRIMITIVES, OpCount
from flopcount.count.flop_report import FlopEntry, FlopReport, GenerationReport
from flopcount.count.shape import PRESETS, ModelShape, model_shape

# Trace validation (needs torch and fvcore): imported on first use, see __getattr__.
_LAZY = {
    "TraceError": "flopcount.trace.handles", "TracedFlops": "flopcount.trace.fvcore_trace", "trace_flops": "flopcount.trace.fvcore_trace",
    "ComparisonTable": "flopcount.trace.compare", "compare_with_trace": "flopcount.trace.compare",
    "compare_reports": "flopcount.trace.compare", "compare_conventions": "flopcount.trace.compare",
    "BackwardRatio": "flopcount.trace.hooks", "measure_backward_ratio": "flopcount.trace.hooks",
    "check_matmul_flops": "flopcount.trace.hooks", "record_linear_shapes": "flopcount.trace.hooks",
    "width_mismatches": "flopcount.trace.hooks",
}

__all__ = [
    "AuditReport", "AuditRow", "Budget", "BudgetExceeded", "ExperimentCapExceeded", "Ledger", "LedgerError",
    "PlanDoesNotFit", "audit_report",
    "GenerationReservation",
    "COMPONENTS", "COURSEWORK", "Convention", "DEFAULT_LORA_TARGETS", "EXACT", "FlopEntry", "FlopReport",
    "GenerationReport", "ModelShape", "OpCount", "PRESETS", "PRIMITIVES", "PRIMITIVE_COSTS", "PROJECTIONS",
    "PlanEstimate", "RunPlan", "estimate_run", "forward_flops", "generation_flops", "get_convention",
    "max_affordable_steps", "model_shape", "training_step_flops",
    *sorted(_LAZY),
]


def __getattr__(name: str):
    # The trace validation needs torch and fvcore: imported on first use so that
    # `import flopcount` stays light for planning and budgeting.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flopcount' has no attribute {name!r}")
