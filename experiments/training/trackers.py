"""Experiment tracking through accelerate's trackers: TensorBoard, MLflow, Weights & Biases.

Every record of ``metrics.jsonl`` is also logged to the run's trackers at its step, as
``<kind>/<field>`` scalars (``train/loss``, ``validation/val_loss``, ...), including the FLOPs
the ledger had charged (``train/flops_spent_total``), so curves can be drawn against FLOPs in the
user's own dashboard. Offline-friendly: TensorBoard event files and a local MLflow store are
written under the run directory (``trackers/``); W&B follows its own settings (``WANDB_MODE``).
Rank 0 alone logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "mlflow", "wandb")


PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
"""The package each tracker needs (accelerate imports it when the tracker starts)."""


def check_trackers_installed(names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming every tracker of ``names`` whose package is not installed:
    checked before a run claims its directory or charges its first FLOP."""
    import importlib.util

    missing = [name for name in names if importlib.util.find_spec(PACKAGES[name]) is None]
    if missing:
        raise ValueError(f"--report-to {' '.join(missing)}: not installed (pip install "
                         f"{' '.join(PACKAGES[name] for name in missing)}), or leave it out")


def open_trackers(names: tuple[str, ...], run_name: str, logging_dir: Path, config: dict[str, Any]) -> list:
    """Start accelerate's tracker of each of ``names`` for ``run_name``, logging under
    ``logging_dir``, with ``config`` (flattened) as the run's hyperparameters."""
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    logging_dir.mkdir(parents=True, exist_ok=True)
    made = {
        "tensorboard": lambda: TensorBoardTracker(run_name, logging_dir),
        "mlflow": lambda: MLflowTracker(experiment_name=run_name, logging_dir=str(logging_dir / "mlruns")),
        "wandb": lambda: WandBTracker(run_name, dir=str(logging_dir)),
    }
    trackers = []
    for name in names:
        tracker = made[name]()
        tracker.start()
        tracker.store_init_configuration(_flat(config))
        trackers.append(tracker)
    return trackers


def log_record(trackers: list, kind: str, fields: dict[str, Any]) -> None:
    """Log the numeric fields of one metrics record at its ``step``."""
    values = {f"{kind}/{key}": value for key, value in fields.items()
              if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step"}
    for tracker in trackers:
        tracker.log(values, step=fields.get("step"))


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested JSON config as ``a.b`` keys of str / int / float / bool values (trackers' hparams)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        elif isinstance(value, (str, int, float, bool)) or value is None:
            flat[name] = "none" if value is None else value
        else:
            flat[name] = str(value)
    return flat
