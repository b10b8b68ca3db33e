"""Training checkpoints: adapter, optimizer, trainer state and RNG states, saved atomically.

Layout of a run directory::

    run_dir/checkpoints/step-00000100/
        adapter/                  lora.save_adapter (peft files + llmtime_adapter.json)
        optimizer.pt              optimizer.state_dict()
        rng_state.pt              RNG states of every rank (torch, numpy, python, cuda)
        trainer_state.json        TrainerState: step, seeds, config hash, validation losses
        run_config.json           the run configuration the checkpoint belongs to

A checkpoint is written into a hidden temporary directory and renamed into place, so a
directory named ``step-*`` is always complete; a crash mid-save leaves only the temporary
directory, which the next save removes. ``keep`` rotation deletes only older ``step-*``
directories this module wrote; nothing else in the run directory is ever touched.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lora import load_adapter, save_adapter

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
OPTIMIZER_STATE = "optimizer.pt"
SCHEDULER_STATE = "scheduler.pt"
RNG_STATE = "rng_state.pt"
TRAINER_STATE = "trainer_state.json"
RUN_CONFIG = "run_config.json"
_STEP_NAME = re.compile(r"^step-(\d{8})$")
_TEMP_PREFIX = ".tmp-step-"


@dataclass(frozen=True)
class TrainerState:
    """Where a run stands after ``step`` completed optimizer steps.

    ``config_hash`` identifies the run configuration (see ``experiments.training.loop``);
    ``data_order_seed``, ``world_size`` and ``train_windows_digest`` pin the data order, so a
    resume can check that step ``step + 1`` sees the batch it would have seen. Validation
    losses are mean cross-entropies in nats per target token.
    """

    step: int
    seed: int
    data_order_seed: int
    world_size: int
    config_hash: str
    train_windows_digest: str
    last_val_loss: float | None = None
    best_val_loss: float | None = None
    best_val_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path) -> TrainerState:
        try:
            return cls(**data)
        except TypeError as error:
            raise ValueError(f"{where} is not a trainer state written by this version: {error}") from error


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint on disk: its directory and its trainer state."""

    path: Path
    state: TrainerState

    @property
    def step(self) -> int:
        return self.state.step


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """``run_dir/checkpoints/step-XXXXXXXX`` (8-digit zero-padded step)."""
    return Path(run_dir) / CHECKPOINTS / f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint in ``run_dir``, by ascending step."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_NAME.match(path.name)
        if match and (path / TRAINER_STATE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The ``Checkpoint`` at ``path`` (its trainer state parsed and checked)."""
    path = Path(path)
    state_file = path / TRAINER_STATE
    if not state_file.is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint: it has no {TRAINER_STATE}")
    state = TrainerState.from_dict(json.loads(state_file.read_text()), state_file)
    match = _STEP_NAME.match(path.name)
    if match and int(match.group(1)) != state.step:
        raise ValueError(f"{state_file} says step {state.step} but the directory is named {path.name}")
    return Checkpoint(path, state)


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The complete checkpoint with the highest step in ``run_dir``, or None."""
    checkpoints = list_checkpoints(run_dir)
    return read_checkpoint(checkpoints[-1][1]) if checkpoints else None


# -- RNG states --------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU, numpy, python, and every CUDA device if present)."""
    numpy_state = np.random.get_state(legacy=False)
    key = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))  # uint32 words, as int64
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": key}},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``capture_rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    key = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# -- save / load -------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | Path,
    state: TrainerState,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rng_states: list[dict[str, Any]],
    run_config: dict[str, Any],
    keep: int,
    scheduler: Any = None,
) -> Checkpoint:
    """Write the checkpoint of ``state.step`` atomically, then keep only the newest ``keep``.

    ``model`` is the (unwrapped) LoRA-injected model; ``rng_states[r]`` is rank ``r``'s
    ``capture_rng_state()``; ``run_config`` the JSON-ready configuration of the run. Refuses
    to replace an existing checkpoint of the same step.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 checkpoint, got {keep}")
    final = checkpoint_path(run_dir, state.step)
    if final.exists():
        raise FileExistsError(f"a checkpoint for step {state.step} already exists at {final}; not overwriting it")
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(final.parent)
    staging = final.parent / f"{_TEMP_PREFIX}{state.step:08d}"
    staging.mkdir()
    try:
        save_adapter(model, staging / ADAPTER)
        torch.save(optimizer.state_dict(), staging / OPTIMIZER_STATE)
        if scheduler is not None:
            torch.save(scheduler.state_dict(), staging / SCHEDULER_STATE)
        torch.save(rng_states, staging / RNG_STATE)
        (staging / RUN_CONFIG).write_text(json.dumps(run_config, indent=2, sort_keys=True) + "\n")
        (staging / TRAINER_STATE).write_text(json.dumps(state.to_dict(), indent=2) + "\n")
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for _, old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old)
    return Checkpoint(final, state)


def load_checkpoint(
    checkpoint: Checkpoint, *, model: nn.Module, optimizer: torch.optim.Optimizer, rank: int = 0,
    scheduler: Any = None,
) -> None:
    """Load ``checkpoint`` into ``model`` (adapter), ``optimizer`` and the learning-rate
    ``scheduler``, and restore rank ``rank``'s RNG states. Check the trainer state against the
    run before calling this. A checkpoint written before schedules existed has no scheduler
    state: the schedule (a pure function of the step) is stepped to its step instead."""
    rng_states = torch.load(checkpoint.path / RNG_STATE, weights_only=True)
    if rank >= len(rng_states):
        raise ValueError(f"checkpoint {checkpoint.path} holds RNG states of {len(rng_states)} ranks; "
                         f"rank {rank} has none")
    load_adapter(model, checkpoint.path / ADAPTER)
    optimizer.load_state_dict(torch.load(checkpoint.path / OPTIMIZER_STATE, weights_only=True))
    if scheduler is not None:
        if (checkpoint.path / SCHEDULER_STATE).is_file():
            scheduler.load_state_dict(torch.load(checkpoint.path / SCHEDULER_STATE, weights_only=True))
        else:
            for _ in range(checkpoint.step):
                scheduler.step()
    restore_rng_state(rng_states[rank])


def _remove_stale_temporaries(root: Path) -> None:
    """Delete half-written checkpoints left by a crash mid-save (our own temporaries only)."""
    for path in root.glob(f"{_TEMP_PREFIX}*"):
        shutil.rmtree(path)
