"""The one rule for writing into a directory, and its lock, with real processes and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.training.run_lock import LOCK_FILE, DirectoryBusy, DirectoryLock, claim_directory

HOLDER = """
import sys, time
from experiments.training.run_lock import DirectoryLock
with DirectoryLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def start_holder(directory: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_new_empty_or_own_directory_is_claimed_and_a_strangers_is_refused_untouched(tmp_path):
    assert claim_directory(tmp_path / "new", "marker.json", "run directory") is True
    assert not (tmp_path / "new").exists()  # claiming writes nothing
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "marker.json").write_text("{}")
    assert claim_directory(tmp_path / "own", "marker.json", "run directory") is False
    (tmp_path / "lock-only").mkdir()
    (tmp_path / "lock-only" / LOCK_FILE).write_text("123\n")  # left by a run killed before its marker
    assert claim_directory(tmp_path / "lock-only", "marker.json", "run directory") is True
    stranger = tmp_path / "stranger"
    (stranger / "figures").mkdir(parents=True)
    (stranger / "report.md").write_text("mine")
    with pytest.raises(FileExistsError, match=r"stranger is not empty \(figures, report.md\) and holds no marker"):
        claim_directory(stranger, "marker.json", "run directory")
    assert sorted(p.name for p in stranger.iterdir()) == ["figures", "report.md"]
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(NotADirectoryError, match="a-file is a file, not a directory"):
        claim_directory(tmp_path / "a-file", "marker.json", "run directory")


def test_a_second_process_is_refused_with_the_holders_pid_and_a_killed_holder_frees_the_lock(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(DirectoryBusy, match=rf"in use by another run \(pid {holder.pid},"):
            with DirectoryLock(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with DirectoryLock(tmp_path):  # the kernel dropped the dead holder's lock: nothing is stuck
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_the_lock_is_released_on_exit_and_can_be_taken_again(tmp_path):
    with DirectoryLock(tmp_path):
        pass
    started = time.monotonic()
    with DirectoryLock(tmp_path):
        assert time.monotonic() - started < 1
