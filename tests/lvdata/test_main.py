"""``python -m lvdata summary``: the real data by default, a plot never overwritten, clear errors."""

from __future__ import annotations

import subprocess
import sys

from lvdata.defaults import PROJECT_ROOT
from lvdata.exit_status import EXIT_BAD_INPUT, EXIT_STATUSES


def test_summary_cli_defaults_to_the_real_data_and_prints_token_lengths(real_data_path, qwen_assets, tmp_path):
    plot = tmp_path / "lengths.png"
    command = [sys.executable, "-m", "lvdata", "summary", "--plot", str(plot)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["dataset", str(real_data_path)]
    assert "1000 trajectories x 100 steps" in result.stdout
    assert "train 800, validation 100, test 100" in result.stdout
    token_table = result.stdout.split("tokens per trajectory")[1].splitlines()
    assert token_table[1].split() == ["rule", "min", "p5", "median", "p95", "max"]
    for rule in ("per_trajectory", "global"):
        row = next(line for line in token_table if line.startswith(rule)).split()
        min_, p5, median, p95, max_ = map(float, row[1:])
        assert 999 <= min_ <= p5 <= median <= p95 <= max_
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_cli_reports_a_bad_file_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    command = [sys.executable, "-m", "lvdata", "summary", "--data", str(bad)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr == f"python -m lvdata summary: error: {bad}: not an HDF5 file\n"
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert debug.returncode == EXIT_BAD_INPUT and "Traceback" in debug.stderr  # --debug after the subcommand


def test_every_help_shows_the_shared_exit_statuses():
    for command in ([], ["summary"]):
        shown = subprocess.run([sys.executable, "-m", "lvdata", *command, "--help"], capture_output=True, text=True,
                               cwd=PROJECT_ROOT, timeout=120)
        assert shown.returncode == 0 and EXIT_STATUSES in shown.stdout, command


def test_summary_cli_never_overwrites_a_plot_without_force(tmp_path):
    plot = tmp_path / "mine.png"
    plot.write_bytes(b"the user's own figure")
    command = [sys.executable, "-m", "lvdata", "summary", "--data", str(tmp_path / "missing.h5"), "--plot", str(plot)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT and "not overwriting it (pass --force" in result.stderr
    assert plot.read_bytes() == b"the user's own figure"
