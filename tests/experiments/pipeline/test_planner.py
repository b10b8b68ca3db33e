"""The planner: closed-form counts whatever the number of steps, under a memory limit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from experiments import load_plan, prepare_data, project
from experiments.pipeline.planner import DataShapes, plan_model

REPO_ROOT = Path(__file__).resolve().parents[3]

HUGE = """
[model]
source = "tiny"
[data]
simulate_systems = 30
[budget]
limit = 1e30
[training]
context = 64
eval_every = 1
eval_windows = 2
[[stages]]
kind = "train"
max_steps = 10000000000
budget_share = 0.5
[[stages]]
kind = "train"
name = "exact"
steps = 10000000000
"""

LIMITED = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a regression fails here, not the machine
from experiments import load_plan, prepare_data, project
from experiments.pipeline.planner import DataShapes
plan = load_plan(sys.argv[1])
shapes = DataShapes.of(plan, prepare_data(plan.data))
started = time.perf_counter()
projection = project(plan, shapes)
print(json.dumps({"seconds": time.perf_counter() - started, "projection": projection.to_dict()}))
"""


def test_ten_billion_steps_validated_every_step_are_planned_in_constant_memory(tmp_path):
    plan = tmp_path / "huge.toml"
    plan.write_text(HUGE)
    result = subprocess.run([sys.executable, "-c", LIMITED, str(plan)], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["seconds"] < 1.0
    stages = {stage["name"]: stage for stage in out["projection"]["stages"]}
    assert stages["exact"]["runs"][0]["steps"] == 10**10
    assert stages["train"]["runs"][0]["steps"] == 10**10  # half of 1e30 pays for every step
    assert stages["exact"]["flops"] == stages["train"]["flops"] > 10**20


def test_the_flopcount_plan_command_counts_ten_billion_steps_in_constant_memory():
    code = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            "sys.argv = ['flopcount'] + sys.argv[1:]; runpy.run_module('flopcount', run_name='__main__')")
    arguments = ["plan", "--model", "qwen2.5-0.5b", "--steps", "10000000000", "--batch", "4", "--seq-len", "512",
                 "--eval-every", "1", "--eval-windows", "8", "--budget", "1e30", "--json"]
    result = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["workload"]["steps"] == 10**10 and 0 < data["steps_that_fit"] <= 10**10
    assert data["validation"] == 10**10 * data["per_validation"]


def test_a_dry_run_of_a_ten_billion_token_context_is_refused_quickly_in_bounded_memory():
    code = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)); "
            "sys.argv = ['experiments'] + sys.argv[1:]; runpy.run_module('experiments', run_name='__main__')")
    arguments = ["run", "--plan", "demo", "--dry-run", "--set", "training.context=10000000000"]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=120)
    assert time.perf_counter() - started < 60
    assert "this is a bug" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert result.returncode != 0 and "DOES NOT FIT" in result.stdout
    assert ("training.context = 10000000000 tokens is longer than the model's 2048 positions "
            "(max_position_embeddings)") in result.stdout


CONTEXTS = """
[model]
source = "tiny"
[data]
simulate_systems = 30
[budget]
limit = 1e16
[training]
context = 64
[[stages]]
kind = "train"
steps = 2
[[stages]]
kind = "context"
name = "long"
from = "train"
contexts = [64, {context}]
steps = 2
"""


def test_a_context_longer_than_every_validation_trajectory_is_a_problem_naming_the_key(tmp_path):
    plan_file = tmp_path / "contexts.toml"
    plan_file.write_text(CONTEXTS.format(context=2000))
    plan = load_plan(str(plan_file))
    shapes = DataShapes.of(plan, prepare_data(plan.data))
    assert max(shapes.validation_lengths) < 2000 <= plan_model(plan).max_position_embeddings
    projection = project(plan, shapes)
    assert not projection.fits
    assert projection.problems == [f"stage 'long': contexts = 2000 tokens is longer than every validation trajectory "
                                   f"(the longest has {max(shapes.validation_lengths)} tokens): no window can be "
                                   "filled; lower it"]
    plan_file.write_text(CONTEXTS.format(context=128))
    assert project(load_plan(str(plan_file)), shapes).fits
