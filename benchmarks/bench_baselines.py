"""Baselines on the real test split: metrics table, wall time and rough FLOPs per method.

Split ``lvdata.split_indices(1000, seed=0).test``; the first ``k = 50`` steps are context, the
last ``m = 50`` the horizon. Writes ``results.json``, ``horizon_errors.png`` and a forecast figure
per plotted trajectory to ``--out`` (default ``benchmarks/out/baselines``, git-ignored; files the
script wrote before are replaced).

    python benchmarks/bench_baselines.py [--data PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # runs from a checkout without `pip install -e .`

import numpy as np  # noqa: E402

from experiments.forecasting.baselines import BASELINES  # noqa: E402
from experiments.forecasting.metrics import results_table, save_results  # noqa: E402
from experiments.forecasting.plots import plot_forecast, plot_horizon_errors  # noqa: E402
from lvdata import load_trajectories, split_indices  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "lotka_volterra_data.h5"
K_CONTEXT, HORIZON = 50, 50
N_PLOTTED = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "out" / "baselines")
    args = parser.parse_args()

    trajectories, time_grid = load_trajectories(args.data)  # (1000, 100, 2), (100,)
    ids = np.asarray(split_indices(len(trajectories), seed=0).test)
    context = trajectories[ids, :K_CONTEXT]  # (N, k, 2)
    truth = trajectories[ids, K_CONTEXT:K_CONTEXT + HORIZON]  # (N, m, 2)
    context_time, horizon_time = time_grid[:K_CONTEXT], time_grid[K_CONTEXT:K_CONTEXT + HORIZON]
    print(f"real test split: {len(ids)} trajectories, k={K_CONTEXT} context steps, m={HORIZON} forecast steps")

    results, metrics, timing = {}, [], {}
    for name, baseline in BASELINES.items():
        start = time.perf_counter()
        results[name] = baseline(context, context_time, horizon_time)
        timing[name] = time.perf_counter() - start
        metrics.append(results[name].evaluate(truth, ids))

    print("\n" + results_table(metrics) + "\n")
    print("| method | wall time (s) | rough FLOPs total | rough FLOPs / trajectory | repaired |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        print(f"| {name} | {timing[name]:.2f} | {result.total_flops:.3g} | {result.total_flops / len(ids):.3g} "
              f"| {result.repaired.sum()} / {len(ids)} |")
    fit = results["physics_fit"].diagnostics
    print(f"\nphysics fit: {fit['fit_success'].mean():.0%} converged, median cost {np.median(fit['cost']):.3g}, "
          f"mean residual evaluations {fit['residual_evaluations'].mean():.0f}, "
          f"mean RHS evaluations {fit['rhs_evaluations'].mean():.0f} per trajectory")

    args.out.mkdir(parents=True, exist_ok=True)
    save_results(args.out / "results.json", metrics, overwrite=True)
    plot_horizon_errors(args.out / "horizon_errors.png", {m.method: m.horizon_mae for m in metrics},
                        title=f"Baselines on the real test split (N={len(ids)}): MAE against horizon")
    for row in range(min(N_PLOTTED, len(ids))):
        plot_forecast(args.out / f"forecast_{ids[row]}.png", time_grid[:K_CONTEXT + HORIZON],
                      trajectories[ids[row], :K_CONTEXT + HORIZON],
                      {name: result.forecast[row] for name, result in results.items()}, K_CONTEXT,
                      title=f"test trajectory {ids[row]}")
    print(f"wrote results.json and figures to {args.out}")


if __name__ == "__main__":
    main()
