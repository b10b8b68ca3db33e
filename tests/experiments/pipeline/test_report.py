"""report.md from a run directory's ledger and results.json: the audit, each sweep's runs with the
FLOPs the ledger holds for them, the projection against what was spent."""

from __future__ import annotations

import json

from experiments.pipeline.report import FIGURES, REPORT_FILE, stage_flops, write_report
from experiments.pipeline.results import FORMAT, LEDGER_FILE, RESULTS_FILE
from flopcount import Ledger, audit_report

LIMIT = 10**15


def run_directory(tmp_path):
    with Ledger(tmp_path / LEDGER_FILE, LIMIT) as ledger:
        for name, flops in (("baseline", 10**12), ("grid/lr=0.001", 3 * 10**13), ("grid/lr=0.01", 2 * 10**13)):
            session = ledger.begin_session(name, model="tiny", convention="coursework", flop_settings={})
            ledger.charge(session, "train", flops, step=1, tokens=8)
            ledger.end_session(session, "finished")
    runs = [{"experiment": f"grid/lr={lr}", "settings": {"learning_rate": lr, "lora_rank": 4, "context": 128},
             "steps_done": 1, "status": "finished", "val_loss": loss, "val_perplexity": 2.0}
            for lr, loss in ((0.001, 1.5), (0.01, 1.25))]
    document = {
        "format": FORMAT, "plan": "mini", "plan_text": "",
        "plan_summary": {"description": "A two-run sweep.", "model": "tiny", "data": "simulated",
                         "limit": LIMIT, "convention": "coursework"},
        "projection": {"stages": [{"name": "grid", "flops": 10**14}, {"name": "final", "flops": 0}]},
        "stages": {"grid": {"kind": "sweep", "status": "finished", "runs": runs, "wall_seconds": 12.4,
                            "best": {"experiment": "grid/lr=0.01", "criterion": "lowest validation loss",
                                     "settings": {}}}},
    }
    (tmp_path / RESULTS_FILE).write_text(json.dumps(document))
    return tmp_path


def test_a_stages_flops_are_its_own_and_its_runs(tmp_path):
    audit = audit_report(run_directory(tmp_path) / LEDGER_FILE)
    assert stage_flops(audit, "grid") == 5 * 10**13 and stage_flops(audit, "baseline") == 10**12
    assert stage_flops(audit, "gri") == 0  # a prefix of a name is not the stage


def test_the_report_has_the_header_the_audit_the_sweep_and_the_projection(tmp_path):
    path = write_report(run_directory(tmp_path))
    assert path == tmp_path / REPORT_FILE and (tmp_path / FIGURES / "audit.png").is_file()
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "# Plan `mini`: results" and "A two-run sweep." in lines
    assert "> **The `tiny` model is randomly initialised: its forecasts mean nothing.** This run" in lines
    assert f"spent **{5.1e13:.6g}** of {LIMIT:.6g} FLOPs (5.10%)" in text
    assert "## Learning rate x LoRA rank grid (stage `grid`)" in lines
    assert "| 0.01 | 1 | 2e+13 | 2.00% | 1.25 | 2 | finished **(best)** |" in lines
    assert ("Selected `grid/lr=0.01` (lowest validation loss; each run's adapter is its last checkpoint, at the "
            "step shown); the next stage uses its setting.") in lines
    assert "| grid | finished | 1e+14 | 5e+13 | 50.0% | 12 s |" in lines
    assert "| final | pending | 0 | 0 | - | - |" in lines
    assert "## Training curves" not in text and "Did fine-tuning learn?" not in text  # nothing to show
