"""Validation: the seeded subset of windows scored, and the loss sums over them."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.training.validation import validation_indices


def test_validation_scores_a_fixed_seeded_subset_or_everything():
    subset = validation_indices(50, 8, seed=0)
    assert len(subset) == 8 == len(set(subset.tolist())) and subset.tolist() == sorted(subset.tolist())
    np.testing.assert_array_equal(validation_indices(50, 8, seed=0), subset)
    assert not np.array_equal(validation_indices(50, 8, seed=1), subset)
    np.testing.assert_array_equal(validation_indices(5, None, 0), np.arange(5))
    np.testing.assert_array_equal(validation_indices(5, 9, 0), np.arange(5))  # fewer windows than asked: all
    with pytest.raises(ValueError, match="no validation windows"):
        validation_indices(0, None, 0)
