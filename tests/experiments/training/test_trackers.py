"""Trackers: every numeric field of a metrics record reaches TensorBoard at its step, with the
run's nested config flattened into its hyperparameters."""

from __future__ import annotations

import pytest

from experiments.training.trackers import _flat, log_record, open_trackers


def test_numeric_fields_are_logged_at_their_step_under_their_kind(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trackers = open_trackers(("tensorboard",), "run", tmp_path / "trackers", {"train": {"lora_rank": 4}})
    log_record(trackers, "train", {"step": 3, "loss": 1.5, "flops_spent_total": 2e12, "note": "x", "nan_seen": True})
    log_record(trackers, "train", {"step": 4, "loss": 1.25})
    for tracker in trackers:
        tracker.finish()
    (events,) = (tmp_path / "trackers" / "run").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    assert sorted(accumulator.Tags()["scalars"]) == ["train/flops_spent_total", "train/loss"]  # no str, bool, step
    assert [(e.step, e.value) for e in accumulator.Scalars("train/loss")] == [(3, 1.5), (4, 1.25)]
    assert accumulator.Scalars("train/flops_spent_total")[0].value == pytest.approx(2e12)


def test_the_config_is_flattened_to_scalar_hyperparameters():
    nested = {"train": {"lora_rank": 4, "targets": ["q_proj", "v_proj"], "alpha": None}, "seed": 0}
    assert _flat(nested) == {"train.lora_rank": 4, "train.targets": "['q_proj', 'v_proj']", "train.alpha": "none",
                             "seed": 0}
