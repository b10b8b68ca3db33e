"""One program on several processes: the accelerator's precision, and rank 0's decisions handed
to every rank (here, a single process: the action runs once, its failure is raised as it was)."""

from __future__ import annotations

import pytest

from experiments.training.distributed import make_accelerator, on_main, resolve_mixed_precision, world


def test_mixed_precision_is_resolved_and_checked():
    assert resolve_mixed_precision("bf16", cpu=True) == "bf16"
    assert resolve_mixed_precision(None, cpu=True) == "no"
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        resolve_mixed_precision("fp16", cpu=True)


def test_a_single_process_runs_the_action_once_and_raises_its_own_error():
    accelerator = make_accelerator(cpu=True)
    calls = []
    assert on_main(accelerator, lambda: calls.append(1) or "go on") == "go on" and calls == [1]
    assert (accelerator.num_processes, accelerator.mixed_precision) == (1, "no")

    def fail():
        raise LookupError("no such ledger row")

    with pytest.raises(LookupError, match="no such ledger row"):
        on_main(accelerator, fail)


def test_without_a_process_group_this_process_is_rank_0_of_1():
    assert world() == (0, 1)
