"""``PlanWorkspace``: a plan bound to its run directory, with its data, tokenizer and results.

The stages and the runner share it: it loads the tokenizer and the data once, gives every
stage a fresh copy of the base model, and answers what the ledger has left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.data import ExperimentData, prepare_data
from experiments.models.loading import load_model, load_tokenizer, tokenizer_source_for
from experiments.pipeline.plan import Plan
from experiments.pipeline.planner import DataShapes
from experiments.pipeline.results import LEDGER_FILE, Results
from experiments.training.config import TrainConfig
from flopcount import Ledger

PLAN_SPLITS = ("validation", "test")  # training needs validation windows, every forecast stage test prompts


@dataclass
class PlanWorkspace:
    """``plan`` bound to ``out_dir`` (its ledger, ``results.json`` and stage directories)."""

    plan: Plan
    out_dir: Path
    results: Results
    progress: bool = True
    _tokenizer: Any = field(default=None, repr=False)
    _data: ExperimentData | None = field(default=None, repr=False)
    _shapes: DataShapes | None = field(default=None, repr=False)

    @property
    def ledger_path(self) -> Path:
        return self.out_dir / LEDGER_FILE

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(tokenizer_source_for(self.plan.model.source, self.plan.model.tokenizer))
        return self._tokenizer

    @property
    def data(self) -> ExperimentData:
        """The plan's data, tokenized (loaded on first use)."""
        if self._data is None:
            self._data = prepare_data(self.plan.data, self.tokenizer).require_splits(*PLAN_SPLITS)
        return self._data

    @property
    def shapes(self) -> DataShapes:
        """The planner's token counts of this plan's data (no tokenizer needed)."""
        if self._shapes is None:
            data = self._data or prepare_data(self.plan.data).require_splits(*PLAN_SPLITS)
            self._shapes = DataShapes.of(self.plan, data)
        return self._shapes

    def base_model(self):
        """A fresh copy of the plan's base model (frozen; LoRA is injected by the stage)."""
        return load_model(self.plan.model.source, dtype=self.plan.model.dtype)

    def remaining(self) -> int:
        """FLOPs left in the ledger (the whole limit before the first charge)."""
        with Ledger(self.ledger_path, self.plan.budget.limit) as ledger:
            return ledger.remaining

    def selections(self) -> dict[str, TrainConfig]:
        """The best setting of every finished training stage."""
        return {stage.name: chosen for stage in self.plan.stages
                if stage.trains and (chosen := self.results.selection(stage.name)) is not None}
