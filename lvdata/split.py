"""Deterministic train / validation / test split of trajectory ids.

Trajectory ids are 0-based row indices into ``/trajectories`` of the dataset file, so
trajectory 972 of the reference analysis is ``trajectories[972]`` and can be pinned to the
test split with ``split_indices(1000, test_ids=[972])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class DataSplit:
    """Sorted int64 arrays of trajectory ids; the three sets are disjoint."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        for name in SPLIT_NAMES:
            ids = np.sort(np.asarray(getattr(self, name), dtype=np.int64))
            ids.setflags(write=False)
            object.__setattr__(self, name, ids)
        everything = np.concatenate([self.train, self.validation, self.test])
        if np.unique(everything).size != everything.size:
            raise ValueError("DataSplit: a trajectory id appears twice (within or across splits)")

    def which(self, trajectory_id: int) -> str:
        """Name of the split holding ``trajectory_id`` (``"train"``, ``"validation"`` or ``"test"``)."""
        for name in SPLIT_NAMES:
            if trajectory_id in getattr(self, name):
                return name
        raise KeyError(f"trajectory {trajectory_id} is in no split")

    def as_dict(self) -> dict[str, list[int]]:
        """Plain lists, for JSON run records."""
        return {name: getattr(self, name).tolist() for name in SPLIT_NAMES}


def split_indices(
    n: int,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    test_ids: Sequence[int] | np.ndarray | None = None,
) -> DataSplit:
    """Split ids ``0..n-1`` into train / validation / test, deterministically for ``seed``.

    Sizes: validation gets ``round(fractions[1] * n)`` ids and test ``round(fractions[2] * n)``;
    train gets the rest. If ``test_ids`` is given, those ids form the test split exactly
    (``fractions[2]`` is then unused) and are drawn from neither other split.

    Raises:
        ValueError: bad ``n`` or ``fractions``, test ids out of range or repeated, or an
            empty training split.
    """
    if n < 1:
        raise ValueError(f"split_indices: n must be >= 1, got {n}")
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"split_indices: fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    rng = np.random.default_rng(seed)
    n_validation = round(fractions[1] * n)
    if test_ids is None:
        order = rng.permutation(n)
        n_test = round(fractions[2] * n)
        test, rest = order[:n_test], order[n_test:]
    else:
        test = _checked_ids(test_ids, n)
        rest = rng.permutation(np.setdiff1d(np.arange(n), test))
    validation, train = rest[:n_validation], rest[n_validation:]
    if train.size == 0:
        raise ValueError(f"split_indices: no trajectories left for training (n={n}, fractions={fractions})")
    return DataSplit(train=train, validation=validation, test=test)


def _checked_ids(ids: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"test_ids must be a 1-D sequence of integers, got {ids!r}")
    array = array.astype(np.int64)
    out_of_range = array[(array < 0) | (array >= n)]
    if out_of_range.size:
        raise ValueError(f"test_ids out of range [0, {n}): {out_of_range.tolist()}")
    values, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"test_ids repeated: {values[counts > 1].tolist()}")
    return array
