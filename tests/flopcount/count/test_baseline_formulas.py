"""The baselines' FLOP formulas, priced with the primitive table."""

from flopcount import PRIMITIVE_COSTS
from flopcount.count.baseline_formulas import (
    LV_RHS_FLOPS,
    SOLVER_FLOPS_PER_RHS,
    gradient_matching_start_flops,
    integration_flops,
    least_squares_solve_flops,
    linear_extrapolation_flops,
    physics_fit_flops,
)


def test_the_lv_right_hand_side_is_eleven_primitives():
    # x/K, 1-., a.x, .(.), b.x, .y, - ; d.x, .y, c.y, -  -> 1 div, 3 sub, 7 mul
    assert LV_RHS_FLOPS == PRIMITIVE_COSTS["div"] + 3 * PRIMITIVE_COSTS["sub"] + 7 * PRIMITIVE_COSTS["mul"] == 11
    assert integration_flops(0) == 0 and integration_flops(7) == 7 * (11 + SOLVER_FLOPS_PER_RHS)


def test_linear_extrapolation_by_hand():
    window, horizon = 5, 3
    per_species = window + window + 2 * window + (4 * window - 2) + 1 + 3 * horizon + horizon
    assert linear_extrapolation_flops(window, horizon) == 2 * per_species


def test_the_physics_fit_adds_its_parts():
    k, p = 50, 7
    start = gradient_matching_start_flops(k)
    assert start == 2 * k * 10 + 2 * (k - 1) * 2 + 4 * (k - 1) + least_squares_solve_flops(k - 1, 3) \
        + least_squares_solve_flops(k - 1, 2) + 6 * 10
    total = physics_fit_flops(k, p, rhs_evaluations=1000, residual_evaluations=40, jacobians=5)
    assert total == start + integration_flops(1000) + 40 * (p * 10 + 4 * k) \
        + 5 * (4 * k * p + least_squares_solve_flops(2 * k, p))
    assert physics_fit_flops(k, p, 1001, 40, 5) - total == integration_flops(1)
