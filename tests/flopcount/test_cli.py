"""``python -m flopcount`` run as a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flopcount import CountSetup, COMPONENTS, TrainingWorkload, estimate_run, forward_flops, generation_flops, steps_that_fit, \
    training_step_flops

from lvdata.exit_status import EXIT_BAD_INPUT, EXIT_STATUSES, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]


def flopcount_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flopcount", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_count_forward_json():
    result = flopcount_cli("count", "--model", "qwen2.5-0.5b", "--seq-len", "128", "--batch", "2",
                           "--lora-rank", "8", "--convention", "exact", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    expected = forward_flops(CountSetup.of("qwen2.5-0.5b", "exact", lora_rank=8), 128, 2)
    assert data["total"] == expected.total
    assert data["by_component"] == expected.by_component() and list(data["by_component"]) == list(COMPONENTS)


def test_count_train_and_generate_modes_match_the_api(qwen_assets):
    train = flopcount_cli("count", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--seq-len", "512", "--batch", "4",
                          "--lora-rank", "4", "--mode", "train", "--json")
    assert train.returncode == 0, train.stderr
    assert json.loads(train.stdout)["total"] == training_step_flops(CountSetup.of("qwen2.5-0.5b", lora_rank=4), 4, 512)
    generate = flopcount_cli("count", "--model", str(qwen_assets / "config.json"), "--seq-len", "300",
                             "--mode", "generate", "--new-tokens", "50", "--samples", "3",
                             "--lora-targets", "q_proj,k_proj,v_proj", "--lora-rank", "2", "--json")
    assert generate.returncode == 0, generate.stderr
    data = json.loads(generate.stdout)
    expected = generation_flops(CountSetup.of("qwen2.5-0.5b", lora_rank=2, lora_targets=("q_proj", "k_proj", "v_proj")), 300, 50, samples=3)
    assert data["total"] == expected.total and data["by_component"] == expected.by_component()


def test_count_prints_a_readable_table():
    result = flopcount_cli("count", "--model", "qwen2.5-1.5b", "--seq-len", "64")
    assert result.returncode == 0, result.stderr
    total = forward_flops("qwen2.5-1.5b", 64).total
    assert f"total: {total:,} FLOPs" in result.stdout
    for name in ("lm_head", "mlp_down", "softmax", "primitive"):
        assert name in result.stdout


def test_plan_json_matches_the_api():
    result = flopcount_cli("plan", "--model", "qwen2.5-0.5b", "--steps", "600", "--batch", "4", "--seq-len", "512",
                           "--lora-rank", "8", "--eval-every", "100", "--eval-windows", "5", "--gen-series", "2",
                           "--gen-prompt-len", "300", "--gen-new-tokens", "100", "--budget", "1e17", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    plan = TrainingWorkload(steps=600, batch=4, seq_len=512, eval_every=100, eval_windows=5, gen_series=2,
                            gen_prompt_len=300, gen_new_tokens=100)
    setup = CountSetup.of("qwen2.5-0.5b", lora_rank=8)
    assert data["total"] == estimate_run(setup, plan).total
    assert data["steps_that_fit"] == steps_that_fit(setup, plan, 10**17) == 600
    assert data["budget"] == 10**17


@pytest.mark.parametrize("args, message", [
    (["count", "--model", "qwen2.5-0.5b", "--seq-len", "0"], "seq_len must be >= 1"),
    (["count", "--model", "qwen2.5-0.5b", "--seq-len", "4", "--mode", "generate"], "needs --new-tokens"),
    (["count", "--model", "qwen2.5-9b", "--seq-len", "4"], "neither a preset"),
    (["count", "--model", "qwen2.5-0.5b", "--seq-len", "4", "--lora-rank", "2", "--lora-targets", "qkv"],
     "unknown LoRA target"),
])
def test_bad_input_exits_3_with_the_problem_named_on_one_line(args, message):
    result = flopcount_cli(*args)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_a_usage_error_exits_2_and_debug_after_the_subcommand_shows_the_traceback():
    assert flopcount_cli("count", "--no-such-flag").returncode == EXIT_USAGE
    budget = flopcount_cli("plan", "--model", "qwen2.5-0.5b", "--steps", "1", "--batch", "1", "--seq-len", "8",
                           "--budget", "1.5")  # an argument argparse's type check refuses: a usage error
    assert budget.returncode == EXIT_USAGE and "whole number" in budget.stderr
    debug = flopcount_cli("count", "--model", "qwen2.5-0.5b", "--seq-len", "0", "--debug")
    assert debug.returncode == 3 and "Traceback" in debug.stderr and "seq_len must be >= 1" in debug.stderr
    before = flopcount_cli("--debug", "count", "--model", "qwen2.5-0.5b", "--seq-len", "0")
    assert "Traceback" in before.stderr


def test_version_and_every_help_shows_the_shared_exit_statuses():
    version = flopcount_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("python -m flopcount ")
    for command in ([], ["count"], ["plan"], ["audit"]):
        shown = flopcount_cli(*command, "--help")
        assert shown.returncode == 0 and EXIT_STATUSES in shown.stdout, command


def test_unknown_hub_id_fails_clearly_offline():
    result = flopcount_cli("count", "--model", "no-such-owner/no-such-model", "--seq-len", "4",
                           env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == EXIT_BAD_INPUT
    assert "could not load the config of hub model 'no-such-owner/no-such-model'" in result.stderr


def test_lora_targets_without_a_rank_are_refused_not_ignored(capsys):
    from flopcount.cli import main

    assert main(["count", "--model", "qwen2.5-0.5b", "--seq-len", "8", "--lora-targets", "q_proj"]) == 3
    assert "--lora-targets q_proj needs --lora-rank" in capsys.readouterr().err


def test_a_reader_that_closes_the_pipe_early_is_not_an_error():
    read, write = os.pipe()
    os.close(read)  # like `| head` that has stopped reading: every write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "flopcount", "count", "--model", "qwen2.5-0.5b", "--seq-len",
                               "8"], cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 0 and done.stderr == ""
