"""Validation of the analytic model against traced counts (needs torch and fvcore): fvcore
traces with a handle per aten op, ``FlopCounterMode`` checks, forward-hook widths, and the
comparison tables."""

from flopcount.trace.compare import ComparisonTable, compare_conventions, compare_reports, compare_with_trace
from flopcount.trace.fvcore_trace import TracedFlops, trace_flops
from flopcount.trace.handles import TraceError
from flopcount.trace.hooks import (
    BackwardRatio,
    check_matmul_flops,
    measure_backward_ratio,
    record_linear_shapes,
    width_mismatches,
)

__all__ = [
    "BackwardRatio", "ComparisonTable", "TraceError", "TracedFlops", "check_matmul_flops", "compare_conventions",
    "compare_reports", "compare_with_trace", "measure_backward_ratio", "record_linear_shapes", "trace_flops",
    "width_mismatches",
]
