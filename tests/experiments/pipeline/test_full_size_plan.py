"""Every stage kind of a plan at full size, through ``python -m experiments run``.

Qwen2.5-0.5B's architecture is built from the shipped ``config.json`` with random weights and
saved with ``save_pretrained`` in bfloat16 (as the real checkpoint), and a plan points at that
directory: the real loading path (``from_pretrained`` upcasting to float32), the real dataset,
the real tokenizer and the coursework convention. A handful of steps at contexts of 16 and 32
tokens and forecasts of 2 steps from 10 keep it to a few minutes on 2 CPU cores.

Checked: every stage finished; every charge in the ledger equals the analytic count of the
full-size model for its phase and shape (generation: the reservation at the grammar's bound
and its settlement at the tokens generated); the report's audit table equals the ledger; and
the run's peak resident memory stays under ``PEAK_RSS_BOUND``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # 6-14 min on 2 shared CPU cores (plan run: 6.4 min at load 1.5, 11 min at load 9)

PARAMETERS = 494_032_768  # Qwen2.5-0.5B, tied embeddings counted once
# One float32 copy of the weights (1.98 GB), the bfloat16 checkpoint mapped while it loads (0.99 GB),
# and 2 GB for activations at these shapes, the tokenizer, torch and Python: about 4.96 GB. A second
# float32 copy alive at once does not fit under it: a forecast stage's model outlived the stage in a
# reference cycle (matplotlib's pyparsing tracebacks pin the callers' frames) and was freed only when
# the next full garbage collection ran, before or after the next stage's copy loaded as the allocation
# counts fell (4.34 GB in one run, 7.09 GB in a CI run); load_model now collects first.
PEAK_RSS_BOUND = 4 * PARAMETERS + 2 * PARAMETERS + 2 * 10**9  # bytes, about 4.96 GB

PROMPT_STEPS, FORECAST_STEPS, MAX_INT_DIGITS, PRECISION = 10, 2, 2, 2
SERIES, SAMPLES = 2, 2  # test trajectories forecast (one batch of both), sampled continuations each
BATCH, CONTEXT, EVAL_EVERY, EVAL_WINDOWS, RANK = 2, 32, 2, 2, 2
GRID_RANKS, CONTEXTS = (2, 4), (16, 32)
MEASUREMENT_TOKENS = 64  # the plan runner's backward/forward check: one LoRA step on one such window

PLAN = f"""
name = "full-size"
description = "every stage kind on the full-size Qwen2.5-0.5B architecture (random weights)"

[model]
source = "{{model}}"
tokenizer = "{{tokenizer}}"

[data]
path = "{{data}}"
prompt_steps = {PROMPT_STEPS}
forecast_steps = {FORECAST_STEPS}
precision = {PRECISION}

[budget]
limit = 1e15
convention = "coursework"

[training]
batch_size = {BATCH}
context = {CONTEXT}
learning_rate = 1e-4
lora_rank = {RANK}
eval_every = {EVAL_EVERY}
eval_windows = {EVAL_WINDOWS}
checkpoint_every = 2

[forecast]
series = {SERIES}
greedy = true
unconstrained = true
samples = {SAMPLES}
batch_size = {SERIES}
max_int_digits = {MAX_INT_DIGITS}
plot_series = 1

[[stages]]
name = "baseline"
kind = "baseline"

[[stages]]
name = "lora-default"
kind = "train"
max_steps = 2
budget_share = 0.1

[[stages]]
name = "grid"
kind = "sweep"
grid = {{{{ lora_rank = {list(GRID_RANKS)} }}}}
max_steps = 2
budget_share = 0.2

[[stages]]
name = "context"
kind = "context"
from = "grid"
contexts = {list(CONTEXTS)}
max_steps = 2
budget_share = 0.2

[[stages]]
name = "final"
kind = "final"
from = "context"
max_steps = 3
budget_share = "rest"

[[stages]]
name = "evaluate"
kind = "evaluate"
from = "final"
"""

EXPERIMENTS = ["backward-forward", "baseline", "lora-default", "grid/r=2", "grid/r=4", "context/context=16",
               "context/context=32", "context/selection", "final", "evaluate/base-validation", "evaluate"]

BUILD = """
import sys, torch
from transformers import AutoConfig
from experiments.models.loading import build_random_model
build_random_model(AutoConfig.from_pretrained(sys.argv[1]), seed=0, dtype=torch.bfloat16).save_pretrained(sys.argv[2])
"""


def analytic_flops(phase: str, *, lora_rank: int, **shape: int) -> int:
    """The coursework count of the full-size model (the ``qwen2.5-0.5b`` preset, not the run's
    own config) for one charge: ``train`` (batch, seq_len), ``validation`` (batch, seq_len) or
    ``generation`` (prompt_len, new_tokens, samples, batch), LoRA of ``lora_rank`` on q and v.

    The only place this test calls flopcount's count functions.
    """
    import flopcount

    setup = flopcount.CountSetup.of("qwen2.5-0.5b", "coursework", lora_rank=lora_rank,
                                    lora_targets=("q_proj", "v_proj"))
    if phase == "train":
        return flopcount.training_step_flops(setup, shape["batch"], shape["seq_len"])
    if phase == "validation":
        return flopcount.forward_flops(setup, shape["seq_len"], batch=shape["batch"]).total
    if phase == "generation":
        return flopcount.generation_flops(setup, shape["prompt_len"], shape["new_tokens"],
                                          samples=shape["samples"], batch=shape["batch"]).total
    raise ValueError(f"unknown phase {phase!r}")


@dataclass(frozen=True)
class Finished:
    """A finished child process: exit code, wall time (s), its own peak RSS (bytes), its output."""

    returncode: int
    wall_s: float
    peak_rss: int
    output: str


def run_measured(command: list[str], log: Path) -> Finished:
    """Run ``command`` to the end; its peak RSS is read from ``wait4`` (that child alone, not
    the maximum over every child this test process ever had)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return Finished(child.returncode, time.perf_counter() - started, usage.ru_maxrss * 1024, log.read_text())


@dataclass(frozen=True)
class FullSizeRun:
    out: Path
    model_dir: Path
    data: Path
    run: Finished


@pytest.fixture(scope="module")
def full_size_run(qwen_assets, real_data_path, tmp_path_factory) -> FullSizeRun:
    root = tmp_path_factory.mktemp("full-size")
    model_dir = root / "model"
    built = run_measured([sys.executable, "-c", BUILD, str(qwen_assets), str(model_dir)], root / "build.log")
    assert built.returncode == 0, built.output[-3000:]
    plan = root / "full-size.toml"
    plan.write_text(PLAN.format(model=model_dir, tokenizer=qwen_assets, data=real_data_path))
    out = root / "run"
    run = run_measured([sys.executable, "-m", "experiments", "run", "--plan", str(plan), "--out", str(out),
                        "--no-progress"], root / "run.log")
    assert run.returncode == 0, run.output[-5000:]
    print(f"\nfull-size plan: {run.wall_s:.1f} s wall, peak RSS {run.peak_rss / 1e9:.2f} GB "
          f"(bound {PEAK_RSS_BOUND / 1e9:.2f} GB); model build {built.wall_s:.1f} s")
    return FullSizeRun(out, model_dir, real_data_path, run)


def results(run: FullSizeRun) -> dict:
    return json.loads((run.out / "results.json").read_text())["stages"]


def test_every_stage_of_the_full_size_plan_finished_with_the_planned_steps(full_size_run, record_property):
    record_property("wall_s", round(full_size_run.run.wall_s, 1))
    record_property("peak_rss_gb", round(full_size_run.run.peak_rss / 1e9, 2))
    stages = results(full_size_run)
    assert {name: record["status"] for name, record in stages.items()} == dict.fromkeys(
        ["backward-forward", "baseline", "lora-default", "grid", "context", "final", "evaluate"], "finished")
    for name, steps in (("lora-default", 2), ("grid", 2), ("context", 2), ("final", 3)):
        runs = stages[name]["runs"]
        outcomes = [(run["status"], run["steps"], run["steps_done"]) for run in runs]
        assert outcomes == [("finished", steps, steps)] * len(runs)
    assert [run["settings"]["lora_rank"] for run in stages["grid"]["runs"]] == list(GRID_RANKS)
    assert [run["settings"]["context"] for run in stages["context"]["runs"]] == list(CONTEXTS)
    assert stages["evaluate"]["experiment"] == "final"


def test_the_saved_model_is_the_full_size_architecture_in_bfloat16(full_size_run):
    from safetensors import safe_open

    from flopcount import PRESETS, model_shape

    config = json.loads((full_size_run.model_dir / "config.json").read_text())
    assert config["torch_dtype" if "torch_dtype" in config else "dtype"] == "bfloat16"
    shape = model_shape(full_size_run.model_dir)
    assert dataclasses.replace(shape, name="") == dataclasses.replace(PRESETS["qwen2.5-0.5b"], name="")
    with safe_open(full_size_run.model_dir / "model.safetensors", "pt") as weights:
        dtypes = {weights.get_slice(name).get_dtype() for name in weights.keys()}
        count = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    assert dtypes == {"BF16"} and count == PARAMETERS  # tied: the embedding is stored once


def test_peak_resident_memory_stays_within_the_bound(full_size_run):
    assert full_size_run.run.peak_rss <= PEAK_RSS_BOUND, (
        f"peak RSS {full_size_run.run.peak_rss / 1e9:.2f} GB > {PEAK_RSS_BOUND / 1e9:.2f} GB")
    assert full_size_run.run.peak_rss > 4 * PARAMETERS  # it did hold the float32 model


def ledger_charges(out: Path) -> dict[str, list]:
    from flopcount import Ledger

    with Ledger(out / "ledger.sqlite") as ledger:
        return {name: ledger.charges(name) for name in ledger.spent_by_experiment()}


def training_charges(entry: dict) -> list[tuple[str, int, int]]:
    """``(phase, step, FLOPs)`` a training run of ``steps`` steps is due: every step, and a
    validation of ``EVAL_WINDOWS`` windows every ``EVAL_EVERY`` steps and after the last."""
    settings, steps = entry["settings"], entry["steps"]
    shape = {"batch": settings["batch_size"], "seq_len": settings["context"], "lora_rank": settings["lora_rank"]}
    due = []
    for step in range(1, steps + 1):
        due.append(("train", step, analytic_flops("train", **shape)))
        if step % EVAL_EVERY == 0 or step == steps:
            due.append(("validation", step, analytic_flops("validation", **{**shape, "batch": EVAL_WINDOWS})))
    return due


def test_every_training_and_validation_charge_is_the_full_size_analytic_count(full_size_run):
    charges, stages = ledger_charges(full_size_run.out), results(full_size_run)
    assert list(charges) == EXPERIMENTS
    for stage in ("lora-default", "grid", "context", "final"):
        for entry in stages[stage]["runs"]:
            got = [(c.phase, c.step, c.flops) for c in charges[entry["experiment"]]]
            assert got == training_charges(entry), entry["experiment"]
            assert not any(c.is_rerun for c in charges[entry["experiment"]])
    measured = [(c.phase, c.step, c.flops) for c in charges["backward-forward"]]
    assert measured == [("train", 1, analytic_flops("train", batch=1, seq_len=MEASUREMENT_TOKENS, lora_rank=RANK))]
    chosen_rank = stages["grid"]["best"]["settings"]["lora_rank"]
    scoring = analytic_flops("validation", batch=EVAL_WINDOWS, seq_len=max(CONTEXTS), lora_rank=chosen_rank)
    assert [(c.phase, c.step, c.flops) for c in charges["context/selection"]] == [
        ("validation", number, scoring) for number in range(1, len(CONTEXTS) + 1)]
    final = stages["final"]["runs"][0]["settings"]  # the untrained base on the final run's windows
    base = analytic_flops("validation", batch=EVAL_WINDOWS, seq_len=final["context"], lora_rank=0)
    assert [(c.phase, c.flops) for c in charges["evaluate/base-validation"]] == [("validation", base)]


def prompt_lengths(qwen_assets: Path, data_path: Path, ids: list[int]) -> list[int]:
    """Token lengths of the forecast prompts of trajectories ``ids``, as the plan writes them."""
    from experiments.data import DataConfig, prepare_data
    from lvdata import load_tokenizer, tokenize_texts

    tokenizer = load_tokenizer(qwen_assets)
    data = prepare_data(DataConfig(path=str(data_path), prompt_steps=PROMPT_STEPS, forecast_steps=FORECAST_STEPS,
                                   precision=PRECISION), tokenizer)
    prompts = [data.forecast_example(i, PROMPT_STEPS, FORECAST_STEPS).prompt_text for i in ids]
    return [len(tokens) for tokens in tokenize_texts(tokenizer, prompts)]


def test_every_generation_is_reserved_at_the_grammar_bound_and_settled_to_its_analytic_count(
        full_size_run, qwen_assets):
    charges, stages = ledger_charges(full_size_run.out), results(full_size_run)
    bound = FORECAST_STEPS * (2 * (MAX_INT_DIGITS + 1 + PRECISION) + 2)  # m steps of "DD.dd,DD.dd;"
    ranks = {"baseline": 0, "evaluate": stages["final"]["runs"][0]["settings"]["lora_rank"]}
    for stage, rank in ranks.items():
        forecast = json.loads((full_size_run.out / "stages" / stage / "results.json").read_text())
        assert len(forecast["test_ids"]) == SERIES
        # one left-padded batch of all the series
        prompt_len = max(prompt_lengths(qwen_assets, full_size_run.data, forecast["test_ids"]))
        generations = charges[stage]
        assert [c.phase for c in generations] == ["generation"] * 3  # greedy, unconstrained greedy, sampled
        for charge, samples in zip(generations, (1, 1, SAMPLES)):
            sequences = SERIES * samples
            assert charge.tokens % sequences == 0
            new_tokens = charge.tokens // sequences - prompt_len + 1
            assert 1 <= new_tokens <= bound
            shape = {"prompt_len": prompt_len, "samples": samples, "batch": SERIES, "lora_rank": rank}
            assert charge.reserved_flops == analytic_flops("generation", new_tokens=bound, **shape)
            assert charge.flops == analytic_flops("generation", new_tokens=new_tokens, **shape)
            assert not charge.is_open_reservation
        assert forecast["generation_flops"] == sum(c.flops for c in generations)


def table_after(text: str, heading: str) -> list[list[str]]:
    """The body cells of the first Markdown table after ``heading``."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2:end]]


def test_the_report_and_the_audit_equal_the_ledger(full_size_run):
    from flopcount import Ledger, audit_report

    charges = ledger_charges(full_size_run.out)
    audit = audit_report(full_size_run.out / "ledger.sqlite")
    assert [row.name for row in audit.rows] == EXPERIMENTS
    for row in audit.rows:
        assert row.total == sum(c.flops for c in charges[row.name])
        assert row.by_phase == {phase: sum(c.flops for c in charges[row.name] if c.phase == phase)
                                for phase in ("train", "validation", "generation")}
    with Ledger(full_size_run.out / "ledger.sqlite") as ledger:
        assert ledger.spent == audit.total == sum(row.total for row in audit.rows)

    report = (full_size_run.out / "report.md").read_text()
    rows = {cells[1]: cells for cells in table_after(report, "## FLOP audit: every experiment")
            if cells[1] and not cells[1].startswith("**")}
    assert list(rows) == EXPERIMENTS
    for row in audit.rows:  # columns: training, validation, generation, ..., total (4 significant digits)
        cells = rows[row.name]
        assert [float(cells[i]) for i in (5, 6, 7, 9)] == pytest.approx(
            [row.by_phase["train"], row.by_phase["validation"], row.by_phase["generation"], row.total], rel=5e-4)
        assert int(cells[3].replace(",", "")) == row.steps
    spent = re.search(r"spent (\d+) \(", report)
    assert spent is not None and int(spent.group(1)) == audit.total
