"""A guard's session never stays "running" once its process is gone: a crash ends it failed,
SIGTERM stopped (real subprocesses, each ending itself: no timing involved)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from flopcount import Ledger

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import os, signal, sys, torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from flopcount import CountSetup
from flopcount.integrations import ForwardGuard

model = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=1, intermediate_size=48, vocab_size=64))
guard = ForwardGuard(10**12, sys.argv[1], "run", CountSetup.of(model.config)).attach(model)
model(torch.zeros(1, 8, dtype=torch.long))
{ending}
"""


def run_ending(tmp_path: Path, ending: str) -> tuple[subprocess.CompletedProcess, object]:
    ledger = tmp_path / "ledger.sqlite"
    script = textwrap.dedent(SCRIPT).format(ending=ending)
    done = subprocess.run([sys.executable, "-c", script, str(ledger)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    with Ledger(ledger) as opened:
        (usage,) = opened.snapshot().experiments
        assert len(opened.charges()) == 1
    return done, usage


def test_a_crash_after_a_charge_ends_the_session_failed_with_the_error(tmp_path):
    done, usage = run_ending(tmp_path, "raise RuntimeError('out of memory')")
    assert done.returncode == 1, done.stderr
    assert usage.status == "failed" and "RuntimeError: out of memory" in usage.stop_reason


def test_sigterm_ends_the_session_stopped_and_still_terminates_the_process(tmp_path):
    done, usage = run_ending(tmp_path, "os.kill(os.getpid(), signal.SIGTERM)\nprint('survived')")
    assert done.returncode == -signal.SIGTERM and "survived" not in done.stdout, done.stderr
    assert usage.status == "stopped" and usage.stop_reason == "terminated by SIGTERM"


def test_a_script_that_ends_without_closing_the_guard_finishes_its_session(tmp_path):
    done, usage = run_ending(tmp_path, "")
    assert done.returncode == 0, done.stderr
    assert usage.status == "finished"


CHAINED = """
import os, signal, sys, torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from flopcount import CountSetup
from flopcount.integrations import ForwardGuard

model = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=1, intermediate_size=48, vocab_size=64))
signal.signal(signal.SIGTERM, lambda signum, frame: print("the first handler ran", flush=True))
guard = ForwardGuard(10**12, sys.argv[1], "run", CountSetup.of(model.config)).attach(model)
model(torch.zeros(1, 8, dtype=torch.long))  # the session opens: the guard's handler is installed
guards_handler = signal.getsignal(signal.SIGTERM)
signal.signal(signal.SIGTERM, lambda signum, frame: guards_handler(signum, frame))  # a later handler chains to it
guard.close()
os.kill(os.getpid(), signal.SIGTERM)
print("survived", flush=True)
"""


def test_sigterm_after_the_guard_closed_reaches_the_handler_installed_before_it(tmp_path):
    """A handler installed after the guard's keeps the guard's in its chain: once the guard has
    closed, a SIGTERM still reaches the handler that was there before the guard (here one that
    does not end the process), not the default action."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(CHAINED), str(tmp_path / "ledger.sqlite")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the first handler ran", "survived"]
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        (usage,) = ledger.snapshot().experiments
    assert usage.status == "finished"


REPLICA_WRITING = """
import os, signal, sqlite3, sys, threading, torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from flopcount import CountSetup
from flopcount.integrations import ForwardGuard

model = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=1, intermediate_size=48, vocab_size=64))
guard = ForwardGuard(10**12, sys.argv[1], "run", CountSetup.of(model.config)).attach(model)
model(torch.zeros(1, 8, dtype=torch.long))  # the session opens: the guard's handler is installed
blocker = sqlite3.connect(sys.argv[1], check_same_thread=False, isolation_level=None)
blocker.execute("BEGIN IMMEDIATE")  # the replica's charge waits for this write lock
entered = threading.Event()
guards_handler = signal.getsignal(signal.SIGTERM)
signal.signal(signal.SIGTERM, lambda signum, frame: (entered.set(), guards_handler(signum, frame)))
def release():
    entered.wait()
    blocker.execute("ROLLBACK")
threading.Thread(target=release).start()
def replica():
    with torch.no_grad():
        model(torch.zeros(1, 8, dtype=torch.long))
worker = threading.Thread(target=replica)
worker.start()
while guard.busy is None:  # the replica is writing its charge
    worker.join(0.001)
os.kill(os.getpid(), signal.SIGTERM)
worker.join()
print("survived", flush=True)
"""


def test_sigterm_while_a_replica_thread_writes_a_charge_stops_the_session_and_ends_the_process(tmp_path):
    """A SIGTERM that reaches the main thread while an ``nn.DataParallel`` replica thread writes a
    charge waits for that charge, closes the session and ends the process; it is not handed to
    the replica thread (which cannot restore or re-raise a signal) and swallowed."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(REPLICA_WRITING), str(tmp_path / "ledger.sqlite")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == -signal.SIGTERM and "survived" not in done.stdout, done.stderr
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        (usage,) = ledger.snapshot().experiments
        assert len(ledger.charges()) == 2
    assert usage.status == "stopped" and usage.stop_reason == "terminated by SIGTERM"
