"""Did fine-tuning learn? The untrained base against the fine-tuned adapter, in the report.

The ``evaluate`` stage scores the *untrained* base on exactly the validation windows the
adapter's run validated on (same context, same windows), charged to the ledger as validation
of ``<stage>/base-validation`` and projected by the planner (:func:`base_validation_flops`).
The report's learning section (:func:`learning_section`) then sets side by side:

- validation loss (nats per target token): untrained base, fine-tuned adapter;
- median MSE per species of the greedy forecasts on the test trajectories: the untrained base,
  the fine-tuned adapter, persistence, linear extrapolation and the physics fit;
- how often the unconstrained model breaks the LLMTIME format, before and after.

It says plainly which goal is met and which is not, with the numbers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import stats

from experiments.forecasting.metrics import SPECIES, perplexity
from experiments.pipeline.results import run_config
from experiments.training.config import TrainConfig
from experiments.training.validation import loss_sums, validation_indices
from flopcount import Budget, CountSetup, forward_flops

if TYPE_CHECKING:
    from experiments.pipeline.plan import Plan, StageSpec
    from experiments.pipeline.planner import DataShapes
    from experiments.pipeline.workspace import PlanWorkspace

BASE_VALIDATION = "base-validation"
GREEDY, UNCONSTRAINED = "llm-greedy", "llm-greedy-unconstrained"


def base_validation_flops(model: Any, plan: Plan, config: TrainConfig | None, shapes: DataShapes) -> int:
    """FLOPs of scoring the untrained base on the validation windows of a run of ``config``
    (0 without one): one forward of those windows at the run's context, no adapter."""
    if config is None:
        return 0
    setup = CountSetup.of(model, plan.budget.convention)
    return forward_flops(setup, config.context, batch=shapes.eval_windows(config)).total


def score_untrained_base(run: PlanWorkspace, stage: StageSpec, entry: dict[str, Any], model,
                         cap: int | None = None) -> dict[str, Any]:
    """Validation loss of the untrained base ``model`` (the stage's own copy, before its adapter
    is loaded: one base model alive at a time) on the windows the run ``entry`` validated on,
    charged before the work to ``<stage>/base-validation`` (capped at ``cap`` FLOPs); JSON-ready."""
    config = run_config(entry)
    context = config.context
    windows = run.data.validation_windows(context)
    indices = validation_indices(len(windows), config.eval_windows, config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    experiment = f"{stage.name}/{BASE_VALIDATION}"
    setup = CountSetup.of(model.config, run.plan.budget.convention)
    with Budget(run.plan.budget.limit, run.ledger_path, experiment, setup,
                config={"context": context, "windows": len(indices), "of_run": entry["experiment"]},
                experiment_limit=cap) as budget:
        budget.charge_forward(batch=len(indices), seq_len=context, step=0,
                              tokens=int(windows.attention_mask[indices].sum()))
        nats, tokens = loss_sums(model.to(device), windows, indices, config.batch_size, device)
    loss = float(nats / tokens)
    return {"cross_entropy_nats": loss, "perplexity": perplexity(loss), "n_tokens": int(tokens),
            "context": context, "windows": len(indices), "experiment": experiment}


# -- the report ----------------------------------------------------------------------------

def base_note(plan_summary: dict[str, Any]) -> list[str]:
    """The report header's note on an ``llmtime-base`` model (no lines for other models)."""
    base = plan_summary.get("base")
    if not base:
        return []
    validation = (base.get("losses") or {}).get("final_validation")
    corpus = base.get("corpus") or "general two-variable sequences"
    return ["", f"> **The model is `llmtime-base`, a small base pretrained here on general numeric sequences**: the "
                f"`tiny` Qwen2 architecture (real vocabulary) trained from random initialisation for {base['steps']} "
                f"steps ({base['tokens']:,} tokens) on LLMTIME text of {base['sequences']:,} {corpus}; never on "
                f"this data (validation loss on held-out sequences of the same families {_num(validation)} "
                f"nats/token), so, like Qwen2.5, it knows the format and numbers but not these dynamics. It stands in for Qwen2.5's pretraining, so its {base['flops']:.4g} FLOPs are in its "
                f"own ledger (`{base['directory']}/ledger.sqlite`, recipe {base['recipe_hash']}), outside this "
                "plan's budget. Its 151,923 tokens outside the LLMTIME alphabet share one output row, so greedy "
                "decoding without the grammar writes one only where that row's logit is the largest: its "
                "malformed rate says less about following the format than a real model's would.",
            "> The real plan fine-tunes Qwen/Qwen2.5-0.5B-Instruct under 1e17 FLOPs (a GPU machine with the hub "
            "model): `python -m experiments run --plan coursework --out runs/coursework`."]


def _mse(record: dict[str, Any] | None, method: str, statistic: str = "median") -> dict[str, float | None]:
    """Per species, the ``statistic`` (``"median"`` or ``"mean"``) over trajectories of ``method``'s MSE."""
    for metrics in (record or {}).get("methods", []):
        if metrics["method"] == method:
            return {name: metrics["species"][name]["mse"][statistic] for name in SPECIES}
    return {}


def _malformed(record: dict[str, Any] | None, method: str) -> float | None:
    for metrics in (record or {}).get("methods", []):
        if metrics["method"] == method:
            return metrics["malformed_fraction"]
    return None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def learning_section(stages: dict[str, dict[str, Any]]) -> str:
    """The report's "Did fine-tuning learn?" section, from the ``results.json`` stages ("" when
    there is no finished evaluate stage)."""
    evaluate = next((r for r in stages.values() if r.get("kind") == "evaluate" and r.get("methods")), None)
    if evaluate is None:
        return ""
    baseline = next((r for r in stages.values() if r.get("kind") == "baseline" and r.get("methods")), None)
    base, tuned = evaluate.get("base_validation") or {}, evaluate.get("validation") or {}
    base_loss, tuned_loss = base.get("cross_entropy_nats"), tuned.get("cross_entropy_nats")
    lines = ["## Did fine-tuning learn?", ""]
    which = adapter_step(evaluate) or f" of run `{evaluate.get('experiment')}`"
    if base_loss is not None and tuned_loss is not None:
        lines += [f"Validation loss on the same {base['windows']} validation windows of {base['context']} tokens "
                  f"(nats per target token): untrained base **{base_loss:.4f}**, fine-tuned adapter"
                  f"{which} **{tuned_loss:.4f}** ({validation_step(evaluate)}"
                  f"{tuned_loss - base_loss:+.4f}; perplexity {perplexity(base_loss):.3f} -> "
                  f"{perplexity(tuned_loss):.3f}).", ""]
    tuned_mse = _mse(evaluate, GREEDY)
    lines += ["Forecast errors of the untrained base, the fine-tuned adapter and the baselines on the same test "
              "trajectories: the comparison table at the top of this report."]
    malformed = (_malformed(baseline, UNCONSTRAINED), _malformed(evaluate, UNCONSTRAINED))
    if malformed[1] is not None:
        lines += ["", f"Unconstrained greedy decoding (no grammar) breaks the LLMTIME format on "
                      f"{_num_pct(malformed[0])} of the test trajectories with the untrained base and on "
                      f"{_num_pct(malformed[1])} with the fine-tuned adapter."]
    persistence_mse = _mse(evaluate, "persistence")
    lines += ["", *_goals(base_loss, tuned_loss, tuned_mse, persistence_mse, _mse(baseline, GREEDY))]
    if baseline is not None:
        lines += ["", *_paired_changes(baseline, evaluate)]
    if baseline is not None:
        lines += ["", *_reading(baseline, evaluate, persistence_mse)]
    return "\n".join(lines)


def _reading(baseline: dict[str, Any], evaluate: dict[str, Any], persistence_mse: dict[str, float | None]) -> list[str]:
    """What the goals do not say: how much of a goal the untrained base already meets, and the means."""
    base_median, tuned_median = _mse(baseline, GREEDY), _mse(evaluate, GREEDY)
    base_mean, tuned_mean = _mse(baseline, GREEDY, "mean"), _mse(evaluate, GREEDY, "mean")
    lines = []
    for name in SPECIES:
        base, tuned, persistence = base_median.get(name), tuned_median.get(name), persistence_mse.get(name)
        if None in (base, tuned, persistence) or base == 0:
            continue
        already = "already below" if base < persistence else "not below"
        worse = " (worse)" if _worse(base_mean, tuned_mean, name) else ""
        better = _share_better(evaluate, GREEDY, "persistence", name)
        beats = "" if better is None else \
            f"; the fine-tuned forecast beats persistence on {better[0]} of {better[1]} trajectories"
        lines.append(f"- {name}: the untrained base's greedy median MSE is {already} persistence's ({base:.4g} vs "
                     f"{persistence:.4g}); fine-tuning changes it by {tuned / base - 1:+.1%} (to {tuned:.4g}); "
                     f"mean MSE {_num(base_mean.get(name))} -> {_num(tuned_mean.get(name))}{worse}{beats}")
    return ["What the goals leave out:", *lines] if lines else []


def _share_better(record: dict[str, Any], method: str, reference: str, name: str) -> tuple[int, int] | None:
    """(trajectories where ``method``'s MSE for species ``name`` is below ``reference``'s, trajectories
    where both have one), from the per-trajectory errors of ``record``; None without them."""
    errors = {}
    for metrics in record.get("methods", []):
        per_trajectory = metrics["species"][name].get("per_trajectory", {}).get("mse")
        if metrics["method"] in (method, reference) and per_trajectory is not None:
            errors[metrics["method"]] = dict(zip(metrics["ids"], per_trajectory))
    if len(errors) < 2:
        return None
    pairs = [(mse, errors[reference][i]) for i, mse in errors[method].items() if i in errors[reference]]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    return (sum(a < b for a, b in pairs), len(pairs)) if pairs else None


def _worse(before: dict[str, float | None], after: dict[str, float | None], name: str) -> bool:
    return before.get(name) is not None and after.get(name) is not None and after[name] > before[name]


def adapter_step(record: dict[str, Any]) -> str:
    """Which checkpoint of which run an evaluate stage's ``record`` used, e.g. `` (run `final`, step 36
    of 40)``; "" when no step is recorded."""
    if record.get("adapter_step") is None:
        return ""
    return f" (run `{record.get('experiment')}`, step {record['adapter_step']} of {record.get('planned_steps')})"


def validation_step(record: dict[str, Any]) -> str:
    """``"validation at step N; "``: the step of the validation an evaluate ``record`` shows for its
    adapter (it may be earlier than the adapter's own step); "" when not recorded."""
    step = (record.get("validation") or {}).get("step")
    return "" if step is None else f"validation at step {step}; "


def _num_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def per_trajectory_mse(record: dict[str, Any] | None, method: str, name: str) -> dict[int, float]:
    """Trajectory id -> ``method``'s MSE for species ``name`` in a forecast stage's ``record``
    (finite values only; empty without per-trajectory errors)."""
    for metrics in (record or {}).get("methods", []):
        values = metrics["species"][name].get("per_trajectory", {}).get("mse")
        if metrics["method"] == method and values is not None:
            return {i: v for i, v in zip(metrics["ids"], values) if v is not None and math.isfinite(v)}
    return {}


def paired_median_change(after: np.ndarray, before: np.ndarray, *, n_resamples: int = 2000,
                         seed: int = 0) -> tuple[float, float, float]:
    """``median(after) / median(before) - 1`` over paired per-trajectory errors, and its 95 %
    percentile-bootstrap interval (trajectories resampled in pairs): ``(change, low, high)``."""
    def change(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.median(a) / np.median(b) - 1)

    interval = stats.bootstrap((after, before), change, paired=True, vectorized=False, n_resamples=n_resamples,
                               method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
    return change(after, before), float(interval.low), float(interval.high)


def _paired_changes(baseline: dict[str, Any], evaluate: dict[str, Any]) -> list[str]:
    """Per species, the fine-tuned greedy median MSE against the untrained base's and persistence's,
    with paired bootstrap intervals over the test trajectories both forecast."""
    lines = []
    for name in SPECIES:
        tuned = per_trajectory_mse(evaluate, GREEDY, name)
        for label, reference in (("the untrained base", per_trajectory_mse(baseline, GREEDY, name)),
                                 ("persistence", per_trajectory_mse(evaluate, "persistence", name))):
            ids = sorted(set(tuned) & set(reference))
            if len(ids) < 3 or not np.median([reference[i] for i in ids]) > 0:
                continue
            change, low, high = paired_median_change(np.array([tuned[i] for i in ids]),
                                                     np.array([reference[i] for i in ids]))
            lines.append(f"- {name}, fine-tuned vs {label}: median MSE {change:+.1%} [95% interval {low:+.1%}, "
                         f"{high:+.1%}] over {len(ids)} trajectories")
    if not lines:
        return []
    return ["Greedy median MSE of the fine-tuned adapter, relative to the untrained base and to persistence on the "
            "same test trajectories (paired percentile bootstrap, 2,000 resamples):", *lines]


def _goals(base_loss, tuned_loss, tuned_mse, persistence_mse, base_mse) -> list[str]:
    goals = []
    if base_loss is not None and tuned_loss is not None:
        met = tuned_loss < base_loss
        goals.append(f"- fine-tuning lowers the validation loss: **{'met' if met else 'NOT met'}** "
                     f"({base_loss:.4f} -> {tuned_loss:.4f})")
    for name in SPECIES:
        tuned, base = tuned_mse.get(name), base_mse.get(name)
        if tuned is not None and base is not None:
            goals.append(f"- fine-tuned greedy median MSE below the untrained base's for {name}: "
                         f"**{'met' if tuned < base else 'NOT met'}** ({tuned:.4g} vs {base:.4g})")
    for name in SPECIES:
        tuned, persistence = tuned_mse.get(name), persistence_mse.get(name)
        if tuned is None or persistence is None:
            continue
        met = tuned < persistence
        goals.append(f"- fine-tuned greedy median MSE below persistence for {name}: "
                     f"**{'met' if met else 'NOT met'}** ({tuned:.4g} vs {persistence:.4g})")
    return goals


__all__ = ["BASE_VALIDATION", "adapter_step", "base_note", "base_validation_flops", "learning_section", "score_untrained_base",
           "validation_step"]
