"""File names, tensor names and checks shared by the adapter formats (see :mod:`lora.adapter`)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's SAFETENSORS_WEIGHTS_NAME
ADAPTER_CONFIG = "adapter_config.json"  # peft's CONFIG_NAME (also the name of version 1's own config)
ADAPTER_METADATA = "llmtime_adapter.json"  # this project's metadata: LoRAConfig, base model, save id
LM_HEAD_BIAS_WEIGHTS = "llmtime_lm_head_bias.safetensors"  # the optional lm_head bias (no peft equivalent)
LEGACY_WEIGHTS = "adapter.safetensors"  # version 1's weights (names as in the model)
PEFT_BINARY_WEIGHTS = "adapter_model.bin"  # peft's save_pretrained(safe_serialization=False)
ADAPTER_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG, ADAPTER_METADATA, LM_HEAD_BIAS_WEIGHTS, LEGACY_WEIGHTS)

FORMAT_NAME = "llmtime-lora-adapter"
FORMAT_VERSION = 2
LEGACY_FORMAT = f"{FORMAT_NAME}/1"
SAVE_ID_KEY = "llmtime_save_id"  # safetensors metadata key: the save a weights file belongs to

# peft's key for a LoRA tensor of a LoraModel over a causal LM: the model's module path under
# ``base_model.model.``, then ``lora_A.weight`` / ``lora_B.weight`` (adapter name left out).
PEFT_PREFIX = "base_model.model."
_PEFT_SUFFIXES = {".lora_A": ".lora_A.weight", ".lora_B": ".lora_B.weight"}

# Base model config fields that must agree between the saving and the loading model.
ARCHITECTURE_FIELDS = (
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "vocab_size",
)


def peft_key(name: str) -> str:
    """``model.layers.0.self_attn.q_proj.lora_A`` -> ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``."""
    for ours, theirs in _PEFT_SUFFIXES.items():
        if name.endswith(ours):
            return f"{PEFT_PREFIX}{name[: -len(ours)]}{theirs}"
    raise ValueError(f"{name!r} is not a LoRA A/B parameter name")


def parameter_name(key: str) -> str | None:
    """The model parameter a peft key stands for (the inverse of ``peft_key``), else None."""
    if not key.startswith(PEFT_PREFIX):
        return None
    for ours, theirs in _PEFT_SUFFIXES.items():
        if key.endswith(theirs):
            return key[len(PEFT_PREFIX): -len(theirs)] + ours
    return None


def base_model_info(model: nn.Module) -> dict[str, Any]:
    """Name and architecture numbers of ``model`` (from its Hugging Face config, if any)."""
    config = getattr(model, "config", None)
    info: dict[str, Any] = {
        "class": type(model).__name__,
        "name_or_path": str(getattr(config, "name_or_path", "") or ""),
    }
    info.update({key: getattr(config, key, None) for key in ARCHITECTURE_FIELDS})
    return info


def check_base_model(model: nn.Module, saved: dict[str, Any], where: Path) -> None:
    current = base_model_info(model)
    for key in ARCHITECTURE_FIELDS:
        if saved.get(key) != current[key]:
            raise ValueError(f"adapter at {where} was saved from a model with {key}={saved.get(key)!r}, "
                             f"but this model has {key}={current[key]!r}")


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path`` atomically."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``FileNotFoundError``/``ValueError`` naming ``what`` it should be."""
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        document = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"invalid {what} {path}: {error}") from error
    if not isinstance(document, dict):
        raise ValueError(f"invalid {what} {path}: not a JSON object")
    return document


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor in the safetensors file ``path`` and its metadata."""
    if not path.is_file():
        raise FileNotFoundError(f"no adapter weights at {path}")
    try:
        with safe_open(path, framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}, dict(handle.metadata() or {})
    except SafetensorError as error:
        raise ValueError(f"adapter weights {path} are not a readable safetensors file: {error}") from error


def check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], where: Path) -> None:
    """Refuse unless ``tensors`` has exactly the names of ``expected``, with those shapes."""
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"adapter {where} does not fit this model: missing tensors {missing}, "
                         f"unexpected tensors {unexpected}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"adapter tensor {name} in {where} has shape {tuple(tensors[name].shape)}, "
                             f"the model expects {shape}")
