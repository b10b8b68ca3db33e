"""How the ``llmtime-base`` model is made: a recipe of literal hyperparameters and its hash.

The base stands in for Qwen's pretraining: the ``tiny`` architecture (exactly
:func:`~experiments.models.loading.tiny_config`), pretrained from random initialisation on
LLMTIME text of general two-variable sequences (:mod:`experiments.basemodel.families`: never the
real data, and never Lotka–Volterra in the real data's parameter ranges) with the
14-row compact head (:mod:`experiments.basemodel.compact_head`), then copied into the full
151,936-row vocabulary. :data:`DEMO_RECIPE` is the demo plan's base; :data:`TEST_RECIPE` a
short one the test suite builds once per session.

:meth:`BaseRecipe.recipe_hash` identifies a build: every field, the architecture, the
alphabet's token ids and :data:`BUILDER_VERSION` (bumped whenever the builder's code would
make a different model from the same recipe). A cached base is reused only under its hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from experiments.models.loading import tiny_config

BUILDER_VERSION = 2
ARCHITECTURE_KEYS = (
    "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "head_dim", "intermediate_size", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_parameters",
    "tie_word_embeddings", "attention_dropout", "initializer_range",
)


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that decides the base's weights.

    Data: ``sequences`` general sequences for training and ``validation_sequences`` others
    (:func:`~experiments.basemodel.families.general_sequences`, the families in turn, streams 0
    and 1 of ``seed``), written at ``precision`` decimals. A fraction ``context_alpha_fraction`` of them is scaled
    by the per-trajectory α of its first ``context_alpha_steps`` steps (as forecast prompts
    are), the rest by the α of the whole trajectory. One trajectory per row: its first
    ``context`` tokens, right-padded.

    Training: ``steps`` AdamW steps (``betas``, ``weight_decay`` on matrices only) of
    ``batch_size`` rows, learning rate ``learning_rate`` after ``warmup_steps`` linear warmup,
    cosine to ``min_lr_ratio`` of it at the last step, gradient norm clipped at
    ``max_grad_norm``; ``seed`` also seeds the initial weights and the data order. Validation
    on ``eval_rows`` validation rows every ``eval_every`` steps and after the last; a
    checkpoint every ``checkpoint_every`` steps.
    """

    name: str = "llmtime-base"
    seed: int = 0
    sequences: int = 24_000
    validation_sequences: int = 256
    context_alpha_fraction: float = 0.5
    context_alpha_steps: int = 50
    precision: int = 2
    context: int = 1024
    batch_size: int = 4
    steps: int = 3000
    learning_rate: float = 3e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    eval_every: int = 500
    eval_rows: int = 64
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        for name in ("sequences", "validation_sequences", "context_alpha_steps", "precision",
                     "context", "batch_size", "steps", "eval_rows", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BaseRecipe.{name} must be an integer >= 1, got {value!r}")
        for name in ("seed", "warmup_steps", "eval_every"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or \
                    getattr(self, name) < 0:
                raise ValueError(f"BaseRecipe.{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.context_alpha_fraction <= 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("BaseRecipe.context_alpha_fraction and min_lr_ratio must be fractions in [0, 1]")
        if not (self.learning_rate > 0 and self.max_grad_norm > 0 and self.weight_decay >= 0):
            raise ValueError("BaseRecipe needs learning_rate > 0, max_grad_norm > 0 and weight_decay >= 0")
        if self.context > tiny_config().max_position_embeddings:
            raise ValueError(f"BaseRecipe.context {self.context} exceeds the architecture's positions")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BaseRecipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BaseRecipe fields {unknown}")
        return cls(**{**values, "betas": tuple(values.get("betas", cls.betas))})

    def with_steps(self, steps: int) -> BaseRecipe:
        return replace(self, steps=steps)

    def evaluation_steps(self) -> list[int]:
        """Steps after which the validation rows are scored: every ``eval_every`` and the last."""
        every = range(self.eval_every, self.steps + 1, self.eval_every) if self.eval_every else range(0)
        return sorted({*every, self.steps})

    def hash_document(self, alphabet_ids: tuple[int, ...]) -> dict[str, Any]:
        """What :meth:`recipe_hash` hashes (JSON-ready)."""
        config = tiny_config().to_dict()
        return {"builder_version": BUILDER_VERSION, "recipe": self.to_dict(),
                "architecture": {key: config.get(key) for key in ARCHITECTURE_KEYS},
                "alphabet_ids": list(alphabet_ids)}

    def recipe_hash(self, alphabet_ids: tuple[int, ...]) -> str:
        """16 hex digits of the SHA-256 of :meth:`hash_document`; stable across runs and machines."""
        text = json.dumps(self.hash_document(alphabet_ids), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


DEMO_RECIPE = BaseRecipe()
TEST_RECIPE = BaseRecipe(name="llmtime-base-test", sequences=4000, validation_sequences=64, context=512,
                         steps=1000, warmup_steps=25, eval_every=500, eval_rows=16, checkpoint_every=250)
RECIPES = {"demo": DEMO_RECIPE, "test": TEST_RECIPE}

__all__ = ["BUILDER_VERSION", "DEMO_RECIPE", "RECIPES", "TEST_RECIPE", "BaseRecipe"]
