"""flopcount: analytic FLOP model of Qwen2-family transformers, validated against traces.

Counts are kept by primitive (add, mul, exp, ...) and priced by one cost table; every figure
is an exact int. Two conventions: ``coursework`` (the budget's rules) and ``exact`` (the real
transformers Qwen2 module graph, checked against fvcore / torch traces in
:mod:`flopcount.trace` and :mod:`flopcount.validate`).
"""

from flopcount.audit import AuditReport, AuditRow, audit_report
from flopcount.budget import Budget, PlanDoesNotFit
from flopcount.components import COMPONENTS, PROJECTIONS
from flopcount.conventions import COURSEWORK, EXACT, Convention, get_convention
from flopcount.ledger import BudgetExceeded, Ledger, LedgerError
from flopcount.model import DEFAULT_LORA_TARGETS, forward_flops, generation_flops, training_step_flops
from flopcount.plan import PlanEstimate, RunPlan, estimate_run, max_affordable_steps
from flopcount.primitives import PRIMITIVE_COSTS, PRIMITIVES, OpCount
from flopcount.report import FlopEntry, FlopReport, GenerationReport
from flopcount.shape import PRESETS, ModelShape, model_shape

__all__ = [
    "AuditReport", "AuditRow", "Budget", "BudgetExceeded", "Ledger", "LedgerError", "PlanDoesNotFit", "audit_report",
    "COMPONENTS", "COURSEWORK", "Convention", "DEFAULT_LORA_TARGETS", "EXACT", "FlopEntry", "FlopReport",
    "GenerationReport", "ModelShape", "OpCount", "PRESETS", "PRIMITIVES", "PRIMITIVE_COSTS", "PROJECTIONS",
    "PlanEstimate", "RunPlan", "estimate_run", "forward_flops", "generation_flops", "get_convention",
    "max_affordable_steps", "model_shape", "training_step_flops",
]
