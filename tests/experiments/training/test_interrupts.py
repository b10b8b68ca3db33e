"""Ctrl-C during training: a real SIGINT sets the flag (the loop stops at the step boundary); a
second one raises at once; leaving the block restores the handler."""

from __future__ import annotations

import os
import signal

import pytest

from experiments.training.interrupts import InterruptFlag, RunInterrupted


def test_the_first_sigint_is_a_flag_the_second_raises_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with InterruptFlag() as flag:
        assert not flag.raised
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.raised  # delivered to the main thread before kill returns
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_an_interrupted_run_says_where_it_stopped_and_is_a_keyboard_interrupt():
    stopped = RunInterrupted("grid/r=8: interrupted (Ctrl-C) after step 40; checkpoint run/step-00000040", step=40)
    assert isinstance(stopped, KeyboardInterrupt) and stopped.step == 40 and "step 40" in str(stopped)
