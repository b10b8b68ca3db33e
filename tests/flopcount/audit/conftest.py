"""A ledger of three experiments (one killed and resumed), shared by the audit's tests."""

from __future__ import annotations

import random

import pytest

from flopcount.ledger.ledger import Ledger
from flopcount.ledger.sqlite_file import PHASES

LIMIT = 10**16  # test_table.py asserts against the same limit


@pytest.fixture(scope="module")
def ledger_and_charges(tmp_path_factory):
    """A ledger with three experiments; the second is killed once and resumed from step 30.

    Returns the path and the list of (experiment, phase, step, flops, tokens, is_rerun) the
    test itself charged, from which every expected figure is computed.
    """
    path = tmp_path_factory.mktemp("audit") / "ledger.sqlite"
    rng = random.Random(3)
    charged = []
    with Ledger(path, LIMIT) as ledger:

        def run(name, steps, session_note=""):
            session = ledger.begin_session(name, model="qwen2.5-0.5b", convention="coursework", flop_settings={})
            for step in steps:
                for phase in PHASES if step % 10 == 0 else ("train",):
                    flops, tokens = rng.randrange(10**11, 10**12), rng.randrange(1, 5000)
                    charge = ledger.charge(session, phase, flops, step=step, tokens=tokens)
                    charged.append((name, phase, step, flops, tokens, charge.is_rerun))
            return session

        ledger.end_session(run("baseline", [0]), "finished")
        run("lora r=4 | lr 1e-4", range(0, 45))  # killed: never ended
        ledger.end_session(run("lora r=4 | lr 1e-4", range(30, 60)), "stopped", "budget exhausted at step 60")
        ledger.end_session(run("context-768", range(0, 20)), "failed", "ValueError: bad batch")
    return path, charged
