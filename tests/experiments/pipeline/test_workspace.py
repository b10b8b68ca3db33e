"""PlanWorkspace: the plan's tokenizer and data loaded once, the planner's token counts, what the
ledger has left, and the settings the finished training stages chose."""

from __future__ import annotations

from pathlib import Path

from experiments.pipeline.plan import load_plan
from experiments.pipeline.results import Results
from experiments.pipeline.workspace import PlanWorkspace
from experiments.training.config import TrainConfig
from flopcount import Ledger

PLAN = """
name = "workspace"
[model]
source = "tiny"
[data]
simulate_systems = 20
prompt_steps = 10
forecast_steps = 4
[budget]
limit = 1e12
[[stages]]
name = "grid"
kind = "sweep"
grid = { lora_rank = [1, 2] }
steps = 1
[[stages]]
kind = "baseline"
"""


def workspace(tmp_path) -> PlanWorkspace:
    (tmp_path / "plan.toml").write_text(PLAN)
    plan = load_plan(tmp_path / "plan.toml")
    (tmp_path / "out").mkdir()  # the runner makes it
    return PlanWorkspace(plan, tmp_path / "out", Results.open(tmp_path / "out", plan.name, plan.text), progress=False)


def test_the_tiny_model_takes_the_shared_tokenizer_and_the_data_is_prepared_once(tmp_path, qwen_assets):
    run = workspace(tmp_path)
    shapes = run.shapes  # the planner's counts: no tokenizer loaded for them
    assert run._tokenizer is None and shapes.test_series > 0
    tokenizer = run.tokenizer
    assert Path(tokenizer.name_or_path) == qwen_assets and run.tokenizer is tokenizer
    data = run.data
    assert run.data is data and data.fmt == run.plan.data.llmtime_format()
    assert data.trajectories.shape == (20, 100, 2)  # simulated: the plan's 20 systems


def test_the_ledger_is_whole_before_the_first_charge_and_selections_need_a_finished_stage(tmp_path):
    run = workspace(tmp_path)
    assert run.remaining() == 10**12 and run.ledger_path == tmp_path / "out" / "ledger.sqlite"
    with Ledger(run.ledger_path) as ledger:
        session = ledger.begin_session("grid/r=1", model="tiny", convention="coursework", flop_settings={})
        ledger.charge(session, "train", 4 * 10**11, step=1, tokens=8)
    assert run.remaining() == 6 * 10**11
    best = TrainConfig(lora_rank=2)
    run.results.stage("grid").update(status="running", best={"settings": best.settings()})
    assert run.selections() == {}
    run.results.stage("grid")["status"] = "finished"
    run.results.stage("baseline")["status"] = "finished"  # not a training stage: nothing to select
    assert run.selections() == {"grid": best}
