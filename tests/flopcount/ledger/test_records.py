"""The records a ledger returns: what their derived fields say."""

from __future__ import annotations

from flopcount.ledger.records import Charge, ExperimentUsage


def charge(**fields) -> Charge:
    return Charge(**{"id": 1, "experiment": "e", "session_id": 1, "phase": "generation", "step": 0, "tokens": 5,
                     "flops": 100, "is_rerun": False, "payload": None, "created_at": 0.0, **fields})


def test_only_a_reservation_not_yet_settled_is_open():
    assert not charge().is_open_reservation  # an ordinary charge
    assert charge(reserved_flops=100).is_open_reservation
    assert not charge(flops=60, reserved_flops=100, settled_at=1.0).is_open_reservation


def test_an_experiments_flops_are_the_sum_of_its_phases():
    usage = ExperimentUsage(name="e", status="finished", stop_reason=None, model="m", convention="coursework",
                            config={}, started_at=0.0, ended_at=1.0, sessions=1, train_steps=2,
                            flops_by_phase={"train": 10**30, "validation": 7, "generation": 0},
                            tokens_by_phase={"train": 1, "validation": 1, "generation": 0}, rerun_flops=0)
    assert usage.flops == 10**30 + 7 and isinstance(usage.flops, int)
