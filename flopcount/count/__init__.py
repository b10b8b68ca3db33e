"""The analytic FLOP model: pure Python, no torch, no ledger.

primitives (the price table) -> formulas (small per-op functions; the baselines' in baseline_formulas) ->
components (the table of one function per named component) -> engine (forward, training step,
generation) -> workload (a planned run, its estimate and the steps that fit a budget).
``CountSetup`` is what decides a count: model shape, convention, LoRA, lm_head bias.
"""

from flopcount.count.components import COMPONENTS, PROJECTIONS
from flopcount.count.conventions import COURSEWORK, EXACT, Convention, get_convention
from flopcount.count.engine import forward_flops, generation_flops, training_step_flops
from flopcount.count.flop_report import FlopEntry, FlopReport, GenerationReport
from flopcount.count.primitives import PRIMITIVE_COSTS, PRIMITIVES, OpCount
from flopcount.count.setup import DEFAULT_LORA_TARGETS, CountSetup
from flopcount.count.shape import PRESETS, ModelShape, model_shape
from flopcount.count.workload import RunEstimate, TrainingWorkload, estimate_run, remaining_cost, steps_that_fit

__all__ = [
    "COMPONENTS", "COURSEWORK", "Convention", "CountSetup", "DEFAULT_LORA_TARGETS", "EXACT", "FlopEntry",
    "FlopReport", "GenerationReport", "ModelShape", "OpCount", "PRESETS", "PRIMITIVES", "PRIMITIVE_COSTS",
    "PROJECTIONS", "RunEstimate", "TrainingWorkload", "estimate_run", "forward_flops", "generation_flops",
    "get_convention", "model_shape", "remaining_cost", "steps_that_fit", "training_step_flops",
]
