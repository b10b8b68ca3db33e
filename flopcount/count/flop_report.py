"""Report objects: counts by (layer, component) with primitive detail. No formatting here
(see :mod:`flopcount.count.formatting`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from flopcount.count.components import COMPONENTS
from flopcount.count.primitives import OpCount

if TYPE_CHECKING:
    from flopcount.count.setup import CountSetup

LayerKey = int | str  # decoder layer index, or "pre" / "post" for the parts outside layers


class FlopEntry(NamedTuple):
    """The count of one component in one place: ``layer`` is the decoder layer index, or
    ``None`` for the parts outside the layers (embed, pos_add, rotary tables, final_norm,
    lm_head)."""

    layer: int | None
    component: str
    count: OpCount


def _pre_or_post(entry: FlopEntry) -> str:
    return "post" if entry.component in ("final_norm", "lm_head", "loss") else "pre"


@dataclass(frozen=True)
class FlopReport:
    """FLOPs of one forward-shaped workload, itemised by layer, component and primitive.

    All figures are exact ints. ``total`` and the ``by_*`` views are in FLOPs (priced by
    ``PRIMITIVE_COSTS``) except ``by_primitive``, which gives operation counts.

    Attributes:
        entries: one ``FlopEntry`` per (layer, component), zero counts included.
        setup: what was counted and how (model shape, convention, LoRA).
        phase: ``"forward"``, or ``"prefill"`` / ``"decode"`` inside a ``GenerationReport``.
        batch: sequences; seq_len: new positions per sequence (decode: decoding steps);
        past_len: cached positions before the first new one.
        logits: ``"all"`` or ``"last"`` positions through lm_head.
        multiplier: how many times the workload is charged (``scaled``).
    """

    entries: tuple[FlopEntry, ...]
    setup: CountSetup
    batch: int
    seq_len: int
    past_len: int = 0
    logits: str = "all"
    phase: str = "forward"
    multiplier: int = 1

    @property
    def model(self) -> str:
        return self.setup.shape.name

    @property
    def num_layers(self) -> int:
        return self.setup.shape.num_layers

    @property
    def convention(self) -> str:
        """The convention's name."""
        return self.setup.convention.name

    @property
    def lora_rank(self) -> int:
        return self.setup.lora_rank

    @property
    def lora_targets(self) -> tuple[str, ...]:
        return self.setup.lora_targets

    @property
    def lm_head_bias(self) -> bool:
        return self.setup.lm_head_bias

    @cached_property
    def total(self) -> int:
        """Total FLOPs."""
        return OpCount.total_of(e.count for e in self.entries).flops

    def by_component(self) -> dict[str, int]:
        """FLOPs per component, all 23 names in report order (0 where absent)."""
        totals = dict.fromkeys(COMPONENTS, 0)
        for entry in self.entries:
            totals[entry.component] += entry.count.flops
        return totals

    def by_layer(self) -> dict[LayerKey, int]:
        """FLOPs per place: ``"pre"``, the layer indices ``0 .. num_layers-1``, ``"post"``."""
        totals: dict[LayerKey, int] = {"pre": 0, **dict.fromkeys(range(self.num_layers), 0), "post": 0}
        for entry in self.entries:
            key = _pre_or_post(entry) if entry.layer is None else entry.layer
            totals[key] += entry.count.flops
        return totals

    def by_primitive(self) -> dict[str, int]:
        """Operation counts (not FLOPs) per primitive, in cost-table order."""
        return OpCount.total_of(e.count for e in self.entries).as_dict()

    def component(self, name: str, layer: int | None | Literal["all"] = "all") -> OpCount:
        """The ``OpCount`` of component ``name``: in decoder ``layer`` (an index), outside the
        layers (``None``), or summed over every place (``"all"``, the default)."""
        if name not in COMPONENTS:
            raise KeyError(f"unknown component {name!r}; known: {', '.join(COMPONENTS)}")
        return OpCount.total_of(e.count for e in self.entries
                                if e.component == name and (layer == "all" or e.layer == layer))

    def scaled(self, times: int) -> FlopReport:
        """The same report charged ``times`` times (e.g. 3 for a training step)."""
        entries = tuple(FlopEntry(e.layer, e.component, e.count * times) for e in self.entries)
        return replace(self, entries=entries, multiplier=self.multiplier * times)

    def describe(self) -> dict[str, Any]:
        """What was counted (JSON-ready), without the figures."""
        return {
            "model": self.model, "convention": self.convention, "phase": self.phase,
            "batch": self.batch, "seq_len": self.seq_len, "past_len": self.past_len,
            "lora": {"rank": self.lora_rank, "targets": list(self.lora_targets),
                     "lm_head_bias": self.lm_head_bias},
            "logits": self.logits, "multiplier": self.multiplier,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the description plus ``total``, ``by_component``, ``by_layer`` (string
        keys) and ``by_primitive``."""
        return {
            **self.describe(),
            "total": self.total,
            "by_component": self.by_component(),
            "by_layer": {str(k): v for k, v in self.by_layer().items()},
            "by_primitive": self.by_primitive(),
        }

    def __str__(self) -> str:
        from flopcount.count.formatting import format_report

        return format_report(self)


@dataclass(frozen=True)
class GenerationReport:
    """FLOPs of ``generate``: the prefill of the prompt plus KV-cached decoding.

    ``prefill`` runs ``batch * samples`` prompts of ``prompt_len``; ``decode`` covers the
    ``new_tokens - 1`` cached steps (the prefill already yields the first new token), summed
    in closed form (its ``seq_len`` is the number of steps, ``past_len`` the prompt).
    """

    prefill: FlopReport
    decode: FlopReport
    prompt_len: int
    new_tokens: int
    samples: int
    batch: int

    @property
    def parts(self) -> tuple[FlopReport, FlopReport]:
        return self.prefill, self.decode

    @cached_property
    def total(self) -> int:
        """Total FLOPs: prefill plus decoding."""
        return self.prefill.total + self.decode.total

    def by_component(self) -> dict[str, int]:
        """FLOPs per component, summed over prefill and decoding (all 23 names)."""
        first, second = (p.by_component() for p in self.parts)
        return {name: first[name] + second[name] for name in first}

    def by_primitive(self) -> dict[str, int]:
        """Operation counts per primitive, summed over prefill and decoding."""
        first, second = (p.by_primitive() for p in self.parts)
        return {name: first[name] + second[name] for name in first}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: shape of the generation, ``total``, ``by_component``, ``by_primitive``
        and both parts in full."""
        return {
            "model": self.prefill.model, "convention": self.prefill.convention,
            "prompt_len": self.prompt_len, "new_tokens": self.new_tokens,
            "samples": self.samples, "batch": self.batch,
            "total": self.total, "by_component": self.by_component(),
            "by_primitive": self.by_primitive(),
            "prefill": self.prefill.to_dict(), "decode": self.decode.to_dict(),
        }

    def __str__(self) -> str:
        from flopcount.count.formatting import format_generation

        return format_generation(self)
