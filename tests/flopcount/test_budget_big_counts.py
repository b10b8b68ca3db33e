"""``Budget`` with budgets far beyond 64 bits (1e27 FLOPs): exact charges, caps, pre-flight and audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import flopcount
from flopcount.audit.table import audit_report
from flopcount.budget import Budget, ExperimentCapExceeded, PlanDoesNotFit
from flopcount.ledger.ledger import BudgetExceeded

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "qwen2.5-0.5b"
SETUP = flopcount.CountSetup.of(MODEL, lora_rank=4, lora_targets=("q_proj", "v_proj"))
E26, E27 = 10**26, 10**27


@pytest.fixture
def ledger_path(tmp_path):
    return tmp_path / "ledger.sqlite"


def test_a_budget_of_1e27_takes_charges_of_1e26_caps_them_and_audits_exact_ints(ledger_path):
    with Budget(1e27, ledger_path, "pretrain", SETUP, experiment_limit=6e26) as guard:
        assert guard.limit == E27
        for step in range(6):
            guard.charge("train", 1e26, step=step, tokens=2048)
        with pytest.raises(ExperimentCapExceeded) as capped:
            guard.charge("train", 1, step=6)
        assert (capped.value.spent, capped.value.limit) == (6 * E26, 6 * E26)
    with Budget(1e27, ledger_path, "final", SETUP) as guard:
        assert guard.spent == 6 * E26 and guard.remaining == 4 * E26
        assert guard.can_afford(4 * E26) and not guard.can_afford(4 * E26 + 1)
        guard.charge("validation", 4 * E26 - 3, step=0)
        with pytest.raises(BudgetExceeded):
            guard.charge("train", 4, step=1)
        guard.charge("train", 3, step=1)
        assert guard.spent == E27 and guard.spent_by_experiment == {"pretrain": 6 * E26, "final": 4 * E26}

    report = audit_report(ledger_path)
    assert (report.limit, report.total, report.remaining) == (E27, E27, 0)
    assert [row.total for row in report.rows] == [6 * E26, 4 * E26] and report.rows[1].cumulative == E27
    document = json.loads(report.to_json())
    assert (document["limit"], document["total"]) == (E27, E27)  # JSON keeps the exact ints
    assert document["experiments"][1]["by_phase"] == {"train": 3, "validation": 4 * E26 - 3, "generation": 0}
    assert f",{4 * E26 - 3}," in report.to_csv()
    assert "1e+27 FLOPs (1000000000000000000000000000 exactly)" in report.to_markdown()
    written = report.write(ledger_path.parent / "audit")  # the PNG chart copes with ints beyond 64 bits
    assert len(written) == 4 and all(path.stat().st_size > 0 for path in written)  # md, csv, png, pdf


def test_the_audit_cli_prints_exact_ints_beyond_64_bits(ledger_path):
    with Budget(E27, ledger_path, "big", SETUP) as guard:
        guard.charge("train", E26 + 1, step=0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "flopcount", "audit", "--ledger", str(ledger_path), "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["limit"], document["total"], document["remaining"]) == (E27, E26 + 1, E27 - E26 - 1)


def test_preflight_with_a_1e27_budget_sizes_a_plan_exactly(ledger_path):
    plan = flopcount.TrainingWorkload(steps=10**12, batch=4, seq_len=512)
    step = flopcount.training_step_flops(SETUP, 4, 512)
    with Budget(E27, ledger_path, "sized", SETUP) as guard:
        guard.charge("train", E27 - 1000 * step - 5, step=0)
        with pytest.raises(PlanDoesNotFit) as refused:
            guard.preflight(plan)
        assert refused.value.max_steps == 1000 and refused.value.remaining == 1000 * step + 5
        assert guard.preflight(plan.with_steps(1000)).total == 1000 * step
