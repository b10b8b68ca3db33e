"""Read peft LoRA configurations as a ``LoRAConfig``, and write one as peft's ``adapter_config.json``.

``lora_config_from_peft`` accepts a peft ``LoraConfig``, a ``PeftModel`` (or ``LoraModel``),
the dict of an ``adapter_config.json``, or the path of one (or of its directory). It resolves
``target_modules`` the way peft does (``peft.tuners.tuners_utils.check_target_module_exists``):

- a list (or set) of names: a module matches if its qualified name equals an entry or ends
  with ``.<entry>``; ``layers_to_transform``/``layers_pattern`` then keep the given layers;
- a string: a regex that must ``re.fullmatch`` the qualified module name;
- ``"all-linear"`` (any case): every linear layer except the output layer (``lm_head``);
- ``exclude_modules`` (list or regex) removes matches.

The matches are checked against the linear layers of ``model`` (for a ``PeftModel``: its own
base model) or, without a model, against the module names of a Qwen2-family causal LM
(``model.layers.<i>.self_attn.{q,k,v,o}_proj``, ``model.layers.<i>.mlp.{gate,up,down}_proj``,
``lm_head``) with :data:`ASSUMED_LAYERS` layers. The result must be representable here: one
rank and alpha for every adapter, and each targeted projection adapted in every layer, among
:data:`COUNTABLE_TARGETS` (the projections the analytic FLOP count knows). Anything else is
refused with a ``ValueError`` naming the field and what it would need.

Scale: peft's is ``lora_alpha / r``, or ``lora_alpha / sqrt(r)`` with ``use_rslora``; here it
is always ``alpha / r``, so an rsLoRA config reads as ``alpha = lora_alpha * sqrt(r)``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from flopcount.count.components import PROJECTIONS

from .inject import LoRAConfig
from .layer import LoRALinear

PEFT_CONFIG = "adapter_config.json"  # peft's CONFIG_NAME
COUNTABLE_TARGETS: tuple[str, ...] = PROJECTIONS  # the projections the analytic FLOP count knows, in order
ASSUMED_LAYERS = 1000  # decoder layers of the assumed Qwen2 module names when no model is given
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")

# Fields that do not change what the adapter computes (bookkeeping, or settings of features
# refused elsewhere), and fields this module reads; every other field must be left empty.
_IGNORED = frozenset({
    "task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
    "inference_mode", "megatron_core", "qalora_group_size", "runtime_config", "loftq_config", "eva_config",
    "corda_config", "lora_ga_config", "ensure_weight_tying",
})
_READ = frozenset({"r", "lora_alpha", "lora_dropout", "use_rslora", "target_modules", "exclude_modules",
                   "layers_to_transform", "layers_pattern", "init_lora_weights", "bias"})
# init_lora_weights values that only set the initial A and B (others also rewrite the base weights).
_PLAIN_INITS = (True, False, "gaussian", "orthogonal", "eva")
# Why a non-empty value of these fields cannot be represented by lora.LoRAConfig.
_REFUSALS = {
    "rank_pattern": "different ranks per module",
    "alpha_pattern": "different alphas per module",
    "use_dora": "DoRA (a magnitude vector per output)",
    "lora_bias": "a bias on lora_B",
    "modules_to_save": "fully trained copies of modules",
    "fan_in_fan_out": "transposed (Conv1D) weights",
    "target_parameters": "LoRA on parameters rather than modules",
    "trainable_token_indices": "trainable embedding rows",
    "layer_replication": "replicated layers",
    "megatron_config": "Megatron parallel layers",
    "use_qalora": "QA-LoRA pooling",
    "alora_invocation_tokens": "activated LoRA",
}


def lora_config_from_peft(peft_config_or_model: Any, model: nn.Module | None = None) -> LoRAConfig:
    """The ``LoRAConfig`` equivalent to a peft LoRA setup (see the module docstring).

    ``model`` is the model the targets are resolved against; it defaults to the base model of
    a ``PeftModel`` argument, else to the Qwen2 module layout. Raises ``ValueError`` (listing
    every problem) for what cannot be represented, ``TypeError`` for an unknown argument.
    """
    fields, own_model = _peft_fields(peft_config_or_model)
    model = model if model is not None else own_model
    problems = _unrepresentable(fields)
    if problems:
        raise ValueError("cannot represent this peft LoRA config: " + "; ".join(problems))
    r = fields.get("r", 8)
    alpha = fields.get("lora_alpha", 8)
    if fields.get("use_rslora") and isinstance(r, int) and r > 0 and isinstance(alpha, (int, float)):
        alpha = alpha * math.sqrt(r)  # peft's scale lora_alpha / sqrt(r) as alpha / r
    targets = resolve_targets(fields, model)
    try:
        return LoRAConfig(r=r, alpha=alpha, dropout=fields.get("lora_dropout", 0.0), targets=targets)
    except (TypeError, ValueError) as error:
        raise ValueError(f"peft config r={r!r}, lora_alpha={fields.get('lora_alpha', 8)!r}, "
                         f"lora_dropout={fields.get('lora_dropout', 0.0)!r}: {error}") from error


def _peft_fields(source: Any) -> tuple[dict[str, Any], nn.Module | None]:
    """The config fields (as in ``adapter_config.json``) and the model carried by ``source``."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        path = path / PEFT_CONFIG if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no peft adapter config at {path}")
        try:
            return dict(json.loads(path.read_text())), None
        except (ValueError, TypeError) as error:
            raise ValueError(f"invalid peft adapter config {path}: {error}") from error
    if isinstance(source, Mapping):
        return dict(source), None
    if isinstance(getattr(source, "peft_config", None), Mapping):  # PeftModel or a tuner model (LoraModel)
        configs = source.peft_config
        actives = getattr(source, "active_adapters", None)
        actives = actives() if callable(actives) else actives  # a method on transformers models
        if isinstance(actives, (list, tuple)) and len(actives) > 1:
            raise ValueError(f"several peft adapters are active ({', '.join(map(repr, actives))}): every forward "
                             "runs all of them, and a LoRAConfig prices one; activate one (set_adapter) or merge them")
        active = getattr(source, "active_adapter", None)
        active = active if isinstance(active, str) else next(iter(configs))
        if hasattr(source, "get_base_model"):  # PeftModel
            base = source.get_base_model()
        elif hasattr(source, "targeted_module_names"):  # a peft tuner model (LoraModel): the model it wraps
            base = source.model
        else:  # a transformers model carrying peft adapters (model.load_adapter): itself
            base = source
        return _peft_fields(configs[active])[0], base
    if hasattr(source, "to_dict") and hasattr(source, "peft_type"):  # a PeftConfig: the fields peft saves
        return dict(source.to_dict()), None
    raise TypeError(f"lora_config_from_peft() takes a peft LoraConfig, a PeftModel, an adapter_config.json dict "
                    f"or its path; got {type(source).__name__}")


def _is_empty(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (str, list, tuple, set, dict)) and not value)


def _unrepresentable(fields: dict[str, Any]) -> list[str]:
    problems = []
    peft_type = fields.get("peft_type", "LORA")
    if str(getattr(peft_type, "value", peft_type)) != "LORA":
        problems.append(f"peft_type={peft_type!r} is not LORA")
    if fields.get("bias", "none") != "none":
        problems.append(f"bias={fields['bias']!r} trains the base layers' biases (only bias='none' is representable)")
    init = fields.get("init_lora_weights", True)
    if not any(init is plain or (isinstance(init, str) and init == plain) for plain in _PLAIN_INITS):
        problems.append(f"init_lora_weights={init!r} also rewrites the base weights "
                        f"(representable: {', '.join(map(repr, _PLAIN_INITS))})")
    for key, value in fields.items():
        if key in _IGNORED or key in _READ or _is_empty(value):
            continue
        why = _REFUSALS.get(key, "a peft field this lora does not know")
        problems.append(f"{key}={value!r} ({why})")
    return problems


def resolve_targets(fields: Mapping[str, Any], model: nn.Module | None) -> tuple[str, ...]:
    """The projection names that peft's ``target_modules`` (with ``exclude_modules``,
    ``layers_to_transform`` and ``layers_pattern``) select in ``model``, in the order of
    :data:`COUNTABLE_TARGETS`; ``ValueError`` unless that is a projection in every layer."""
    target_modules = fields.get("target_modules")
    if target_modules is None:
        raise ValueError("peft config target_modules is None (peft would pick a per-architecture default); "
                         "name the modules, e.g. ['q_proj', 'v_proj']")
    linear, head = _linear_layers(model)
    everything = isinstance(target_modules, str) and target_modules.lower() == "all-linear"
    matched = [name for name in linear if (name != head if everything else _matches(fields, name))]
    matched = [name for name in matched if not _excluded(fields.get("exclude_modules"), name)]
    where = "the model" if model is not None else f"a {ASSUMED_LAYERS}-layer Qwen2 module layout (pass model=...)"
    if not matched:
        raise ValueError(f"peft target_modules={_show(target_modules)} match no linear layer of {where}")
    others = [name for name in _other_modules(model)
              if not everything and _matches(fields, name) and not _excluded(fields.get("exclude_modules"), name)]
    if others:
        raise ValueError(f"peft target_modules={_show(target_modules)} select {others[:3]}"
                         f"{' ...' if len(others) > 3 else ''}, not linear projections: LoRA there is outside what "
                         f"the FLOP count prices ({', '.join(COUNTABLE_TARGETS)})")
    suffixes = {name.rsplit(".", 1)[-1] for name in matched}
    unknown = sorted(suffixes - set(COUNTABLE_TARGETS))
    if unknown:
        raise ValueError(f"peft target_modules={_show(target_modules)} select {unknown}, outside the projections "
                         f"the FLOP count knows ({', '.join(COUNTABLE_TARGETS)})")
    for suffix in sorted(suffixes):
        missed = [name for name in linear if name.rsplit(".", 1)[-1] == suffix and name not in matched]
        if missed:
            raise ValueError(f"peft target_modules={_show(target_modules)} adapt {suffix} in some layers only "
                             f"(not {missed[:3]}{' ...' if len(missed) > 3 else ''} of {where}); this lora puts "
                             "LoRA on a projection in every layer")
    return tuple(t for t in COUNTABLE_TARGETS if t in suffixes)


def _show(value: Any) -> str:
    return repr(sorted(value) if isinstance(value, (set, frozenset)) else value)


def _linear_layers(model: nn.Module | None) -> tuple[list[str], str | None]:
    """Qualified names of the linear layers (plain, ``LoRALinear`` or peft-wrapped, not their
    insides) and the output layer's name; without a model, the assumed Qwen2 layout."""
    if model is None:
        names = [f"model.layers.{i}.{'self_attn' if p in _ATTENTION else 'mlp'}.{p}"
                 for i in range(ASSUMED_LAYERS) for p in COUNTABLE_TARGETS]
        return [*names, "lm_head"], "lm_head"
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if get_output is not None else None
    names, head, inside = [], None, ()
    for name, module in model.named_modules():
        if inside and name.startswith(inside):
            continue
        wrapped = isinstance(getattr(module, "base_layer", None), nn.Linear)  # a peft LoRA layer
        if isinstance(module, (nn.Linear, LoRALinear)) or wrapped:
            names.append(name)
            inside = f"{name}."
            if module is output or (wrapped and module.base_layer is output):
                head = name
    return names, head


def _other_modules(model: nn.Module | None) -> list[str]:
    """Qualified names of the modules with weights of their own that are not linear layers (the
    embedding, the norms; peft-wrapped ones too), which peft could also adapt; without a model,
    the embedding of the assumed Qwen2 layout."""
    if model is None:
        return ["model.embed_tokens"]
    linear, _ = _linear_layers(model)
    inside = tuple(f"{name}." for name in linear)
    names = []
    for name, module in model.named_modules():
        if not name or name in linear or name.startswith(inside) or any(name.startswith(f"{n}.") for n in names):
            continue
        if next(module.parameters(recurse=False), None) is not None or hasattr(module, "base_layer"):
            names.append(name)
    return names


def _matches(fields: Mapping[str, Any], key: str) -> bool:
    """peft's ``check_target_module_exists`` for ``target_modules`` and the layer selection."""
    targets = fields["target_modules"]
    if isinstance(targets, str):
        return re.fullmatch(targets, key) is not None
    if key in targets:
        return True
    if not any(key.endswith(f".{target}") for target in targets):
        return False
    layers = fields.get("layers_to_transform")
    if layers is None or (isinstance(layers, list) and not layers):
        return True
    patterns = fields.get("layers_pattern")
    match = None
    if not patterns:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
    else:
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key)
            if match is not None:
                break
    if match is None:
        return False
    index = int(match.group("idx"))
    return index == layers if isinstance(layers, int) else index in layers


def _excluded(exclude: str | Iterable[str] | None, key: str) -> bool:
    if not exclude:
        return False
    if isinstance(exclude, str):
        return re.fullmatch(exclude, key) is not None
    return key in exclude or any(key.endswith(f".{entry}") for entry in exclude)


def peft_adapter_config(config: LoRAConfig, base_model_name_or_path: str | None = None) -> dict[str, Any]:
    """peft's ``adapter_config.json`` for ``config`` (which must not have ``lm_head_bias``):
    plain LoRA with scale ``alpha / r`` on ``config.targets`` in every layer."""
    if config.lm_head_bias:
        raise ValueError("a LoRA config with lm_head_bias has no peft equivalent (peft LoRA cannot train a bias "
                         "on lm_head alone)")
    alpha = config.alpha
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path or None,
        "revision": None,
        "inference_mode": True,
        "r": config.r,
        "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "lora_dropout": config.dropout,
        "target_modules": list(config.targets),
        "exclude_modules": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "lora_bias": False,
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "target_parameters": None,
    }
