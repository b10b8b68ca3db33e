"""FLOPs of the non-LLM baselines, priced with the same primitive table as the model.

The physics fit's figures are rough by nature (an adaptive ODE solver and an iterative
least-squares fit): right-hand-side evaluations as counted by the solver times the hand-counted
RHS cost plus an allowance for the solver's own bookkeeping, residual arithmetic,
finite-difference Jacobians and one SVD-sized solve per least-squares iteration. They are an
order-of-magnitude estimate, reported beside the exact LLM counts, never charged to a budget.
Linear extrapolation is counted exactly. Persistence is memory movement: 0.
"""

from __future__ import annotations

from flopcount.count.primitives import PRIMITIVE_COSTS, OpCount

EXP_FLOPS = PRIMITIVE_COSTS["exp"]  # == PRIMITIVE_COSTS["log"]
# prey a·x·(1 − x/K) − b·x·y: x/K, 1 − ·, a·x, ·(…), b·x, ·y, − ; predator d·x·y − c·y: d·x, ·y, c·y, −
LV_RHS_FLOPS = OpCount(div=1, sub=3, mul=7).flops  # 11
SOLVER_FLOPS_PER_RHS = 30  # rough LSODA bookkeeping per RHS call on 2 states (predictor, corrector, norm)


def integration_flops(rhs_evaluations: int) -> int:
    """Rough FLOPs of integrating the logistic LV model with ``rhs_evaluations`` RHS calls."""
    return rhs_evaluations * (LV_RHS_FLOPS + SOLVER_FLOPS_PER_RHS)


def least_squares_solve_flops(rows: int, cols: int) -> int:
    """Rough FLOPs of an SVD-based least-squares solve of a ``rows x cols`` system (Golub & Van
    Loan R-SVD, ``4·r·p² + 22·p³``) plus forming ``Jᵀr`` (``p·(2r − 1)``)."""
    return 4 * rows * cols**2 + 22 * cols**3 + cols * (2 * rows - 1)


def gradient_matching_start_flops(k: int) -> int:
    """Rough FLOPs of the physics fit's gradient-matching start on ``k`` context steps: logs
    and finite differences of both species, then two small least-squares solves."""
    logs_and_differences = 2 * k * EXP_FLOPS + 2 * (k - 1) * 2 + 4 * (k - 1)
    return (logs_and_differences + least_squares_solve_flops(k - 1, 3) + least_squares_solve_flops(k - 1, 2)
            + 6 * EXP_FLOPS)


def physics_fit_flops(k: int, n_parameters: int, rhs_evaluations: int, residual_evaluations: int,
                      jacobians: int) -> int:
    """Rough FLOPs of one shooting fit on ``k`` context steps of two species: the start, every
    integration, each residual evaluation (``exp`` of the parameters, subtract and divide per
    residual) and each finite-difference Jacobian with its solve."""
    rows = 2 * k
    return (gradient_matching_start_flops(k) + integration_flops(rhs_evaluations)
            + residual_evaluations * (n_parameters * EXP_FLOPS + 2 * rows)
            + jacobians * (2 * rows * n_parameters + least_squares_solve_flops(rows, n_parameters)))


def linear_extrapolation_flops(window: int, horizon: int) -> int:
    """FLOPs of extending the least-squares line through the last ``window`` steps over
    ``horizon`` steps, for one series of two species: per species t̄, ȳ (w each), centring
    (2w), products and sums (4w − 2), the slope (1); the line (3m) and the clip (m)."""
    return 2 * (8 * window - 1 + 4 * horizon)
