"""The analytic FLOP model: pure Python, no torch, no ledger.

primitives (the price table) -> formulas (small per-op functions) -> components (the table
of one function per named component) -> engine (forward, training step, generation) ->
workload (a planned run and the steps that fit a budget). ``CountSetup`` is what decides a
count: model shape, convention, LoRA, lm_head bias.
"""

from flopcount.count.components import COMPONENTS, PROJECTIONS
from flopcount.count.conventions import COURSEWORK, EXACT, Convention, get_convention
from flopcount.count.engine import DEFAULT_LORA_TARGETS, forward_flops, generation_flops, training_step_flops
from flopcount.count.flop_report import FlopEntry, FlopReport, GenerationReport
from flopcount.count.primitives import PRIMITIVE_COSTS, PRIMITIVES, OpCount
from flopcount.count.shape import PRESETS, ModelShape, model_shape
from flopcount.count.workload import PlanEstimate, RunPlan, estimate_run, max_affordable_steps

__all__ = [
    "COMPONENTS", "COURSEWORK", "Convention", "DEFAULT_LORA_TARGETS", "EXACT", "FlopEntry", "FlopReport",
    "GenerationReport", "ModelShape", "OpCount", "PRESETS", "PRIMITIVES", "PRIMITIVE_COSTS", "PROJECTIONS",
    "PlanEstimate", "RunPlan", "estimate_run", "forward_flops", "generation_flops", "get_convention",
    "max_affordable_steps", "model_shape", "training_step_flops",
]
