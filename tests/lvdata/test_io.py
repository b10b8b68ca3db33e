"""HDF5 loading/saving: round trip, no silent overwrite, and a clear error for every bad file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from lvdata import DatasetError, load_trajectories, save_trajectories


def _dataset(n: int = 3, steps: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.uniform(0.1, 5.0, size=(n, steps, 2)).astype(np.float32), np.linspace(0.0, 200.0, steps)


def _write_raw(path, **datasets) -> None:
    """Write arbitrary HDF5 content, bypassing save_trajectories' validation."""
    with h5py.File(path, "w") as handle:
        for key, value in datasets.items():
            handle.create_dataset(key, data=value)


def test_save_then_load_round_trips_exactly_and_keeps_dtype(tmp_path):
    trajectories, time = _dataset()
    path = save_trajectories(tmp_path / "sub" / "data.h5", trajectories, time)
    loaded, loaded_time = load_trajectories(path)
    assert loaded.dtype == np.float32 and loaded_time.dtype == np.float64
    np.testing.assert_array_equal(loaded, trajectories)
    np.testing.assert_array_equal(loaded_time, time)


def test_saved_file_has_the_real_layout(tmp_path):
    trajectories, time = _dataset()
    path = save_trajectories(tmp_path / "data.h5", trajectories, time)
    with h5py.File(path, "r") as handle:
        assert set(handle.keys()) == {"trajectories", "time"}
        assert handle["trajectories"].shape == (3, 5, 2)
        assert handle["time"].shape == (5,)


def test_save_refuses_to_overwrite_and_keeps_the_existing_file(tmp_path):
    trajectories, time = _dataset()
    path = save_trajectories(tmp_path / "data.h5", trajectories, time)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_trajectories(path, trajectories * 2, time)
    np.testing.assert_array_equal(load_trajectories(path)[0], trajectories)
    save_trajectories(path, trajectories * 2, time, overwrite=True)
    np.testing.assert_array_equal(load_trajectories(path)[0], trajectories * 2)


def test_failed_save_leaves_neither_target_nor_temp_file(tmp_path):
    trajectories, time = _dataset()
    trajectories[0, 0, 0] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        save_trajectories(tmp_path / "data.h5", trajectories, time)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path):
    trajectories, time = _dataset()
    path = save_trajectories(tmp_path / "data.h5", trajectories, time)
    with pytest.raises(DatasetError, match="negative"):
        save_trajectories(path, -trajectories, time, overwrite=True)
    np.testing.assert_array_equal(load_trajectories(path)[0], trajectories)
    assert [p.name for p in tmp_path.iterdir()] == ["data.h5"]


def test_integer_trajectories_load_as_float64(tmp_path):
    _write_raw(tmp_path / "ints.h5", trajectories=np.ones((2, 3, 2), dtype=np.int32), time=np.arange(3.0))
    trajectories, _ = load_trajectories(tmp_path / "ints.h5")
    assert trajectories.dtype == np.float64


def test_missing_file(tmp_path):
    path = tmp_path / "absent.h5"
    with pytest.raises(DatasetError, match="file not found") as error:
        load_trajectories(path)
    assert str(path) in str(error.value)


def test_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("prey,predator\n1,2\n")
    with pytest.raises(DatasetError, match="not an HDF5 file") as error:
        load_trajectories(path)
    assert str(path) in str(error.value)


def test_a_directory_is_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="not a regular file"):
        load_trajectories(tmp_path)


BAD_CONTENTS = {
    "missing /trajectories": (dict(time=np.arange(5.0)), r"missing dataset /trajectories"),
    "missing /time": (dict(trajectories=np.ones((2, 5, 2))), r"missing dataset /time"),
    "rank 2": (dict(trajectories=np.ones((5, 2)), time=np.arange(5.0)), r"shape \(5, 2\).*rank 3"),
    "last dimension 3": (
        dict(trajectories=np.ones((2, 5, 3)), time=np.arange(5.0)),
        r"shape \(2, 5, 3\).*last dimension 2",
    ),
    "time rank 2": (dict(trajectories=np.ones((2, 5, 2)), time=np.ones((5, 1))), r"/time has shape \(5, 1\)"),
    "time length": (
        dict(trajectories=np.ones((2, 5, 2)), time=np.arange(4.0)),
        r"time length mismatch: /time has 4 entries but /trajectories has 5 steps",
    ),
    "NaN": (
        dict(trajectories=np.where(np.arange(20).reshape(2, 5, 2) == 13, np.nan, 1.0), time=np.arange(5.0)),
        r"/trajectories contains NaN/inf: 1 non-finite value\(s\), first at \[1, 1, 1\]",
    ),
    "inf in time": (
        dict(trajectories=np.ones((2, 5, 2)), time=np.array([0, 1, 2, np.inf, 4.0])),
        r"/time contains NaN/inf",
    ),
    "negative": (
        dict(trajectories=np.where(np.arange(20).reshape(2, 5, 2) == 4, -0.5, 1.0), time=np.arange(5.0)),
        r"negative populations: 1 value\(s\) < 0 in /trajectories, first at \[0, 2, 0\] = -0.5",
    ),
    "time not increasing": (
        dict(trajectories=np.ones((2, 3, 2)), time=np.array([0.0, 2.0, 1.0])),
        r"/time is not strictly increasing",
    ),
    "empty": (dict(trajectories=np.ones((0, 5, 2)), time=np.arange(5.0)), r"is empty"),
    "strings": (dict(trajectories=np.array([b"a", b"b"]), time=np.arange(2.0)), r"non-numeric dtype"),
}


@pytest.mark.parametrize("case", list(BAD_CONTENTS))
def test_bad_contents_name_the_file_and_the_problem(tmp_path, case):
    datasets, message = BAD_CONTENTS[case]
    path = tmp_path / "bad.h5"
    _write_raw(path, **datasets)
    with pytest.raises(DatasetError, match=message) as error:
        load_trajectories(path)
    assert str(error.value).startswith(f"{path}: ")


def test_a_group_where_a_dataset_belongs(tmp_path):
    path = tmp_path / "group.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("trajectories")
        handle.create_dataset("time", data=np.arange(5.0))
    with pytest.raises(DatasetError, match=r"/trajectories is a Group, not a dataset"):
        load_trajectories(path)
