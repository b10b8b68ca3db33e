"""Inject ``LoRALinear`` adapters into a causal LM (any Qwen2-family model) and report them.

``inject`` freezes every base parameter, wraps each ``nn.Linear`` whose attribute name is in
``targets`` (``q_proj``/``v_proj`` by default, in every layer), optionally adds a trainable
zero bias to the output projection (``lm_head``), and records the ``LoRAConfig`` on the model
so that ``lora_state_dict`` and the adapter files can find the LoRA tensors again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from flopcount.count.setup import DEFAULT_LORA_TARGETS

from .layer import LoRALinear, resolve_lora_hyperparameters

DEFAULT_TARGETS: tuple[str, ...] = DEFAULT_LORA_TARGETS  # the brief's q_proj, v_proj
CONFIG_ATTRIBUTE = "lora_config"  # where inject() records the LoRAConfig on the model


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA hyperparameters. ``alpha=None`` resolves to ``r`` (scaling ``alpha / r`` = 1).

    ``lm_head_bias`` adds a trainable zero bias (``vocab_size`` parameters) to the output
    projection, as the reference starter code does; its add is one FLOP per logit.
    """

    r: int
    alpha: float | None = None
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS
    lm_head_bias: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", resolve_lora_hyperparameters(self.r, self.alpha, self.dropout))
        object.__setattr__(self, "dropout", float(self.dropout))
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(f"LoRA targets must be a non-empty sequence of module names, got {self.targets!r}")
        if len(set(targets)) != len(targets):
            raise ValueError(f"LoRA targets contain duplicates: {targets!r}")
        object.__setattr__(self, "targets", targets)
        if not isinstance(self.lm_head_bias, bool):
            raise TypeError(f"lm_head_bias must be a bool, got {self.lm_head_bias!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoRAConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown LoRAConfig fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class ParameterBlock:
    """One trainable tensor: qualified name, shape and element count."""

    name: str
    shape: tuple[int, ...]
    numel: int


@dataclass(frozen=True)
class InjectionReport:
    """What ``inject`` changed: replaced modules and the trainable parameters (counts in elements)."""

    config: LoRAConfig
    replaced: tuple[str, ...]
    trainable_blocks: tuple[ParameterBlock, ...]
    trainable_count: int
    total_count: int
    lm_head_bias: str | None = None  # qualified name of the added bias, if any

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_count / self.total_count

    def __str__(self) -> str:
        c = self.config
        lines = [
            f"LoRA r={c.r} alpha={c.alpha:g} (scaling {c.scaling:g}) dropout={c.dropout:g} "
            f"on {', '.join(c.targets)}: {len(self.replaced)} linear layers wrapped"
            + (f", trainable bias on {self.lm_head_bias.rsplit('.', 1)[0]}" if self.lm_head_bias else ""),
            "trainable parameter blocks:",
        ]
        width = max((len(b.name) for b in self.trainable_blocks), default=0)
        lines += [f"  {b.name:<{width}}  {str(b.shape):>14}  {b.numel:>12,}" for b in self.trainable_blocks]
        lines.append(
            f"trainable {self.trainable_count:,} of {self.total_count:,} parameters ({self.trainable_fraction:.4%})"
        )
        return "\n".join(lines)


def injected_config(model: nn.Module) -> LoRAConfig | None:
    """The ``LoRAConfig`` recorded by ``inject`` on ``model``, or None if it was never injected."""
    return getattr(model, CONFIG_ATTRIBUTE, None)


def require_injected_config(model: nn.Module) -> LoRAConfig:
    """Like ``injected_config`` but raises ``ValueError`` for a model without LoRA adapters."""
    config = injected_config(model)
    if config is None:
        raise ValueError(f"{type(model).__name__} has no LoRA adapters; call lora.inject(model, ...) first")
    return config


def _output_projection(model: nn.Module) -> tuple[str, nn.Linear]:
    """Qualified name and module of the model's output projection (``lm_head``)."""
    get_output = getattr(model, "get_output_embeddings", None)
    head = get_output() if get_output is not None else None
    if not isinstance(head, nn.Linear):
        raise TypeError(f"lm_head_bias needs a model whose get_output_embeddings() is an nn.Linear; "
                        f"{type(model).__name__} gives {type(head).__name__}")
    name = next(name for name, module in model.named_modules() if module is head)
    return name, head


def output_projection_name(model: nn.Module) -> str:
    """Qualified name of the model's output projection (``lm_head`` for a causal LM)."""
    return _output_projection(model)[0]


def _target_modules(model: nn.Module, targets: Iterable[str]) -> dict[str, nn.Module]:
    """Qualified name -> module for every linear layer (plain or already wrapped) named in targets."""
    targets = set(targets)
    return {name: module for name, module in model.named_modules()
            if name.rsplit(".", 1)[-1] in targets and isinstance(module, (nn.Linear, LoRALinear))}


def adapter_shapes(model: nn.Module, config: LoRAConfig) -> dict[str, tuple[int, ...]]:
    """Qualified name -> shape of every adapter tensor ``config`` gives (or gave) ``model``.

    Works before and after injection: ``<module>.lora_A`` is ``(r, in)``, ``<module>.lora_B``
    is ``(out, r)``, and with ``lm_head_bias`` ``<lm_head>.bias`` is ``(vocab_size,)``.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for name, module in _target_modules(model, config.targets).items():
        shapes[f"{name}.lora_A"] = (config.r, module.in_features)
        shapes[f"{name}.lora_B"] = (module.out_features, config.r)
    if config.lm_head_bias:
        head_name, head = _output_projection(model)
        shapes[f"{head_name}.bias"] = (head.out_features,)
    return shapes


def inject(
    model: nn.Module,
    r: int | LoRAConfig,
    targets: Iterable[str] = DEFAULT_TARGETS,
    alpha: float | None = None,
    dropout: float = 0.0,
    lm_head_bias: bool = False,
) -> InjectionReport:
    """Freeze ``model`` and wrap its target linear layers with LoRA, in place.

    ``r`` is the rank, or a whole ``LoRAConfig`` (then leave the other arguments at their
    defaults). Raises ``ValueError`` if a target names no linear layer (listing the linear
    layer names that exist) and ``RuntimeError`` if the model already carries LoRA adapters.
    """
    if isinstance(r, LoRAConfig):
        if (tuple(targets), alpha, dropout, lm_head_bias) != (DEFAULT_TARGETS, None, 0.0, False):
            raise TypeError("inject(): pass either a LoRAConfig or keyword hyperparameters, not both")
        config = r
    else:
        config = LoRAConfig(r=r, alpha=alpha, dropout=dropout, targets=tuple(targets), lm_head_bias=lm_head_bias)

    already = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    if injected_config(model) is not None or already:
        raise RuntimeError(f"model already carries LoRA adapters ({len(already)} LoRALinear layers, "
                           f"config {injected_config(model)}); inject once per model")

    found = _target_modules(model, config.targets)
    missing = [t for t in config.targets if not any(name.rsplit(".", 1)[-1] == t for name in found)]
    if missing:
        available = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"LoRA targets {missing} match no nn.Linear in {type(model).__name__}; "
                         f"linear layer names available: {available}")

    head = None
    if config.lm_head_bias:
        head_name, head = _output_projection(model)
        if head.bias is not None:
            raise ValueError(f"{head_name} already has a bias; lm_head_bias would replace it")
        if head_name in found:
            raise ValueError(f"lm_head_bias cannot be combined with LoRA on the output projection {head_name!r}")

    # Every check has passed: from here on the model is changed.
    model.requires_grad_(False)
    for name, linear in found.items():
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, LoRALinear(linear, config.r, config.alpha, config.dropout))
    if head is not None:
        # Only the bias is new: the (possibly tied) weight object is left as it is, frozen.
        head.bias = nn.Parameter(torch.zeros(head.out_features, dtype=head.weight.dtype, device=head.weight.device))
    setattr(model, CONFIG_ATTRIBUTE, config)
    return describe(model)


def describe(model: nn.Module) -> InjectionReport:
    """The ``InjectionReport`` of a model that ``inject`` (or ``load_adapter``) has prepared."""
    config = require_injected_config(model)
    replaced = tuple(name for name, module in model.named_modules() if isinstance(module, LoRALinear))
    blocks = tuple(ParameterBlock(name, tuple(p.shape), p.numel()) for name, p in trainable_parameters(model).items())
    return InjectionReport(
        config=config,
        replaced=replaced,
        trainable_blocks=blocks,
        trainable_count=sum(b.numel for b in blocks),
        total_count=sum(p.numel() for p in model.parameters()),
        lm_head_bias=f"{_output_projection(model)[0]}.bias" if config.lm_head_bias else None,
    )


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Qualified name -> parameter for every parameter with ``requires_grad`` (what to optimise)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors alone (LoRA A/B and the optional lm_head bias), detached, by qualified name."""
    config = require_injected_config(model)
    parameters = dict(model.named_parameters())
    return {name: parameters[name].detach() for name in adapter_shapes(model, config)}
