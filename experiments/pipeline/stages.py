"""What one stage of a plan does: a training run, or a forecast of the test split.

Each function takes the ``PlanWorkspace`` (plan, run directory, data, ledger) and returns the
JSON-ready record ``results.json`` keeps for it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from experiments.forecasting.metrics import ValidationMetrics, results_table
from experiments.forecasting.forecast_config import ForecastConfig
from experiments.forecasting.generate import forecast_series
from experiments.forecasting.held_out import evaluate_test_split, llm_forecasts
from experiments.forecasting.sharding import generation_runner
from experiments.training.distributed import world
from experiments.pipeline.distributed import FORECAST, TRAIN, dispatch, per_rank_config
from experiments.pipeline.plan import PlanError
from experiments.pipeline.planner import plan_model, selection_config
from experiments.pipeline.results import run_config
from experiments.pipeline.selection import forecast_score
from experiments.pipeline.workspace import PlanWorkspace
from experiments.training.checkpoint import ADAPTER, read_checkpoint
from experiments.pipeline.learning import BASE_VALIDATION, score_untrained_base
from experiments.training.config import BudgetConfig
from experiments.training.loop import train
from experiments.training.metrics_log import read_metrics
from experiments.training.validation import loss_sums, validation_indices
from flopcount import Budget, CountSetup
from lora import inject, load_adapter, read_adapter

if TYPE_CHECKING:
    from experiments.pipeline.plan import StageSpec


def stage_dir(run: PlanWorkspace, name: str) -> Path:
    """``out/stages/<name>`` (a run name's ``/`` and ``=`` become path-safe)."""
    return run.out_dir / "stages" / name.replace("/", "__").replace("=", "-")


def budget_config(run: PlanWorkspace, entry: dict[str, Any]) -> BudgetConfig:
    """The plan's budget, with the run capped at ``entry["flops_cap"]`` (the FLOPs the planner
    gave it, plus, after a crash, what redoing its lost steps costs, paid from the reserve:
    :mod:`experiments.pipeline.caps`); at the cap it stops cleanly, with a checkpoint."""
    cap = entry.get("flops_cap", entry["projected_flops"])
    return replace(run.plan.budget, ledger=run.ledger_path, require_fit=False, experiment_limit=cap)


def run_training(run: PlanWorkspace, stage: StageSpec, entry: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) the run ``entry`` of ``stage``; returns its outcome for ``results.json``."""
    dispatch(TRAIN, stage.name, entry)  # the other ranks train with this one (several processes)
    config = per_rank_config(run_config(entry), world()[1])
    result = train(run.base_model(), run.data, config, stage_dir(run, entry["experiment"]),
                   budget_config(run, entry), progress=run.progress)
    return {
        "status": result.status, "stop_reason": result.stop_reason, "stopped_by_budget": result.stopped_by_budget,
        "steps_done": result.steps_done,
        "run_dir": str(result.run_dir.relative_to(run.out_dir)),
        "checkpoint": str(result.checkpoint.relative_to(run.out_dir)) if result.checkpoint else None,
        "metrics": str(result.metrics_path.relative_to(run.out_dir)),
        "train_loss": result.final_train_loss, "val_loss": result.last_val_loss,
        "val_perplexity": result.last_val_perplexity, "best_val_loss": result.best_val_loss,
        "best_val_step": result.best_val_step,
    }  # fmt: skip


def best_adapter(run: PlanWorkspace, source: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The entry of the best run of a finished training stage's record ``source``, and the
    adapter file of its last checkpoint."""
    entry = next(e for e in source["runs"] if e["experiment"] == source["best"]["experiment"])
    return entry, run.out_dir / (entry.get("checkpoint") or "<no checkpoint>") / ADAPTER


def check_adapter(stage: str, entry: dict[str, Any], adapter: Path, model: Any) -> None:
    """Refuse (``PlanError``, one line) an adapter that is missing, unreadable or not for ``model``,
    read and checked without changing ``model``: before the first FLOP of stage ``stage`` is charged."""
    try:
        read_adapter(model, adapter)
    except (OSError, ValueError) as error:
        raise PlanError(f"stage {stage!r} forecasts with the adapter of run {entry['experiment']!r}, but {adapter} "
                        f"cannot be used ({error}): restore it, or run the plan into a new --out directory; nothing "
                        "was charged") from error


def run_forecast_stage(run: PlanWorkspace, stage: StageSpec, source: dict[str, Any] | None,
                       caps: dict[str, int] | None = None) -> dict[str, Any]:
    """Forecast the test split with the base model (``baseline``) or the best adapter of the
    stage ``source`` (``evaluate``), next to every non-LLM baseline; generation is charged
    to the ledger as experiment ``stage.name``. ``caps``: experiment -> its FLOP cap."""
    caps = caps or {}
    model, lora, validation, validation_step = run.base_model(), None, None, None
    record: dict[str, Any] = {"source": stage.source or None}
    if stage.kind == "evaluate":
        entry, adapter = best_adapter(run, source)
        check_adapter(stage.name, entry, adapter, model)
        # the untrained base on the run's own validation windows, before its adapter goes in
        record.update(base_validation=score_untrained_base(run, stage, entry, model,
                                                           caps.get(f"{stage.name}/{BASE_VALIDATION}")))
        lora = load_adapter(model, adapter).config
        adapter_step = read_checkpoint(adapter.parent).step
        validation, validation_step = _validation_of(run, entry, adapter_step)
        record.update(adapter=str(adapter.relative_to(run.out_dir)), experiment=entry["experiment"],
                      adapter_step=adapter_step, planned_steps=entry["steps"])
    dispatch(FORECAST, stage.name, record.get("adapter"))  # the other ranks make their share of the calls
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    out = stage_dir(run, stage.name)
    plan = run.plan
    passes, ids = _forecast_work(run)
    setup = CountSetup.from_lora(model.config, lora, plan.budget.convention)
    budget = Budget(plan.budget.limit, run.ledger_path, stage.name, setup,
                    config={"stage": stage.kind, "test_ids": ids.tolist()}, experiment_limit=caps.get(stage.name))
    described = "untrained base model" if stage.kind == "baseline" else \
        f"adapter of run `{record['experiment']}` at step {record['adapter_step']} of {record['planned_steps']}"
    with budget:
        results = evaluate_test_split(model, run.tokenizer, run.data, passes, budget, out, ids=ids,
                                      validation=validation, n_plots=run.plan.forecast.plot_series,
                                      progress=run.progress, overwrite=True, runner=generation_runner(),
                                      model_label=described.replace("`", ""))
    record.update(
        description=f"{len(ids)} test trajectories, {run.plan.data.prompt_steps} context steps, "
                    f"{run.plan.data.forecast_steps} forecast steps; the LLM rows are the {described}, "
                    "decoded under the LLMTIME grammar except `-unconstrained` (its `malformed` column is how "
                    "often the model breaks the format on its own; its errors are over the steps it wrote "
                    "well-formed). MSE / MAE / R² per species in original units: mean [95% bootstrap "
                    "interval] and median.",
        results_table=results_table(results.metrics),
        methods=[metrics.to_dict() for metrics in results.metrics],  # per trajectory: the report's spotlight
        figures=[str(path.relative_to(run.out_dir)) for path in results.files if path.suffix == ".png"],
        validation={**validation.to_dict(), "step": validation_step} if validation else None,
    )  # fmt: skip
    return record


def forecast_share(run: PlanWorkspace, stage_name: str, adapter: str | None) -> None:
    """A rank other than 0: its share of forecast stage ``stage_name``'s generation, with the
    base model (and ``adapter``, relative to the run directory); rank 0 charges, merges, writes."""
    model = run.base_model()
    if adapter is not None:
        load_adapter(model, run.out_dir / adapter)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    passes, ids = _forecast_work(run)
    llm_forecasts(model, run.tokenizer, run.data, passes, None, ids, progress=False, runner=generation_runner())


def _forecast_work(run: PlanWorkspace) -> tuple[tuple[ForecastConfig, ...], np.ndarray]:
    """The ``generate`` passes of a forecast stage and the test trajectories it forecasts."""
    return run.plan.forecast_passes(), run.plan.forecast.forecast_ids(run.data.split.test)


def _validation_of(run: PlanWorkspace, entry: dict[str, Any],
                   adapter_step: int) -> tuple[ValidationMetrics | None, int | None]:
    """The latest validation of a training run at or before ``adapter_step`` (from its metrics
    file; a later one scored weights the adapter does not hold), and its step."""
    records = [r for r in read_metrics(run.out_dir / entry["metrics"], kind="validation")
               if r["step"] <= adapter_step and r.get("val_loss") is not None]
    if not records:
        return None, None
    return ValidationMetrics(cross_entropy_nats=records[-1]["val_loss"], n_tokens=records[-1]["val_tokens"]), \
        records[-1]["step"]


def measure_training_rule(run: PlanWorkspace, experiment: str, seq_len: int, cap: int | None = None) -> dict[str, Any]:
    """Backward ÷ forward FLOPs of one LoRA training step of the plan's model, measured with
    ``FlopCounterMode`` on one validation window of ``seq_len`` tokens (the budget assumes 2).
    The step is compute like any other: it is charged to ``experiment`` (capped at ``cap``
    FLOPs) before it runs."""
    from flopcount.trace.hooks import measure_backward_ratio

    settings = run.plan.training
    model = run.base_model()
    inject(model, settings.lora_config())
    window = run.data.validation_windows(seq_len).input_ids[:1]  # (1, seq_len)
    setup = settings.count_setup(model.config, run.plan.budget.convention)
    with Budget(run.plan.budget.limit, run.ledger_path, experiment, setup,
                config={"measure": "backward / forward"}, experiment_limit=cap) as budget:
        budget.charge_training_step(batch=1, seq_len=seq_len, step=1)
        measured = measure_backward_ratio(model, torch.as_tensor(window))
    return {"forward": measured.forward, "backward": measured.backward, "ratio": measured.ratio,
            "assumed": measured.assumed, "batch": 1, "seq_len": seq_len}


def score_at_common_context(run: PlanWorkspace, stage: StageSpec, record: dict[str, Any],
                            cap: int | None = None) -> str:
    """Score every run of a context stage on the same validation windows, at the stage's longest
    context, and store ``selection_val_loss`` in each run's entry; returns the criterion.

    A run's own validation loss is measured at its own context, where later tokens see more
    history, so losses at different contexts do not compare. The scoring is charged as
    validation of the ledger experiment ``<stage>/selection`` (capped at ``cap`` FLOPs), one
    step per run.
    """
    scoring = selection_config(stage, [run_config(entry) for entry in record["runs"]])
    context = scoring.context
    windows = run.data.validation_windows(context)
    indices = validation_indices(len(windows), scoring.eval_windows, scoring.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    setup = scoring.count_setup(plan_model(run.plan), run.plan.budget.convention)
    budget = Budget(run.plan.budget.limit, run.ledger_path, scoring.experiment, setup,
                    config={"context": context, "windows": len(indices)}, experiment_limit=cap)
    with budget:
        for number, entry in enumerate(record["runs"], start=1):
            if entry.get("selection_val_loss") is not None or not entry.get("checkpoint"):
                continue
            model = run.base_model()  # a fresh base per run: one alive at a time (a full-size copy holds 2 GB)
            load_adapter(model, run.out_dir / entry["checkpoint"] / ADAPTER)
            budget.charge_forward(batch=len(indices), seq_len=context, step=number)
            nats, tokens = loss_sums(model.to(device), windows, indices, scoring.batch_size, device)
            entry.update(selection_val_loss=float(nats / tokens), selection_context=context)
            run.results.save()
            del model
    return f"lowest validation loss on the same {len(indices)} validation windows of {context} tokens"


def score_validation_forecasts(run: PlanWorkspace, record: dict[str, Any], caps: dict[str, int]) -> str:
    """Forecast the ``[selection]``'s validation trajectories with every run's last adapter and
    store its ``selection_forecast_error`` (and the per-species figures) in the run's entry;
    returns the criterion. Charged as generation of ``<run>/selection``, capped at ``caps`` of
    that experiment, each ``generate`` call reserved before it runs."""
    plan, data, selection = run.plan, run.data, run.plan.selection
    k, m = plan.data.prompt_steps, plan.data.forecast_steps
    ids = selection.validation_ids(data.split.validation)
    examples = [data.forecast_example(i, k, m) for i in ids.tolist()]
    truth = data.trajectories[ids, k:k + m].astype(np.float64)  # (N, m, 2), original units
    last_observed = data.trajectories[ids, k - 1].astype(np.float64)  # (N, 2): persistence
    config = selection.forecast_config(k, m, data.fmt)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for entry in record["runs"]:
        if entry.get("selection_forecast_error") is not None or not entry.get("checkpoint"):
            continue
        model = run.base_model()  # a fresh base per run: one alive at a time
        lora = load_adapter(model, run.out_dir / entry["checkpoint"] / ADAPTER).config
        setup = CountSetup.from_lora(model.config, lora, plan.budget.convention)
        experiment = selection.experiment(entry["experiment"])
        with Budget(plan.budget.limit, run.ledger_path, experiment, setup,
                    config={"validation_ids": ids.tolist(), "of_run": entry["experiment"]},
                    experiment_limit=caps[experiment]) as budget:
            output = forecast_series(model.to(device), run.tokenizer, examples, config, budget, progress=False)
        score = forecast_score(output.values, truth, last_observed, selection.metric)
        entry.update(selection_forecast_error=score.error, selection_forecast=score.to_dict())
        run.results.save()
        del model
    return selection.describe()
