"""The stateless training data order and batch assembly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments.training.batching import Batch, WindowOrder, windows_digest
from lvdata import make_windows


def test_each_epoch_reads_every_window_once_in_a_seeded_order():
    order = WindowOrder(n_windows=10, seed=3)
    first, second = order.stream(0, 10), order.stream(10, 20)
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert not np.array_equal(first, second)  # a new permutation per epoch
    np.testing.assert_array_equal(order.stream(8, 12), np.concatenate([first[8:], second[:2]]))
    np.testing.assert_array_equal(WindowOrder(10, 3).stream(0, 20), order.stream(0, 20))
    assert not np.array_equal(WindowOrder(10, 4).stream(0, 10), first)


def test_ranks_split_the_global_batch_of_a_single_process_run():
    order = WindowOrder(n_windows=37, seed=0)
    for step in (1, 2, 9, 10):
        per_rank = order.step(step, batch_size=2, world_size=3)  # (W, B)
        assert per_rank.shape == (3, 2)
        np.testing.assert_array_equal(per_rank.ravel(), order.step(step, batch_size=6)[0])
    consecutive = np.concatenate([order.step(s, 4)[0] for s in range(1, 5)])
    np.testing.assert_array_equal(consecutive, order.stream(0, 16))


def test_bad_steps_and_orders_are_refused():
    with pytest.raises(ValueError, match="numbered from 1"):
        WindowOrder(5, 0).step(0, 2)
    with pytest.raises(ValueError, match="at least one training window"):
        WindowOrder(0, 0)


def test_batch_rows_are_the_chosen_windows():
    windows = make_windows([np.arange(1, 12), np.arange(20, 25)], context=4, stride=2, pad_id=0)
    batch = Batch.from_windows(windows, np.array([4, 0]))
    assert batch.input_ids.dtype == torch.int64 and batch.input_ids.shape == (2, 4)
    np.testing.assert_array_equal(batch.input_ids.numpy(), windows.input_ids[[4, 0]])
    np.testing.assert_array_equal(batch.labels.numpy(), windows.labels[[4, 0]])
    np.testing.assert_array_equal(batch.attention_mask.numpy(), windows.attention_mask[[4, 0]])


def test_windows_digest_changes_with_any_token():
    windows = make_windows([np.arange(1, 12)], context=4, stride=2, pad_id=0)
    changed = make_windows([np.r_[np.arange(1, 11), 99]], context=4, stride=2, pad_id=0)
    assert windows_digest(windows) == windows_digest(make_windows([np.arange(1, 12)], 4, 2, 0))
    assert windows_digest(windows) != windows_digest(changed)
