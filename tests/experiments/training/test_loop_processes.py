"""The training CLI as real processes: SIGKILL then resume, and a 2-process CPU DDP run (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from experiments.training.batching import WindowOrder
from experiments.training.checkpoint import ADAPTER, OPTIMIZER_STATE, checkpoint_path, latest_checkpoint
from experiments.data import DataConfig, prepare_data
from experiments.training.metrics_log import read_metrics
from experiments.models.loading import load_model
from experiments.training.loop import train
from experiments.training.config import BudgetConfig, TrainConfig
from flopcount import CountSetup, Ledger, forward_flops, training_step_flops
from lora import ADAPTER_WEIGHTS

REPO_ROOT = Path(__file__).resolve().parents[3]
STEPS, CONTEXT, SYSTEMS = 8, 64, 6
pytestmark = pytest.mark.slow


def cli_arguments(model_dir: Path, run_dir: Path, ledger: Path, *, steps: int = STEPS, batch_size: int = 2,
                  eval_every: int = 3, eval_windows: int = 2) -> list[str]:
    return ["--model", str(model_dir), "--run-dir", str(run_dir), "--ledger", str(ledger), "--experiment", "lora",
            "--budget", "1e17", "--steps", str(steps), "--batch-size", str(batch_size), "--context", str(CONTEXT),
            "--lr", "1e-3", "--eval-every", str(eval_every), "--eval-windows", str(eval_windows),
            "--checkpoint-every", "3", "--keep-checkpoints", "5", "--simulate-systems", str(SYSTEMS),
            "--no-progress", "--json"]  # fmt: skip


def start(launcher: list[str], arguments: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([*launcher, "-m", "experiments.training.cli", *arguments], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> dict:
    """Wait for a training process; return its JSON result, failing on a non-zero exit."""
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, f"exit {process.returncode}\n{stderr[-3000:]}"
    return json.loads(stdout[stdout.index("{"):])


def kill_after_step(process: subprocess.Popen, metrics: Path, step: int) -> None:
    """SIGKILL ``process`` as soon as its metrics file shows training step ``step``."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and any(r["step"] >= step for r in read_metrics(metrics, kind="train")):
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait(timeout=60)


def adapter_tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / ADAPTER / ADAPTER_WEIGHTS)


def ledger_charges(path: Path):
    with Ledger(path) as ledger:
        ledger.check()
        return ledger.charges(), ledger.snapshot().experiments[0]


def test_sigkill_then_resume_gives_the_uninterrupted_weights_and_charges_only_the_reruns_again(
        tiny_model_dir, tmp_path):
    python = [sys.executable]
    reference = start(python, cli_arguments(tiny_model_dir, tmp_path / "reference", tmp_path / "reference.sqlite"),
                      tmp_path)
    victim_dir, victim_ledger = tmp_path / "victim", tmp_path / "victim.sqlite"
    victim = start(python, cli_arguments(tiny_model_dir, victim_dir, victim_ledger), tmp_path)
    kill_after_step(victim, victim_dir / "metrics.jsonl", 4)
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not checkpoint_path(victim_dir, STEPS).exists()
    resume_step = latest_checkpoint(victim_dir).step
    first_session, _ = ledger_charges(victim_ledger)
    uninterrupted = finish(reference)

    resumed = finish(start(python, cli_arguments(tiny_model_dir, victim_dir, victim_ledger), tmp_path))
    assert (resumed["status"], resumed["steps_done"], resumed["resumed_from"]) == ("finished", STEPS, resume_step)

    # The same weights, bit for bit, and the same optimizer state.
    final, reference_final = Path(resumed["checkpoint"]), Path(uninterrupted["checkpoint"])
    reference_adapter, resumed_adapter = adapter_tensors(reference_final), adapter_tensors(final)
    assert reference_adapter.keys() == resumed_adapter.keys()
    for name, tensor in reference_adapter.items():
        assert torch.equal(resumed_adapter[name], tensor), name
    assert (final / OPTIMIZER_STATE).read_bytes() == (reference_final / OPTIMIZER_STATE).read_bytes()
    assert ([r["loss"] for r in read_metrics(victim_dir / "metrics.jsonl", kind="train")]
            == [r["loss"] for r in read_metrics(tmp_path / "reference" / "metrics.jsonl", kind="train")])

    # The ledger: the uninterrupted total plus exactly the lost work done again, marked as re-runs.
    reference_charges, _ = ledger_charges(tmp_path / "reference.sqlite")
    victim_charges, usage = ledger_charges(victim_ledger)
    lost = [(c.phase, c.step, c.flops) for c in first_session if c.step > resume_step]
    assert lost, "the kill came before any work after the checkpoint"
    reruns = [(c.phase, c.step, c.flops) for c in victim_charges if c.is_rerun]
    assert reruns == lost
    assert sum(c.flops for c in victim_charges) == sum(c.flops for c in reference_charges) + sum(f for *_, f in lost)
    assert usage.rerun_flops == sum(f for *_, f in lost) and usage.sessions == 2 and usage.status == "finished"


def test_two_process_ddp_charges_each_global_batch_once_and_matches_one_process(tiny_model_dir, tmp_path,
                                                                                  qwen_tokenizer):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ledger = tmp_path / "ddp.sqlite"
    arguments = cli_arguments(tiny_model_dir, tmp_path / "ddp", ledger, steps=3, eval_every=2, eval_windows=3)
    result = finish(start(launcher, arguments, tmp_path))
    assert (result["status"], result["steps_done"]) == ("finished", 3)

    charges, usage = ledger_charges(ledger)
    model = load_model(tiny_model_dir)
    data = prepare_data(DataConfig(simulate_systems=SYSTEMS), qwen_tokenizer)
    windows = data.train_windows(CONTEXT)
    global_batches = [WindowOrder(len(windows), 0).step(step, 2, 2).ravel() for step in (1, 2, 3)]
    assert [(c.phase, c.step) for c in charges] == [("train", 1), ("train", 2), ("validation", 2), ("train", 3),
                                                    ("validation", 3)]
    assert usage.sessions == 1 and not any(c.is_rerun for c in charges)
    assert [c.flops for c in charges if c.phase == "train"] == [training_step_flops(CountSetup.of(model.config, lora_rank=4), 4, CONTEXT)] * 3
    assert [c.tokens for c in charges if c.phase == "train"] == [
        int(windows.attention_mask[batch].sum()) for batch in global_batches]
    assert {c.flops for c in charges if c.phase == "validation"} == {
        forward_flops(CountSetup.of(model.config, lora_rank=4), CONTEXT, 3).total}
    metrics = tmp_path / "ddp" / "metrics.jsonl"
    assert len(metrics.read_text().splitlines()) == 3 + 2  # rank 0 alone writes

    # Two ranks of batch 2 compute the gradient of one process with batch 4 (same windows).
    single = train(model, data, TrainConfig("single", steps=3, batch_size=4, context=CONTEXT, learning_rate=1e-3,
                                            eval_every=2, eval_windows=3, checkpoint_every=4, keep_checkpoints=5),
                   tmp_path / "single", BudgetConfig(10**17, tmp_path / "single.sqlite"), progress=False)
    single_losses = [r.get("loss", r.get("val_loss")) for r in read_metrics(single.metrics_path)]
    ddp_losses = [r.get("loss", r.get("val_loss")) for r in read_metrics(metrics)]
    assert ddp_losses == pytest.approx(single_losses, rel=1e-5)
    single_adapter, ddp_adapter = adapter_tensors(single.checkpoint), adapter_tensors(Path(result["checkpoint"]))
    for name, tensor in single_adapter.items():
        torch.testing.assert_close(ddp_adapter[name], tensor, rtol=1e-4, atol=1e-6)


def test_ddp_with_accumulation_is_one_process_of_the_same_global_batch(tiny_model_dir, tmp_path, qwen_tokenizer):
    """2 ranks x batch 2 x 2 micro-batches = 1 process x batch 4 x 2 micro-batches: the same
    windows, the same charges (each micro-batch charged before it runs), the same losses."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    arguments = cli_arguments(tiny_model_dir, tmp_path / "ddp", tmp_path / "ddp.sqlite", steps=2, eval_every=2,
                              eval_windows=2) + ["--grad-accum-steps", "2"]
    result = finish(start(launcher, arguments, tmp_path))
    assert (result["status"], result["steps_done"]) == ("finished", 2)
    single_arguments = cli_arguments(tiny_model_dir, tmp_path / "single", tmp_path / "single.sqlite", steps=2,
                                     batch_size=4, eval_every=2, eval_windows=2) + ["--grad-accum-steps", "2"]
    single = finish(start([sys.executable], single_arguments, tmp_path))

    ddp_charges, _ = ledger_charges(tmp_path / "ddp.sqlite")
    single_charges, _ = ledger_charges(tmp_path / "single.sqlite")
    described = lambda charges: [(c.phase, c.step, c.flops, c.tokens) for c in charges]  # noqa: E731
    assert described(ddp_charges) == described(single_charges)
    assert [(c.phase, c.step) for c in ddp_charges] == [("train", 1), ("train", 1), ("train", 2), ("train", 2),
                                                        ("validation", 2)]
    model = load_model(tiny_model_dir)
    assert {c.flops for c in ddp_charges if c.phase == "train"} == {
        training_step_flops(CountSetup.of(model.config, lora_rank=4), 4, CONTEXT)}
    losses = lambda run_dir: [r.get("loss", r.get("val_loss")) for r in read_metrics(run_dir / "metrics.jsonl")]  # noqa: E731
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-5)
    single_adapter, ddp_adapter = adapter_tensors(Path(single["checkpoint"])), adapter_tensors(Path(result["checkpoint"]))
    for name, tensor in single_adapter.items():
        torch.testing.assert_close(ddp_adapter[name], tensor, rtol=1e-4, atol=1e-6)


def test_ctrl_c_checkpoints_the_last_step_records_the_interruption_and_exits_130(tiny_model_dir, tmp_path):
    run_dir, ledger = tmp_path / "run", tmp_path / "run.sqlite"
    arguments = cli_arguments(tiny_model_dir, run_dir, ledger, steps=40, eval_every=0)
    process = start([sys.executable], arguments, tmp_path)
    deadline = time.monotonic() + 240
    metrics = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and any(r["step"] >= 2 for r in read_metrics(metrics, kind="train")):
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].endswith("run the same command again to resume")
    stopped_at = latest_checkpoint(run_dir).step
    assert 2 <= stopped_at < 40
    assert max(r["step"] for r in read_metrics(metrics, kind="train")) == stopped_at  # no step lost, none half-done
    _, usage = ledger_charges(ledger)
    assert (usage.status, usage.stop_reason) == ("stopped", f"interrupted (Ctrl-C) after step {stopped_at}")
    resumed = finish(start([sys.executable], cli_arguments(tiny_model_dir, run_dir, ledger, steps=40, eval_every=0),
                           tmp_path))
    assert (resumed["status"], resumed["resumed_from"], resumed["steps_done"]) == ("finished", stopped_at, 40)


def test_sigkill_after_a_checkpoint_shows_the_steps_no_checkpoint_kept_as_lost(tiny_model_dir, tmp_path):
    """Checkpoint at step 3, SIGKILL after step 5: the charges for steps 4-5 (and any later one)
    paid for work the resume throws away. The audit shows them as lost right after the kill and
    after the resume (when they equal the re-runs), and the kept steps are the checkpoint's."""
    from flopcount import audit_report

    run_dir, ledger = tmp_path / "run", tmp_path / "run.sqlite"
    arguments = cli_arguments(tiny_model_dir, run_dir, ledger, steps=STEPS, eval_every=0)
    victim = start([sys.executable], arguments, tmp_path)
    kill_after_step(victim, run_dir / "metrics.jsonl", 5)
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    saved = latest_checkpoint(run_dir).step
    charges, _ = ledger_charges(ledger)
    thrown_away = sum(c.flops for c in charges if c.step > saved)
    assert saved == 3 and thrown_away >= 2 * charges[0].flops  # steps 4 and 5 at least
    (row,) = audit_report(ledger).rows
    assert (row.lost, row.useful) == (thrown_away, row.total - thrown_away)

    resumed = finish(start([sys.executable], arguments, tmp_path))
    assert (resumed["status"], resumed["steps_done"], resumed["resumed_from"]) == ("finished", STEPS, saved)
    (row,) = audit_report(ledger).rows
    assert row.lost == thrown_away == row.rerun
    assert row.useful == STEPS * charges[0].flops
