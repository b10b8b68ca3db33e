"""The ``train`` command: its options map onto the configs, and it folds into a larger CLI."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

import pytest

from experiments.training.cli import EXIT_BUDGET, EXIT_STOPPED, add_train_command, configs, exit_status, main, run_train
from experiments.training.config import TrainResult


def test_the_command_registers_in_a_parent_cli_and_builds_the_configs(tmp_path):
    parser = argparse.ArgumentParser(prog="python -m experiments")
    add_train_command(parser.add_subparsers(dest="command", required=True))
    args_list = ["train", "--run-dir", str(tmp_path / "run"), "--experiment", "grid-r8",
                 "--steps", "10000", "--budget", "1e17", "--ledger", str(tmp_path / "l.sqlite"),
                 "--lr", "5e-5", "--lora-rank", "8", "--lora-targets", "q_proj, v_proj,o_proj",
                 "--eval-windows", "64", "--data", str(tmp_path / "lv.h5"), "--test-ids", "972,3"]
    args = parser.parse_args(args_list)
    assert args.func is run_train
    train_config, data_config, budget = configs(args)
    assert (train_config.experiment, train_config.steps, train_config.learning_rate) == ("grid-r8", 10000, 5e-5)
    assert train_config.lora_rank == 8 and train_config.lora_targets == ("q_proj", "v_proj", "o_proj")
    assert (train_config.batch_size, train_config.context, train_config.eval_windows) == (4, 512, 64)
    assert data_config.path == str((tmp_path / "lv.h5").resolve()) and data_config.test_ids == (972, 3)
    assert budget.limit == 10**17 and isinstance(budget.limit, int) and budget.convention == "coursework"
    assert budget.require_fit  # a run the budget cannot finish is refused unless --allow-partial
    assert not configs(parser.parse_args([*args_list, "--allow-partial"]))[2].require_fit


def test_a_rerun_with_another_config_exits_3_naming_the_field(tiny_model_dir, tmp_path, capsys):
    common = ["--model", str(tiny_model_dir), "--run-dir", str(tmp_path / "run"), "--experiment", "e",
              "--budget", "1e17", "--ledger", str(tmp_path / "l.sqlite"), "--steps", "0", "--context", "32",
              "--simulate-systems", "6", "--no-progress"]
    assert main(common) == 0
    assert "e: finished after step 0" in capsys.readouterr().out
    assert main([*common, "--seed", "1"]) == 3
    assert "train.seed: 0 -> 1" in capsys.readouterr().err


def test_the_exit_status_reads_the_typed_budget_stop_not_the_reason_text(tmp_path):
    def result(status: str, stop_reason: str | None, stopped_by_budget: bool) -> TrainResult:
        return TrainResult(steps_done=3, status=status, stop_reason=stop_reason, final_train_loss=None,
                           last_val_loss=None, last_val_perplexity=None, best_val_loss=None, best_val_step=None,
                           flops_charged=0, checkpoint=None, metrics_path=tmp_path / "m", run_dir=tmp_path,
                           stopped_by_budget=stopped_by_budget)

    assert exit_status(result("finished", None, False)) == 0
    assert exit_status(result("stopped", "experiment cap reached at train step 4", True)) == EXIT_BUDGET == 4
    assert exit_status(result("stopped", "non-finite loss (budget exhausted?)", False)) == EXIT_STOPPED == 5


def test_bad_numbers_are_refused_by_the_parser(tmp_path):
    with pytest.raises(SystemExit):
        main(["--run-dir", str(tmp_path), "--experiment", "e", "--steps", "1", "--budget", "lots",
              "--ledger", str(tmp_path / "l.sqlite")])


def test_the_trainer_options_are_documented_and_reach_the_config(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--mixed-precision {no,bf16,fp16}", "--lr-schedule {constant,linear,cosine}", "--warmup-steps",
                 "--grad-accum-steps", "(default 1)", "(default constant)"):
        assert flag in text
    parser = argparse.ArgumentParser()
    add_train_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", "--run-dir", str(tmp_path), "--experiment", "e", "--steps", "5", "--budget",
                              "1e15", "--ledger", str(tmp_path / "l.sqlite"), "--mixed-precision", "bf16",
                              "--lr-schedule", "linear", "--warmup-steps", "3", "--grad-accum-steps", "4"])
    config = configs(args)[0]
    assert (config.mixed_precision, config.lr_schedule, config.warmup_steps, config.grad_accum_steps) == (
        "bf16", "linear", 3, 4)


def test_a_non_empty_run_dir_is_refused_untouched(tmp_path):
    run_dir, ledger = tmp_path / "mine", tmp_path / "l.sqlite"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    finished = subprocess.run([sys.executable, "-m", "experiments", "train", "--run-dir", str(run_dir),
                               "--experiment", "e", "--budget", "1e17", "--ledger", str(ledger), "--steps", "1",
                               "--simulate-systems", "6", "--no-progress"], capture_output=True, text=True)
    assert finished.returncode == 3, finished.stderr
    assert "is not empty (notes.txt) and holds no run_config.json" in finished.stderr
    assert "Traceback" not in finished.stderr and finished.stderr.count("\n") == 1
    assert os.listdir(run_dir) == ["notes.txt"] and not ledger.exists()


def test_a_run_dir_in_use_exits_6_naming_the_holder(tiny_model_dir, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom experiments.training.run_lock import "
                               "DirectoryLock\nwith DirectoryLock(sys.argv[1]):\n    print('locked', flush=True)\n"
                               "    time.sleep(120)", str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        finished = subprocess.run([sys.executable, "-m", "experiments.training.cli", "--model", str(tiny_model_dir),
                                   "--run-dir", str(tmp_path / "run"), "--experiment", "e", "--budget", "1e17",
                                   "--ledger", str(tmp_path / "l.sqlite"), "--steps", "1", "--context", "32",
                                   "--simulate-systems", "6", "--no-progress"], capture_output=True, text=True)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert finished.returncode == 6, finished.stderr
    assert f"in use by another run (pid {holder.pid}" in finished.stderr and "Traceback" not in finished.stderr


def test_resuming_on_changed_data_is_one_line_not_a_digest_traceback(tiny_model_dir, tmp_path, capsys):
    from lvdata import save_trajectories, simulate

    data = tmp_path / "lv.h5"
    trajectories, times = simulate(6, seed=0)
    save_trajectories(data, trajectories, times)
    common = ["--model", str(tiny_model_dir), "--run-dir", str(tmp_path / "run"), "--experiment", "e",
              "--budget", "1e17", "--ledger", str(tmp_path / "l.sqlite"), "--steps", "2", "--context", "32",
              "--checkpoint-every", "2", "--eval-every", "0", "--data", str(data), "--no-progress"]
    assert main(common) == 0
    capsys.readouterr()
    changed = trajectories.copy()
    changed[:, 10:] *= 1.7  # new values after step 10 (a uniform rescaling would not change the scaled text)
    save_trajectories(data, changed, times, overwrite=True)
    assert main(common) == 3
    err = capsys.readouterr().err
    assert "not the same training windows (the data file or the tokenizer changed since)" in err.splitlines()[-1]
    assert "Traceback" not in err


def test_the_standalone_train_help_shows_the_shared_exit_statuses(capsys):
    from lvdata.exit_status import EXIT_STATUSES

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0 and EXIT_STATUSES in text and "--debug" in text


def _train_args(tiny_model_dir, tmp_path, *extra: str) -> list[str]:
    return ["--model", str(tiny_model_dir), "--run-dir", str(tmp_path / "run"), "--experiment", "e",
            "--budget", "1e17", "--ledger", str(tmp_path / "l.sqlite"), "--steps", "2", "--context", "32",
            "--simulate-systems", "6", "--no-progress", *extra]


def test_report_to_a_tracker_not_installed_exits_3_before_the_run_dir_or_the_ledger(tiny_model_dir, tmp_path,
                                                                                     capsys):
    assert main(_train_args(tiny_model_dir, tmp_path, "--report-to", "mlflow")) == 3
    assert "--report-to mlflow: not installed (pip install mlflow)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "l.sqlite").exists()


def test_a_context_longer_than_the_models_positions_exits_3_before_any_flop(tiny_model_dir, tmp_path, capsys):
    assert main(_train_args(tiny_model_dir, tmp_path, "--context", "100000")) == 3
    assert "max_position_embeddings" in capsys.readouterr().err
    assert not (tmp_path / "l.sqlite").exists()


def test_warmup_longer_than_the_run_is_refused(tiny_model_dir, tmp_path, capsys):
    assert main(_train_args(tiny_model_dir, tmp_path, "--warmup-steps", "10")) == 3
    assert "--warmup-steps 10 is more than --steps 2" in capsys.readouterr().err
