"""``python -m experiments pretrain-base``: builds, prints its FLOPs, reuses; ``--base-dir`` moves the cache."""

from __future__ import annotations

import json
import os

from experiments.cli import build_parser, main
from experiments.basemodel.cache import ENV_VAR
from experiments.basemodel.pretrain import read_record


def test_pretrain_base_builds_prints_its_flops_and_then_reuses(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    out = tmp_path / "base"
    arguments = ["pretrain-base", "--recipe", "test", "--steps", "2", "--out", str(out), "--no-progress"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    record = read_record(out)
    assert record["status"] == "complete" and record["steps"] == 2
    assert str(out) in printed and f"ledger {record['flops']['ledger']['total']:.6g}" in printed
    assert f"analytic count {record['flops']['analytic']['total']:.6g}" in printed
    assert main([*arguments, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == record["created"]  # reused, not rebuilt


def test_steps_or_seed_without_out_are_refused_and_the_cached_base_kept(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "cached"))
    (tmp_path / "cached").mkdir()
    (tmp_path / "cached" / "NOTES.txt").write_text("mine")
    for flags in (["--steps", "1"], ["--seed", "3"], ["--steps", "1", "--seed", "3"]):
        assert main(["pretrain-base", *flags, "--no-progress"]) == 3
        message = capsys.readouterr().err.strip()
        assert "make a base of another recipe" in message and "--out" in message and "\n" not in message
    assert [path.name for path in (tmp_path / "cached").iterdir()] == ["NOTES.txt"]


def test_base_dir_sets_the_cache_for_the_plan_commands(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "before"))  # restored after the test: main() sets it
    args = build_parser().parse_args(["run", "--plan", "demo", "--dry-run", "--base-dir", str(tmp_path / "b")])
    assert args.base_dir == tmp_path / "b"
    assert main(["run", "--plan", "demo", "--dry-run", "--base-dir", str(tmp_path / "b")]) == 0
    assert os.environ[ENV_VAR] == str((tmp_path / "b").resolve()) and not (tmp_path / "b").exists()
