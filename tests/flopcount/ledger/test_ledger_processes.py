"""Real processes on one ledger: SIGKILL mid-loop then resume, and concurrent writers.

Each child runs ``budget_worker.py`` (a Budget-guarded charging loop) and prints a line per
committed charge, so the parent knows what a child believes it committed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from flopcount import CountSetup
import flopcount
from flopcount.audit.table import audit_report
from flopcount.ledger.ledger import Ledger

WORKER = Path(__file__).with_name("budget_worker.py")
REPO_ROOT = Path(__file__).resolve().parents[3]
STEP = flopcount.training_step_flops(CountSetup.of("qwen2.5-0.5b", lora_rank=4), 2, 64)  # the worker's step, FLOPs
BIG_LIMIT = 10**17


def start_worker(ledger: Path, experiment: str, *args: object, limit: int = BIG_LIMIT) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(WORKER), "--ledger", str(ledger), "--limit", str(limit),
               "--experiment", experiment, *map(str, args)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ledger.parent)


def finish(worker: subprocess.Popen) -> list[str]:
    """Wait for a worker; return its output lines, failing on a non-zero exit."""
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, f"worker exited with {worker.returncode}: {output[-2000:]}"
    return output.splitlines()


def committed(lines: list[str]) -> list[tuple[str, int]]:
    return [(line.split()[1], int(line.split()[2])) for line in lines if line.startswith("charged ")]


def charge_keys(ledger: Path, session_id: int | None = None) -> list[tuple[str, int, int]]:
    """(phase, step, flops) of each charge in commit order, optionally of one session."""
    with Ledger(ledger) as opened:
        charges = opened.charges()
    return [(c.phase, c.step, c.flops) for c in charges if session_id in (None, c.session_id)]


def test_sigkill_mid_loop_then_resume_charges_exactly_the_reruns_again(tmp_path):
    crashed, reference = tmp_path / "crashed.sqlite", tmp_path / "reference.sqlite"
    loop = ("--stop-step", 120, "--validate-every", 10, "--work-seconds", 0.004)
    uninterrupted = start_worker(reference, "lora", *loop)
    victim = start_worker(crashed, "lora", *loop)
    seen = []
    for line in victim.stdout:  # kill right after the child reports step 25 committed
        seen.append(line)
        if line.startswith("charged train 25"):
            os.kill(victim.pid, signal.SIGKILL)
            break
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    finish(uninterrupted)

    # Consistent after the kill: what was committed is a prefix of the uninterrupted run.
    with Ledger(crashed) as ledger:
        ledger.check()
    full_run = charge_keys(reference)
    first_session = charge_keys(crashed)
    assert len(first_session) >= 26 + 2  # steps 0..25 and validations at 10 and 20 at least
    assert first_session == full_run[: len(first_session)]
    assert committed(seen) == [(phase, step) for phase, step, _ in first_session[: len(committed(seen))]]

    # Resume from the checkpoint saved at step 20: steps 20.. run (and are charged) again.
    resumed = finish(start_worker(crashed, "lora", *loop[:2], "--first-step", 20, *loop[2:]))
    assert resumed[-1] == "done"
    second_session = charge_keys(crashed, session_id=2)
    redone = {(phase, step) for phase, step, _ in second_session}
    rerun_flops = sum(flops for phase, step, flops in first_session if (phase, step) in redone)
    assert rerun_flops >= 6 * STEP  # steps 20..25 at least were lost and redone
    reference_total = sum(flops for *_, flops in full_run)

    report = audit_report(crashed)
    (row,) = report.rows
    assert report.total == reference_total + rerun_flops
    assert (row.useful, row.rerun, row.sessions, row.status) == (reference_total, rerun_flops, 2, "finished")
    with Ledger(crashed) as ledger:
        flagged = [(c.phase, c.step) for c in ledger.charges() if c.is_rerun]
        assert sorted(flagged) == sorted((phase, step) for phase, step, _ in first_session if (phase, step) in redone)
        assert all(c.session_id == 2 for c in ledger.charges() if c.is_rerun)


def test_kills_at_full_charging_speed_never_leave_a_half_written_charge(tmp_path):
    ledger_path = tmp_path / "ledger.sqlite"
    for session_id, kill_after in enumerate((3, 40, 150), start=1):
        victim = start_worker(ledger_path, "tight", "--stop-step", 10**6)
        reported = 0
        for line in victim.stdout:
            reported += line.startswith("charged ")
            if reported == kill_after:
                os.kill(victim.pid, signal.SIGKILL)
                break
        victim.wait(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        with Ledger(ledger_path) as ledger:
            ledger.check()  # integrity, and running total == sum of charges
        steps = [step for _, step, _ in charge_keys(ledger_path, session_id)]
        assert steps == list(range(len(steps))) and len(steps) >= kill_after


def run_concurrently(ledger: Path, workers: int, steps: int, limit: int, *args: object) -> list[list[str]]:
    """Start ``workers`` children on a ledger that does not exist yet (or an old one to
    upgrade); release them at once. ``args`` go to every worker."""
    go = ledger.with_name("go")
    children = [
        start_worker(ledger, f"sweep-{index}", "--stop-step", steps, "--go-file", go, *args, limit=limit)
        for index in range(workers)
    ]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    return [finish(child) for child in children]


def test_four_processes_charging_at_once_lose_no_charge(tmp_path):
    ledger_path = tmp_path / "sweep.sqlite"
    outputs = run_concurrently(ledger_path, workers=4, steps=500, limit=BIG_LIMIT)
    assert [len(committed(lines)) for lines in outputs] == [500] * 4
    with Ledger(ledger_path) as ledger:
        ledger.check()
        assert ledger.spent == 4 * 500 * STEP
        assert ledger.spent_by_experiment() == {f"sweep-{index}": 500 * STEP for index in range(4)}
        charges = ledger.charges()
    for index in range(4):
        steps = [c.step for c in charges if c.experiment == f"sweep-{index}"]
        assert steps == list(range(500))
    switches = sum(a.experiment != b.experiment for a, b in zip(charges, charges[1:]))
    assert switches >= 10, "the workers did not actually run at the same time"


def test_concurrent_processes_never_spend_past_the_limit(tmp_path):
    ledger_path = tmp_path / "sweep.sqlite"
    limit = 1234 * STEP + STEP // 2
    outputs = run_concurrently(ledger_path, workers=4, steps=500, limit=limit)
    reported = sum(len(committed(lines)) for lines in outputs)
    with Ledger(ledger_path) as ledger:
        ledger.check()
        assert ledger.spent == 1234 * STEP <= limit
        assert len(ledger.charges()) == reported == 1234
    assert any(line.startswith("refused ") for lines in outputs for line in lines)


def test_concurrent_charges_of_1e24_flops_stay_exact_and_never_pass_a_1e27_limit(tmp_path):
    ledger_path = tmp_path / "big.sqlite"
    charge = 3 * 10**24 + 1  # exact ints only: 1 FLOP would vanish in a float sum at this size
    limit = 250 * charge + charge // 2
    outputs = run_concurrently(ledger_path, 3, 120, limit, "--charge-flops", charge)
    reported = sum(len(committed(lines)) for lines in outputs)
    assert any(line.startswith("refused ") for lines in outputs for line in lines)
    with Ledger(ledger_path) as ledger:
        ledger.check()
        assert reported == len(ledger.charges()) == 250
        assert ledger.spent == 250 * charge and ledger.remaining == charge // 2
        assert sum(ledger.spent_by_experiment().values()) == 250 * charge
    report = audit_report(ledger_path)
    assert report.total == 250 * charge and report.to_dict()["remaining"] == charge // 2


def test_processes_opening_an_old_ledger_at_once_upgrade_it_once_and_lose_no_charge(old_ledger):
    ledger_path = old_ledger(1, charges=old_ledger.charges[1:])  # room left: about 2**62 FLOPs
    old_total = sum(c[5] for c in old_ledger.charges[1:])
    outputs = run_concurrently(ledger_path, 3, 100, old_ledger.top, "--charge-flops", 10**9 + 7)
    assert [len(committed(lines)) for lines in outputs] == [100] * 3
    with Ledger(ledger_path) as ledger:
        ledger.check()
        assert ledger.spent == old_total + 300 * (10**9 + 7)
        old = [c for c in ledger.charges() if c.id <= len(old_ledger.charges) - 1]
        assert [c.flops for c in old] == [c[5] for c in old_ledger.charges[1:]]
