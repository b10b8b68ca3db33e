"""results.json: one plan per run directory, rewritten whole, selections read back as configs."""

from __future__ import annotations

import json

import pytest

from experiments.pipeline.results import FORMAT, RESULTS_FILE, Results, run_config
from experiments.training.config import TrainConfig


def test_a_new_document_is_written_atomically_and_read_back(tmp_path):
    results = Results.open(tmp_path, "demo", "[model]\n")
    assert not (tmp_path / RESULTS_FILE).exists()  # nothing written before the first change
    results.stage("grid")["status"] = "running"
    results.set("spent", 10**17)
    document = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert document == {"format": FORMAT, "plan": "demo", "plan_text": "[model]\n",
                        "stages": {"grid": {"status": "running"}}, "spent": 10**17}
    assert sorted(p.name for p in tmp_path.iterdir()) == [RESULTS_FILE]  # no temporary file left
    assert Results.read(tmp_path).document == document
    assert Results.open(tmp_path, "demo", "[model]\n").stage("grid") == {"status": "running"}


def test_another_plan_or_a_foreign_file_is_refused_and_left_as_it_was(tmp_path):
    Results.open(tmp_path, "demo", "text").set("note", 1)
    before = (tmp_path / RESULTS_FILE).read_text()
    with pytest.raises(ValueError, match="holds a run of plan 'demo' with other settings"):
        Results.open(tmp_path, "demo", "edited text")
    with pytest.raises(ValueError, match="holds a run of another plan"):
        Results.open(tmp_path, "coursework", "text")
    assert (tmp_path / RESULTS_FILE).read_text() == before
    (tmp_path / RESULTS_FILE).write_text('{"format": "other/1"}')
    with pytest.raises(ValueError, match="not a results file of this tool"):
        Results.open(tmp_path, "demo", "text")
    (tmp_path / RESULTS_FILE).write_text("{broken")
    with pytest.raises(ValueError, match="unreadable results file.*run into a new --out directory"):
        Results.open(tmp_path, "demo", "text")
    with pytest.raises(FileNotFoundError, match="run a plan there first"):
        Results.read(tmp_path / "elsewhere")


def test_a_resume_with_a_forgotten_set_shows_the_differing_lines_and_what_to_do(tmp_path):
    text = "[model]\nsource = 'tiny'\n"
    Results.open(tmp_path, "demo", text + "\n# --set training.learning_rate=2e-3").set("note", 1)
    with pytest.raises(ValueError) as caught:
        Results.open(tmp_path, "demo", text)  # the same plan, run again without its --set
    message = str(caught.value)
    assert "\n" not in message and "another plan" not in message, message
    assert "-# --set training.learning_rate=2e-3" in message
    assert "re-run with the same --set/--data/--model, or choose another --out directory" in message


def test_a_selection_exists_only_once_its_stage_has_finished(tmp_path):
    results = Results.open(tmp_path, "demo", "")
    best = TrainConfig(lora_rank=8, learning_rate=5e-5)
    results.stage("grid").update(status="running", best={"settings": best.settings()})
    assert results.selection("grid") is None and not results.finished("grid")
    results.stage("grid")["status"] = "finished"
    assert results.finished("grid") and results.selection("grid") == best
    assert results.selection("never-ran") is None
    entry = {"experiment": "grid/r=8", "steps": 40, "settings": best.settings()}
    assert run_config(entry) == best.for_run("grid/r=8", 40)
