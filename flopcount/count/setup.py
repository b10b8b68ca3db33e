"""``CountSetup``: everything a FLOP count depends on besides the workload.

A count is decided by five values: the model's shape, the convention, and the trained
adapters (LoRA rank, LoRA targets, an optional trainable lm_head bias). They travel together
as one frozen object, made in one place (:meth:`CountSetup.of` from anything
:func:`~flopcount.model_shape` accepts, :meth:`CountSetup.from_lora` from a LoRA config) and
taken by every counting function, by the run estimate and by :class:`flopcount.Budget`.

    setup = CountSetup.of("qwen2.5-0.5b", "coursework", lora_rank=4)
    setup = CountSetup.from_lora(model.config, lora.LoRAConfig(r=4))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from flopcount.count.arguments import check_lora
from flopcount.count.conventions import COURSEWORK, Convention, get_convention
from flopcount.count.shape import ModelShape, model_shape

DEFAULT_LORA_TARGETS: tuple[str, ...] = ("q_proj", "v_proj")
"""The brief's LoRA targets (declared here once; ``lora.DEFAULT_TARGETS`` is this tuple)."""


@dataclass(frozen=True)
class CountSetup:
    """What a FLOP count depends on besides the workload (see the module docstring).

    Attributes:
        shape: the model's architecture.
        convention: how operations are counted (``COURSEWORK`` or ``EXACT``).
        lora_rank: rank of the unmerged LoRA adapters (0: no LoRA).
        lora_targets: projections carrying LoRA (HF names); empty when ``lora_rank`` is 0.
        lm_head_bias: a trainable lm_head bias (``logit rows * vocab`` adds).
    """

    shape: ModelShape
    convention: Convention = COURSEWORK
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()
    lm_head_bias: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.shape, ModelShape):
            raise TypeError(f"CountSetup.shape must be a ModelShape (use CountSetup.of(model)), got "
                            f"{type(self.shape).__name__}")
        object.__setattr__(self, "convention", get_convention(self.convention))
        object.__setattr__(self, "lora_targets", check_lora(self.lora_rank, self.lora_targets))
        object.__setattr__(self, "lm_head_bias", bool(self.lm_head_bias))

    @classmethod
    def of(cls, model: Any, convention: str | Convention = "coursework", *, lora_rank: int = 0,
           lora_targets: tuple[str, ...] | list[str] = DEFAULT_LORA_TARGETS, lm_head_bias: bool = False) -> CountSetup:
        """The setup of ``model`` (anything :func:`~flopcount.model_shape` accepts) under
        ``convention`` with the given LoRA. A ``CountSetup`` is not a model: refused, so that a
        convention or LoRA asked for is never silently ignored (use ``dataclasses.replace``)."""
        if isinstance(model, CountSetup):
            raise TypeError("CountSetup.of takes a model, not a CountSetup; use dataclasses.replace(setup, ...) to "
                            "change one")
        return cls(model_shape(model), get_convention(convention), lora_rank, lora_targets, lm_head_bias)

    @classmethod
    def from_lora(cls, model: Any, lora: Any, convention: str | Convention = "coursework") -> CountSetup:
        """The setup of ``model`` carrying the adapters of ``lora``: any object with ``r``,
        ``targets`` and ``lm_head_bias`` (``lora.LoRAConfig``), or None for no adapters."""
        if lora is None:
            return cls.of(model, convention)
        return cls.of(model, convention, lora_rank=lora.r, lora_targets=lora.targets,
                      lm_head_bias=lora.lm_head_bias)

    @property
    def model(self) -> str:
        """The model's name (empty when unnamed)."""
        return self.shape.name

    def describe(self) -> dict[str, Any]:
        """Everything the count depends on, JSON-ready: a resumed experiment must match it."""
        shape = dataclasses.asdict(self.shape)
        shape.pop("name")
        return {"shape": shape, "convention": dataclasses.asdict(self.convention), "lora_rank": self.lora_rank,
                "lora_targets": list(self.lora_targets), "lm_head_bias": self.lm_head_bias}


def as_setup(setup_or_model: Any) -> CountSetup:
    """``setup_or_model`` itself if it is a ``CountSetup``, else the coursework setup of that
    model without adapters (the counting functions' first argument)."""
    return setup_or_model if isinstance(setup_or_model, CountSetup) else CountSetup.of(setup_or_model)
