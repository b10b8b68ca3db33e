"""The append-only per-step metrics file."""

from __future__ import annotations

import pytest

from experiments.training.metrics_log import MetricsLog, read_metrics


def test_the_last_record_per_kind_and_step_wins_across_resumes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        for step in (1, 2, 3):
            log.write("train", step=step, loss=10.0 - step, session=1)
        log.write("validation", step=2, val_loss=9.5, session=1)
    with MetricsLog(path) as log:  # resumed from step 1: steps 2 and 3 run again
        for step in (2, 3, 4):
            log.write("train", step=step, loss=20.0 - step, session=2)
        log.write("validation", step=2, val_loss=8.5, session=2)
    records = read_metrics(path)
    assert [(r["kind"], r["step"], r["session"]) for r in records] == [
        ("train", 1, 1), ("train", 2, 2), ("validation", 2, 2), ("train", 3, 2), ("train", 4, 2)]
    assert [r["val_loss"] for r in read_metrics(path, kind="validation")] == [8.5]
    assert len(path.read_text().splitlines()) == 8  # append-only: nothing was rewritten


def test_a_torn_last_line_is_ignored_then_dropped_by_the_next_writer(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.write("train", step=1, loss=1.0)
    with path.open("a") as handle:
        handle.write('{"kind": "train", "step": 2, "lo')  # a writer killed mid-line
    assert [r["step"] for r in read_metrics(path)] == [1]
    with MetricsLog(path) as log:
        log.write("train", step=2, loss=2.0)
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 1.0), (2, 2.0)]


def test_a_damaged_complete_line_is_an_error_naming_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2 is not a metrics record"):
        read_metrics(path)
