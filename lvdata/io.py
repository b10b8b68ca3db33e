"""Read and write predator-prey datasets in the HDF5 layout of the real data.

Layout (the one of ``../shared/data/lotka_volterra_data.h5``)::

    /trajectories   float (N, T, 2)   [..., 0] = prey, [..., 1] = predator, both >= 0
    /time           float (T,)        sample times, strictly increasing

Loading reads both datasets completely, validates them, and only then returns: a bad file
raises :class:`DatasetError` naming the file and the problem, never a half-loaded result.
Saving writes to a temporary file in the target directory and renames it into place, so a
crash never leaves a half-written file, and it refuses to replace an existing file unless
``overwrite=True``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

TRAJECTORIES_KEY = "trajectories"
TIME_KEY = "time"
N_SPECIES = 2  # prey, predator


class DatasetError(ValueError):
    """A dataset file or array does not have the expected layout or contents."""


def load_trajectories(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load ``(trajectories (N, T, 2), time (T,))`` from an HDF5 file.

    ``trajectories`` keeps its stored float dtype (float32 for the real data; integer
    data is converted to float64); ``time`` is float64.

    Raises:
        DatasetError: the file is missing, not HDF5, lacks ``/trajectories`` or ``/time``,
            or holds arrays with the wrong rank, last dimension, length, non-finite
            values or negative populations. The message starts with the file path.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    if not path.is_file():
        raise DatasetError(f"{path}: not a regular file")
    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as handle:
            trajectories = _read_dataset(handle, TRAJECTORIES_KEY, path)
            time = _read_dataset(handle, TIME_KEY, path)
    except OSError as error:  # h5py: a truncated or damaged file (its message names no file)
        raise DatasetError(f"{path}: unreadable HDF5 file ({error})") from None
    return validate_trajectories(trajectories, time, where=str(path))


def save_trajectories(
    path: str | Path,
    trajectories: np.ndarray,
    time: np.ndarray,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``trajectories (N, T, 2)`` and ``time (T,)`` in the layout :func:`load_trajectories` reads.

    The arrays are validated first (same rules as loading). The file is written to a
    temporary name in the same directory and atomically renamed, so ``path`` is either
    untouched or complete. Missing parent directories are created.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        DatasetError: the arrays are not a valid dataset.
    """
    path = Path(path)
    trajectories, time = validate_trajectories(
        np.asarray(trajectories), np.asarray(time), where=f"{path} (arrays to save)"
    )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: file exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    try:
        with h5py.File(temp_name, "w") as handle:
            handle.create_dataset(TRAJECTORIES_KEY, data=trajectories)
            handle.create_dataset(TIME_KEY, data=time)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def validate_trajectories(
    trajectories: np.ndarray, time: np.ndarray, *, where: str = "dataset"
) -> tuple[np.ndarray, np.ndarray]:
    """Check a dataset and return it as ``(float trajectories (N, T, 2), float64 time (T,))``.

    ``where`` names the source (a file path) at the start of every error message.
    """
    if trajectories.dtype.kind not in "fiu":
        raise DatasetError(f"{where}: /{TRAJECTORIES_KEY} has non-numeric dtype {trajectories.dtype}")
    if time.dtype.kind not in "fiu":
        raise DatasetError(f"{where}: /{TIME_KEY} has non-numeric dtype {time.dtype}")
    if trajectories.ndim != 3 or trajectories.shape[-1] != N_SPECIES:
        raise DatasetError(
            f"{where}: /{TRAJECTORIES_KEY} has shape {trajectories.shape}; "
            f"expected rank 3 with last dimension {N_SPECIES}: (N, T, {N_SPECIES})"
        )
    if time.ndim != 1:
        raise DatasetError(f"{where}: /{TIME_KEY} has shape {time.shape}; expected rank 1: (T,)")
    n_systems, n_steps, _ = trajectories.shape
    if n_systems == 0 or n_steps == 0:
        raise DatasetError(f"{where}: /{TRAJECTORIES_KEY} is empty (shape {trajectories.shape})")
    if time.shape[0] != n_steps:
        raise DatasetError(
            f"{where}: time length mismatch: /{TIME_KEY} has {time.shape[0]} entries "
            f"but /{TRAJECTORIES_KEY} has {n_steps} steps"
        )
    if trajectories.dtype.kind != "f":
        trajectories = trajectories.astype(np.float64)
    time = time.astype(np.float64)
    _check_finite(trajectories, TRAJECTORIES_KEY, where)
    _check_finite(time, TIME_KEY, where)
    if n_steps > 1 and not np.all(np.diff(time) > 0):
        raise DatasetError(f"{where}: /{TIME_KEY} is not strictly increasing")
    negative = trajectories < 0
    if negative.any():
        system, step, species = np.argwhere(negative)[0]
        raise DatasetError(
            f"{where}: negative populations: {int(negative.sum())} value(s) < 0 in "
            f"/{TRAJECTORIES_KEY}, first at [{system}, {step}, {species}] = "
            f"{float(trajectories[system, step, species])!r}"
        )
    return trajectories, time


def _read_dataset(handle: h5py.File, key: str, path: Path) -> np.ndarray:
    if key not in handle:
        raise DatasetError(f"{path}: missing dataset /{key} (found: {sorted(handle.keys())})")
    node = handle[key]
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"{path}: /{key} is a {type(node).__name__}, not a dataset")
    return np.asarray(node[()])


def _check_finite(values: np.ndarray, key: str, where: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DatasetError(
            f"{where}: /{key} contains NaN/inf: {int(bad.sum())} non-finite value(s), "
            f"first at {list(first)}"
        )
