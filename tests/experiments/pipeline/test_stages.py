"""Stages hold one base model at a time: at full size a float32 copy is 2 GB, and two alive at
once took the plan's peak memory from 4.3 GB to 5.9 GB (the context stage's selection)."""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from experiments.pipeline.plan import load_plan
from experiments.pipeline.runner import open_run, run_stage
from experiments.pipeline.workspace import PlanWorkspace

STAGES = """
[[stages]]
name = "grid"
kind = "sweep"
grid = { lora_rank = [1, 2] }
steps = 1

[[stages]]
name = "context"
kind = "context"
from = "grid"
contexts = [16, 32]
steps = 1
"""


def one_model_plan(write_plan, path: Path) -> Path:
    return write_plan(path, STAGES, name="one-model", limit=1e12,
                      training={"eval_every": 1, "eval_windows": 2, "checkpoint_every": 1})


@dataclass
class CountingRun(PlanWorkspace):
    """A real ``PlanWorkspace`` that also records, at every base model it loads, how many of the
    models it loaded before are still referenced (after a garbage collection)."""

    loaded: list[weakref.ref] = field(default_factory=list)
    alive_at_load: list[int] = field(default_factory=list)

    def base_model(self):
        gc.collect()
        self.alive_at_load.append(sum(ref() is not None for ref in self.loaded))
        model = super().base_model()
        self.loaded.append(weakref.ref(model))
        return model


def test_training_and_context_selection_never_hold_two_base_models(write_plan, tmp_path: Path):
    path = one_model_plan(write_plan, tmp_path / "plan.toml")
    opened = open_run(load_plan(path), tmp_path / "run", progress=False)
    run = CountingRun(opened.plan, opened.out_dir, opened.results, progress=False)
    for stage in run.plan.stages:
        run_stage(run, stage)
    context = run.results.document["stages"]["context"]
    assert all(entry["selection_val_loss"] is not None for entry in context["runs"])
    assert run.alive_at_load == [0] * len(run.alive_at_load)
    # grid: 2 runs; context: 2 runs, then the selection scores each adapter on a fresh base model
    # (the first loaded also prices the scoring: no extra load for its config)
    assert len(run.alive_at_load) == 2 + 2 + 2


def test_an_adapter_is_shown_with_the_latest_validation_at_or_before_its_step(write_plan, tmp_path: Path):
    from experiments.pipeline.stages import _validation_of
    from experiments.training.metrics_log import MetricsLog

    path = one_model_plan(write_plan, tmp_path / "plan.toml")
    run = open_run(load_plan(path), tmp_path / "run", progress=False)
    with MetricsLog(run.out_dir / "metrics.jsonl") as log:
        for step, loss in ((10, 2.0), (20, 1.5), (30, 1.2)):  # step 30 validated after the last checkpoint (25)
            log.write("validation", step=step, val_loss=loss, val_ppl=0.0, val_tokens=100)
    validation, step = _validation_of(run, {"metrics": "metrics.jsonl"}, adapter_step=25)
    assert (validation.cross_entropy_nats, step) == (1.5, 20)
    assert _validation_of(run, {"metrics": "metrics.jsonl"}, adapter_step=5) == (None, None)
