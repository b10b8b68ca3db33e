"""Save and load the adapter alone: ``adapter.safetensors`` plus ``adapter_config.json``.

The weights file holds only the LoRA tensors (and the optional lm_head bias) under their
qualified names in the model; the JSON file holds the ``LoRAConfig`` and the base model's
architecture numbers, so that loading into the wrong model fails with a clear message. The
config is also stored in the safetensors metadata, which detects a mixed-up pair of files.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .inject import (
    InjectionReport,
    LoRAConfig,
    adapter_shapes,
    describe,
    inject,
    injected_config,
    lora_state_dict,
    require_injected_config,
)
from .layer import LoRALinear

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FORMAT = "llmtime-lora-adapter/1"
# Base model config fields that must agree between the saving and the loading model.
ARCHITECTURE_FIELDS = (
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "vocab_size",
)


def base_model_info(model: nn.Module) -> dict[str, Any]:
    """Name and architecture numbers of ``model`` (from its Hugging Face config, if any)."""
    config = getattr(model, "config", None)
    info: dict[str, Any] = {
        "class": type(model).__name__,
        "name_or_path": str(getattr(config, "name_or_path", "") or ""),
    }
    info.update({key: getattr(config, key, None) for key in ARCHITECTURE_FIELDS})
    return info


@contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path`` atomically."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def save_adapter(
    model: nn.Module, directory: str | os.PathLike, config: LoRAConfig | None = None, *, overwrite: bool = False
) -> Path:
    """Write the adapter of an injected ``model`` into ``directory`` (created if needed).

    ``config`` defaults to the one ``inject`` recorded; if given it must equal it. Refuses to
    replace an existing adapter unless ``overwrite=True``. Each file is written to a temporary
    name and renamed, so a crash never leaves a half-written file. Returns the directory.
    """
    recorded = require_injected_config(model)
    if config is not None and config != recorded:
        raise ValueError(f"save_adapter(): config {config} differs from the one injected into the model {recorded}")
    directory = Path(directory)
    weights_path, config_path = directory / ADAPTER_WEIGHTS, directory / ADAPTER_CONFIG
    existing = [str(p) for p in (weights_path, config_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"an adapter already exists at {existing}; pass overwrite=True to replace it")
    directory.mkdir(parents=True, exist_ok=True)

    tensors = {name: t.detach().cpu().contiguous() for name, t in lora_state_dict(model).items()}
    config_json = json.dumps(recorded.to_dict(), sort_keys=True)
    document = {
        "format": ADAPTER_FORMAT,
        "lora": recorded.to_dict(),
        "base_model": base_model_info(model),
        "tensors": {name: list(t.shape) for name, t in tensors.items()},
    }
    with _staged(weights_path) as weights_tmp, _staged(config_path) as config_tmp:
        save_file(tensors, weights_tmp, metadata={"format": "pt", "lora_config": config_json})
        config_tmp.write_text(json.dumps(document, indent=2) + "\n")
    return directory


def read_adapter_config(directory: str | os.PathLike) -> tuple[LoRAConfig, dict[str, Any]]:
    """The ``LoRAConfig`` and base model info stored in ``directory/adapter_config.json``."""
    config_path = Path(directory) / ADAPTER_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"no adapter config at {config_path} (expected {ADAPTER_CONFIG} from save_adapter)")
    try:
        document = json.loads(config_path.read_text())
        if document.get("format") != ADAPTER_FORMAT:
            raise ValueError(f"format is {document.get('format')!r}, expected {ADAPTER_FORMAT!r}")
        return LoRAConfig.from_dict(document["lora"]), document["base_model"]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"invalid adapter config {config_path}: {error!r}") from error


def _check_base_model(model: nn.Module, saved: dict[str, Any], where: Path) -> None:
    current = base_model_info(model)
    for key in ARCHITECTURE_FIELDS:
        if saved.get(key) != current[key]:
            raise ValueError(f"adapter at {where} was saved from a model with {key}={saved.get(key)!r}, "
                             f"but this model has {key}={current[key]!r}")


def _read_tensors(weights_path: Path, config: LoRAConfig) -> dict[str, torch.Tensor]:
    if not weights_path.is_file():
        raise FileNotFoundError(f"no adapter weights at {weights_path}")
    with safe_open(weights_path, framework="pt") as handle:
        stored_config = (handle.metadata() or {}).get("lora_config")
        if stored_config is None or LoRAConfig.from_dict(json.loads(stored_config)) != config:
            raise ValueError(f"{weights_path} was written with LoRA config {stored_config}, which does not match "
                             f"{ADAPTER_CONFIG} ({config}); the two files come from different saves")
        return {name: handle.get_tensor(name) for name in handle.keys()}


def _check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], where: Path) -> None:
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"adapter {where} does not fit this model: missing tensors {missing}, "
                         f"unexpected tensors {unexpected}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"adapter tensor {name} in {where} has shape {tuple(tensors[name].shape)}, "
                             f"the model expects {shape}")


def load_adapter(model: nn.Module, directory: str | os.PathLike) -> InjectionReport:
    """Load an adapter saved by ``save_adapter`` into ``model``, injecting LoRA first if needed.

    Strict: the base architecture, the LoRA config (when the model is already injected), the
    tensor names and shapes must all match, and every check runs before the model is modified.
    Tensors are cast to the model's dtype and device. Returns the model's ``InjectionReport``.
    """
    directory = Path(directory)
    config, saved_base = read_adapter_config(directory)
    _check_base_model(model, saved_base, directory)
    current = injected_config(model)
    if current is not None and current != config:
        raise ValueError(f"model already carries LoRA {current}, but the adapter at {directory} has {config}")
    if any(isinstance(m, LoRALinear) and m.merged for m in model.modules()):
        raise RuntimeError("load_adapter(): the model's LoRA layers are merged; unmerge() them before loading")
    tensors = _read_tensors(directory / ADAPTER_WEIGHTS, config)
    _check_tensors(tensors, adapter_shapes(model, config), directory / ADAPTER_WEIGHTS)

    if current is None:
        inject(model, config)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            parameters[name].copy_(tensor)
    return describe(model)
