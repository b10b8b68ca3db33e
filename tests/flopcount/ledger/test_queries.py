"""The ledger's read side, on a real ledger file read through a plain SQLite connection."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from flopcount.ledger import queries
from flopcount.ledger.exact import register_functions
from flopcount.ledger.ledger import Ledger, LedgerError

BIG = 10**30  # beyond 64 bits: stored as decimal text


def filled_ledger(path):
    with Ledger(path, 10**31) as ledger:
        first = ledger.begin_session("a", model="m", convention="coursework", flop_settings={})
        ledger.charge(first, "train", BIG, step=1, tokens=8)
        ledger.charge(first, "validation", 5, step=1, tokens=4, payload={"loss_flops": 2})
        ledger.begin_session("b", model="m", convention="coursework", flop_settings={})  # never charged
        again = ledger.begin_session("a", model="m", convention="coursework", flop_settings={})
        ledger.charge(again, "train", 7, step=1, tokens=8)  # step 1 again: a re-run
    return path


def read(path, query, *arguments):
    with closing(sqlite3.connect(path)) as db:
        register_functions(db)
        return query(db, *arguments)


def test_the_totals_are_exact_and_per_experiment_in_start_order(tmp_path):
    path = filled_ledger(tmp_path / "l.sqlite")
    assert read(path, queries.running_total) == read(path, queries.summed_charges) == BIG + 12
    assert read(path, queries.spent_by_experiment) == {"a": BIG + 12, "b": 0}


def test_charges_are_decoded_in_commit_order_and_filtered_by_the_condition(tmp_path):
    path = filled_ledger(tmp_path / "l.sqlite")
    charges = read(path, queries.charges_where, "e.name = :name", {"name": "a"})
    assert [(c.phase, c.flops, c.is_rerun, c.payload) for c in charges] == [
        ("train", BIG, False, None), ("validation", 5, False, {"loss_flops": 2}), ("train", 7, True, None)]
    assert read(path, queries.charges_where, "c.phase = :phase", {"phase": "generation"}) == []


def test_usage_sums_each_phase_and_counts_reruns_sessions_and_loss_flops(tmp_path):
    path = filled_ledger(tmp_path / "l.sqlite")
    a, b = read(path, queries.experiment_usage)
    assert (a.name, a.sessions, a.train_steps, a.train_charges) == ("a", 2, 1, 1)
    assert a.flops_by_phase == {"train": BIG + 7, "validation": 5, "generation": 0}
    assert a.tokens_by_phase == {"train": 16, "validation": 4, "generation": 0}
    assert (a.rerun_flops, a.loss_flops, a.unsettled_reservations) == (7, 2, 0)
    assert (b.name, b.flops, b.sessions, b.train_steps) == ("b", 0, 1, 0)


def test_a_running_total_that_is_not_the_sum_is_refused_naming_both(tmp_path):
    queries.raise_unless_consistent(tmp_path, 5, 5)
    with pytest.raises(LedgerError, match="running total 6 FLOPs, but its charges sum to 5 FLOPs"):
        queries.raise_unless_consistent(tmp_path, 6, 5)
