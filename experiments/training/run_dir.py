"""A run directory and the configuration it belongs to.

``run_dir/run_config.json`` records the configuration a run directory was started with (the
train and data configs and the base model's identity); every checkpoint carries a copy. A
run directory only ever holds one configuration: starting or resuming with another is refused
with the list of differing fields, so checkpoints and metrics of different runs never mix.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from experiments.training.checkpoint import RUN_CONFIG, Checkpoint, TrainerState, latest_checkpoint
from experiments.training.run_lock import DirectoryLock, claim_directory


class ConfigMismatch(ValueError):
    """A run directory or checkpoint belongs to another configuration."""


def canonical_json(config: dict[str, Any]) -> str:
    """The JSON text hashed and compared: sorted keys, no whitespace variation."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of ``canonical_json(config)``."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def config_differences(recorded: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``"field: recorded -> current"`` for every differing leaf (nested keys joined by dots)."""
    differences = []
    for key in sorted(set(recorded) | set(current), key=str):
        name = f"{prefix}{key}"
        old, new = recorded.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, prefix=f"{name}.")
        elif json.dumps(old, sort_keys=True) != json.dumps(new, sort_keys=True):
            differences.append(f"{name}: {old!r} -> {new!r}")
    return differences


def read_run_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The configuration stored at ``path`` (a ``run_config.json``)."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the run configuration {path}: {error}") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return config


def check_same_config(recorded: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    """Raise ``ConfigMismatch`` listing every field where ``current`` differs from ``recorded``."""
    differences = config_differences(recorded, current)
    if differences:
        raise ConfigMismatch(
            f"{where} belongs to a run with another configuration; refusing to mix runs. "
            f"Differing fields (recorded -> now): {'; '.join(differences)}. "
            "Use a new run directory, or the recorded configuration to resume."
        )


def open_run_dir(run_dir: str | os.PathLike[str], config: dict[str, Any],
                 held: ExitStack | None = None) -> Checkpoint | None:
    """Prepare ``run_dir`` for a run of ``config``; return the checkpoint to resume from, if any.

    A new directory gets ``run_config.json``. An existing one must have been started with the
    same configuration (and so must its latest checkpoint), else ``ConfigMismatch``. A
    non-empty directory that was never a run directory is refused rather than written into
    (``claim_directory``). With ``held``, the directory's lock is taken first and kept there
    (``DirectoryBusy`` while another process trains in it).
    """
    run_dir = Path(run_dir)
    record = run_dir / RUN_CONFIG
    fresh = claim_directory(run_dir, RUN_CONFIG, "training run directory")
    if held is not None:
        held.enter_context(DirectoryLock(run_dir))
        fresh = claim_directory(run_dir, RUN_CONFIG, "training run directory")  # again, now that it is ours
    if not fresh:
        check_same_config(read_run_config(record), config, record)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        temporary = record.with_name(f".{RUN_CONFIG}.tmp")
        temporary.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        temporary.replace(record)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        stored = checkpoint.path / RUN_CONFIG
        check_same_config(read_run_config(stored), config, stored)
        if checkpoint.state.config_hash != config_hash(config):
            raise ConfigMismatch(f"{checkpoint.path} has config hash {checkpoint.state.config_hash}, "
                                 f"not {config_hash(config)} of {stored}; the checkpoint was altered")
    return checkpoint


_RESUME_FIELDS = {"config_hash": "configuration", "data_order_seed": "data order seed", "world_size": "process count",
                  "train_windows_digest": "training windows (the data file or the tokenizer changed since)"}


def check_resumable(saved: TrainerState, current: TrainerState, where: Path) -> None:
    """Raise ``ConfigMismatch`` unless a checkpoint's state ``saved`` (at ``where``) continues the
    run ``current`` would start: same configuration, data order seed, process count and windows."""
    for name, meaning in _RESUME_FIELDS.items():
        if getattr(saved, name) != getattr(current, name):
            raise ConfigMismatch(f"cannot resume from {where}: not the same {meaning} as when it was saved ({name} "
                                 f"{str(getattr(saved, name))[:16]} -> {str(getattr(current, name))[:16]}), so the "
                                 "data order would not continue where it stopped: restore them, or use a new run "
                                 "directory")
