"""``results.json``: what every stage of a plan run decided and measured, kept across resumes.

The file is rewritten atomically (temporary file + rename) after every change, so a run killed
at any point leaves the last complete version. A stage is ``finished`` only once its outputs
are written; a re-run of the plan skips finished stages and resumes the others (their training
runs continue from their checkpoints with the steps decided when they first started).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

from experiments.forecasting.metrics import json_ready
from experiments.training.config import TrainConfig
from experiments.training.run_dir import ConfigMismatch

RESULTS_FILE = "results.json"
LEDGER_FILE = "ledger.sqlite"  # every FLOP of the run directory's plan
FORMAT = "llmtime-plan-results/1"


class ResultsError(ValueError):
    """A ``results.json`` that cannot be read (truncated, not JSON, or another tool's file)."""


class Results:
    """The results document of one run directory (a plain JSON-ready dict underneath)."""

    def __init__(self, path: Path, document: dict[str, Any]) -> None:
        self.path = path
        self.document = document

    @classmethod
    def open(cls, out_dir: Path, plan_name: str, plan_text: str) -> Results:
        """Open ``out_dir/results.json``, or start one. A run directory belongs to one plan: a
        different plan (name or text) is refused, so no result of another plan is overwritten."""
        path = out_dir / RESULTS_FILE
        if not path.exists():
            return cls(path, {"format": FORMAT, "plan": plan_name, "plan_text": plan_text, "stages": {}})
        document = _load(path)
        if document.get("plan") != plan_name:
            raise ConfigMismatch(f"{out_dir} holds a run of another plan ({document.get('plan')!r}, not "
                                 f"{plan_name!r}); choose another --out directory")
        if document.get("plan_text") != plan_text:
            raise ConfigMismatch(f"{out_dir} holds a run of plan {plan_name!r} with other settings "
                                 f"({text_difference(str(document.get('plan_text', '')), plan_text)}); re-run with "
                                 "the same --set/--data/--model, or choose another --out directory")
        return cls(path, document)

    @classmethod
    def read(cls, out_dir: Path) -> Results:
        """The results of the run in ``out_dir`` (refused, with one line, when missing or damaged)."""
        path = out_dir / RESULTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {RESULTS_FILE} in {out_dir}: run a plan there first")
        return cls(path, _load(path))

    def stage(self, name: str) -> dict[str, Any]:
        """The record of stage ``name`` (created empty, status ``pending``)."""
        return self.document["stages"].setdefault(name, {"status": "pending"})

    def finished(self, name: str) -> bool:
        return self.document["stages"].get(name, {}).get("status") == "finished"

    def selection(self, name: str) -> TrainConfig | None:
        """The best training setting stage ``name`` selected, once it has finished."""
        record = self.document["stages"].get(name, {})
        if record.get("status") != "finished" or "best" not in record:
            return None
        return TrainConfig.from_dict(record["best"]["settings"])

    def set(self, key: str, value: Any) -> None:
        self.document[key] = value
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".json.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(json_ready(self.document), handle, indent=2, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def _load(path: Path) -> dict[str, Any]:
    """The document at ``path``; ``ResultsError`` when it is unreadable, not JSON (a truncated
    file) or not a results file of this tool."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path}: unreadable results file ({type(error).__name__}: {error}); it was not "
                           "written by a finished save of this tool: run into a new --out directory") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ResultsError(f"{path}: not a results file of this tool (format {found!r}, expected {FORMAT!r})")
    return document


def text_difference(before: str, after: str, lines: int = 4) -> str:
    """The first ``lines`` lines that differ between two plan texts, as ``-old | +new`` on one line."""
    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()]
    shown = " | ".join(f"{line[0]}{line[1:].strip()}" for line in changed[:lines])
    more = f" | ... {len(changed) - lines} more" if len(changed) > lines else ""
    return f"the run's plan text {shown}{more}" if changed else "the plan texts differ only in blank lines"


def run_config(entry: dict[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` of a training run's entry in ``results.json`` (its ``settings``,
    ``experiment`` and ``steps``, as the runner decided them)."""
    return TrainConfig.from_dict(entry["settings"]).for_run(entry["experiment"], entry["steps"])
