"""The Lotka-Volterra fit: it recovers the parameters of simulated systems, counts its FLOPs, and
says when it did not converge."""

from __future__ import annotations

from dataclasses import astuple

import numpy as np
import pytest

from experiments.forecasting.physics_fit import FitConfig, fit_lotka_volterra
from flopcount.count.baseline_formulas import LV_RHS_FLOPS


@pytest.mark.parametrize("system", range(3))  # the systems of lv_simulated (conftest.py)
def test_physics_fit_recovers_the_parameters_of_a_simulated_trajectory(lv_simulated, system):
    context, context_time, _, _ = lv_simulated.split(slice(system, system + 1))
    fit = fit_lotka_volterra(context[0].astype(np.float64), context_time)
    assert fit.success
    params, initial = lv_simulated.systems[system]
    expected = np.array([*astuple(params), *initial])  # a, b, c, d, K, x0, y0
    np.testing.assert_allclose(np.exp(fit.log_parameters), expected, rtol=1e-5)
    assert astuple(fit.params) == pytest.approx(astuple(params), rel=1e-5)
    assert fit.flops > fit.rhs_evaluations * LV_RHS_FLOPS > 0


def test_a_fit_cut_short_says_it_failed_and_still_counts_its_work(lv_simulated):
    context, context_time, _, _ = lv_simulated.split(slice(0, 1))
    fit = fit_lotka_volterra(context[0].astype(np.float64), context_time, FitConfig(max_nfev=1))
    assert not fit.success
    assert fit.rhs_evaluations > 0 and fit.flops >= fit.rhs_evaluations * LV_RHS_FLOPS
