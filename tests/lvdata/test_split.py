"""Train / validation / test split by trajectory id."""

from __future__ import annotations

import numpy as np
import pytest

from lvdata import DataSplit, split_indices


def test_split_partitions_all_ids_with_the_requested_sizes():
    split = split_indices(1000, seed=0)
    assert (len(split.train), len(split.validation), len(split.test)) == (800, 100, 100)
    everything = np.concatenate([split.train, split.validation, split.test])
    np.testing.assert_array_equal(np.sort(everything), np.arange(1000))
    for ids in (split.train, split.validation, split.test):
        assert ids.dtype == np.int64 and np.all(np.diff(ids) > 0)


def test_split_is_deterministic_for_a_seed_and_varies_with_it():
    assert split_indices(200, seed=7).as_dict() == split_indices(200, seed=7).as_dict()
    assert split_indices(200, seed=7).as_dict()["test"] != split_indices(200, seed=8).as_dict()["test"]


def test_fixed_test_ids_are_honoured_and_kept_out_of_the_other_splits():
    split = split_indices(1000, seed=0, test_ids=[972, 3, 500])
    np.testing.assert_array_equal(split.test, [3, 500, 972])
    assert split.which(972) == "test"
    assert 972 not in split.train and 972 not in split.validation
    assert len(split.validation) == 100 and len(split.train) == 897


def test_every_id_is_addressable():
    split = split_indices(1000, seed=1)
    names = {split.which(i) for i in range(1000)}
    assert names == {"train", "validation", "test"}
    with pytest.raises(KeyError, match="trajectory 1000 is in no split"):
        split.which(1000)


def test_split_arrays_are_read_only():
    split = split_indices(10, seed=0)
    with pytest.raises(ValueError):
        split.train[0] = 99


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n=0), "n must be >= 1"),
        (dict(n=10, fractions=(0.5, 0.5, 0.5)), "summing to 1"),
        (dict(n=10, fractions=(1.2, -0.1, -0.1)), "non-negative"),
        (dict(n=10, test_ids=[10]), r"out of range \[0, 10\): \[10\]"),
        (dict(n=10, test_ids=[-1]), r"out of range"),
        (dict(n=10, test_ids=[2, 2]), r"test_ids repeated: \[2\]"),
        (dict(n=10, test_ids=[1.5]), "integers"),
        (dict(n=2, fractions=(0.0, 0.5, 0.5)), "no trajectories left for training"),
    ],
)
def test_bad_arguments_are_rejected_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_indices(**kwargs)


def test_datasplit_rejects_overlapping_ids():
    with pytest.raises(ValueError, match="appears twice"):
        DataSplit(train=np.array([0, 1]), validation=np.array([1]), test=np.array([2]))
