"""Save and load the adapter alone, in peft's format plus a metadata file of this project's own.

``save_adapter`` writes a directory that ``peft.PeftModel.from_pretrained(base, directory)``
loads into the same logits:

- ``adapter_model.safetensors``: the LoRA tensors under peft's names
  (``base_model.model.<module>.lora_A.weight``, ``...lora_B.weight``; A is ``(r, in)``, B is
  ``(out, r)``), with this save's id in the safetensors metadata;
- ``adapter_config.json``: peft's ``LoraConfig`` (``peft_type: LORA``, ``r``, ``lora_alpha``,
  ``target_modules``, ``task_type: CAUSAL_LM``, ``bias: none``, ...);
- ``llmtime_adapter.json``: this project's metadata: format name and version, the
  ``LoRAConfig``, the base model's name and architecture numbers (loading into another
  architecture fails clearly), tensor shapes, and the save id, which detects files mixed from
  different saves (or rewritten by peft afterwards).

**The lm_head bias.** peft LoRA cannot train a bias on the output layer alone, so an adapter
with ``lm_head_bias`` is saved with the bias in ``llmtime_lm_head_bias.safetensors`` and
*without* ``adapter_config.json``: peft refuses the directory (it finds no config) instead of
loading it silently without the bias, into different logits. ``llmtime_adapter.json`` says so
under ``"peft"``. Everything else is in peft's format, and :func:`load_adapter` reads it whole.

``load_adapter`` reads, by what the directory holds:

1. ``llmtime_adapter.json``: the format above;
2. ``adapter_config.json`` with ``peft_type``: a directory written by peft's
   ``save_pretrained``, read through :func:`lora.lora_config_from_peft` (refused with the
   reason when it is not plain LoRA on whole projections, one rank and alpha);
3. ``adapter_config.json`` with ``format: llmtime-lora-adapter/1`` plus ``adapter.safetensors``:
   the format before this one (names as in the model). To convert one, load it and save it:
   ``lora.load_adapter(model, old); lora.save_adapter(model, new)``.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from .adapter_files import (
    ADAPTER_CONFIG,
    ADAPTER_FILES,
    ADAPTER_METADATA,
    ADAPTER_WEIGHTS,
    FORMAT_NAME,
    FORMAT_VERSION,
    LEGACY_FORMAT,
    LEGACY_WEIGHTS,
    LM_HEAD_BIAS_WEIGHTS,
    PEFT_BINARY_WEIGHTS,
    SAVE_ID_KEY,
    base_model_info,
    check_base_model,
    check_tensors,
    parameter_name,
    peft_key,
    read_json,
    read_tensors,
    staged,
)
from .inject import (
    InjectionReport,
    LoRAConfig,
    adapter_shapes,
    describe,
    inject,
    injected_config,
    lora_state_dict,
    output_projection_name,
    require_injected_config,
)
from .layer import LoRALinear
from .peft_config import lora_config_from_peft, peft_adapter_config

NO_PEFT_WITH_BIAS = (f"not loadable by peft: peft LoRA cannot train a bias on lm_head alone, so the bias is in "
                     f"{LM_HEAD_BIAS_WEIGHTS} and no {ADAPTER_CONFIG} is written (peft would load the adapter "
                     f"without the bias, into different logits); lora.load_adapter reads it whole")


@dataclass(frozen=True)
class StoredAdapter:
    """An adapter read from a directory and checked against a model, before it changes it.

    ``tensors`` are keyed by the model's parameter names (``<module>.lora_A``, ...);
    ``format`` is ``"llmtime-lora-adapter/2"``, ``"peft"`` or ``"llmtime-lora-adapter/1"``.
    """

    directory: Path
    format: str
    config: LoRAConfig
    tensors: dict[str, torch.Tensor]


def save_adapter(
    model: nn.Module, directory: str | os.PathLike, config: LoRAConfig | None = None, *, overwrite: bool = False
) -> Path:
    """Write the adapter of an injected ``model`` into ``directory`` (created if needed).

    ``config`` defaults to the one ``inject`` recorded; if given it must equal it. Refuses to
    replace an existing adapter (of any format) unless ``overwrite=True``, which also removes
    the adapter files of the earlier save that this one does not write. Each file is written
    under a temporary name first, then renamed; files left mixed by a crash during the renames
    are refused at load by their save ids. Returns the directory.
    """
    recorded = require_injected_config(model)
    if config is not None and config != recorded:
        raise ValueError(f"save_adapter(): config {config} differs from the one injected into the model {recorded}")
    directory = Path(directory)
    existing = [str(directory / name) for name in ADAPTER_FILES if (directory / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"an adapter already exists at {existing}; pass overwrite=True to replace it")
    directory.mkdir(parents=True, exist_ok=True)

    save_id = secrets.token_hex(8)
    stamp = {"format": "pt", SAVE_ID_KEY: save_id}
    state = {name: t.detach().cpu().contiguous() for name, t in lora_state_dict(model).items()}
    head_bias = f"{output_projection_name(model)}.bias" if recorded.lm_head_bias else None
    lora_tensors = {peft_key(name): t for name, t in state.items() if name != head_bias}
    base = base_model_info(model)
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "save_id": save_id,
        "lora": recorded.to_dict(),
        "base_model": base,
        "tensors": {name: list(t.shape) for name, t in state.items()},
        "peft": {"loadable": head_bias is None, "note": NO_PEFT_WITH_BIAS if head_bias else
                 f"peft.PeftModel.from_pretrained(base_model, directory) loads {ADAPTER_WEIGHTS}"},
    }
    writers: dict[str, Callable[[Path], None]] = {  # llmtime_adapter.json first: renamed last
        ADAPTER_METADATA: lambda path: path.write_text(json.dumps(document, indent=2) + "\n"),
        ADAPTER_WEIGHTS: lambda path: save_file(lora_tensors, path, metadata=stamp),
    }
    if head_bias is None:
        peft_json = json.dumps(peft_adapter_config(recorded, base["name_or_path"]), indent=2, sort_keys=True)
        writers[ADAPTER_CONFIG] = lambda path: path.write_text(peft_json + "\n")
    else:
        writers[LM_HEAD_BIAS_WEIGHTS] = lambda path: save_file({head_bias: state[head_bias]}, path, metadata=stamp)
    with ExitStack() as renames:  # leaving it renames the files, in reverse order of entering
        for name, write in writers.items():
            write(renames.enter_context(staged(directory / name)))
        for name in ADAPTER_FILES:  # what an earlier save left that this one does not replace
            if name not in writers:
                (directory / name).unlink(missing_ok=True)
    return directory


def read_adapter_config(directory: str | os.PathLike, model: nn.Module | None = None) -> tuple[LoRAConfig, dict]:
    """The ``LoRAConfig`` of the adapter in ``directory`` (any format ``load_adapter`` reads)
    and what it records of its base model (for a peft directory: only ``name_or_path``).
    ``model`` resolves a peft config's regex or ``"all-linear"`` targets (see
    :func:`lora.lora_config_from_peft`)."""
    directory = Path(directory)
    kind = _format_of(directory)
    if kind == "peft":
        document = read_json(directory / ADAPTER_CONFIG, "peft adapter config")
        return _peft_config(document, model, directory), {"name_or_path": document.get("base_model_name_or_path")}
    path, document = _own_document(directory, kind)
    try:
        return LoRAConfig.from_dict(document["lora"]), dict(document["base_model"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"invalid adapter config {path}: {error!r}") from error


def load_adapter(model: nn.Module, directory: str | os.PathLike) -> InjectionReport:
    """Load an adapter (this project's, peft's, or the earlier format) into ``model``,
    injecting LoRA first if needed.

    Strict: the base architecture (where recorded), the LoRA config (when the model is already
    injected), the tensor names and shapes must all match, and every check runs before the
    model is modified. Tensors are cast to the model's dtype and device. Returns the model's
    ``InjectionReport``.
    """
    stored = read_adapter(model, directory)
    if injected_config(model) is None:
        inject(model, stored.config)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in stored.tensors.items():
            parameters[name].copy_(tensor)
    return describe(model)


def read_adapter(model: nn.Module, directory: str | os.PathLike) -> StoredAdapter:
    """Read and check the adapter in ``directory`` against ``model`` without changing it."""
    directory = Path(directory)
    kind = _format_of(directory)
    config, _ = read_adapter_config(directory, model)
    current = injected_config(model)
    if current is not None:
        if not same_adapter(current, config):
            raise ValueError(f"model already carries LoRA {current}, but the adapter at {directory} has {config}")
        config = current  # the same adapter, perhaps with its targets in another order
    if any(isinstance(m, LoRALinear) and m.merged for m in model.modules()):
        raise RuntimeError("load_adapter(): the model's LoRA layers are merged; unmerge() them before loading")
    shapes = adapter_shapes(model, config)
    if kind == LEGACY_FORMAT:
        return _read_legacy(model, directory, config, shapes)
    if kind == "peft":
        tensors = _read_peft_weights(directory, shapes, save_id=None)
        return StoredAdapter(directory, "peft", config, tensors)
    _, document = _own_document(directory, kind)
    check_base_model(model, document["base_model"], directory)
    save_id = document.get("save_id")
    head_bias = f"{output_projection_name(model)}.bias" if config.lm_head_bias else None
    _check_peft_config_agrees(directory, config, model)
    tensors = _read_peft_weights(directory, {n: s for n, s in shapes.items() if n != head_bias}, save_id)
    if head_bias is not None:
        bias_path = directory / LM_HEAD_BIAS_WEIGHTS
        bias, metadata = read_tensors(bias_path)
        _check_save_id(metadata, save_id, bias_path)
        check_tensors(bias, {head_bias: shapes[head_bias]}, bias_path)
        tensors.update(bias)
    return StoredAdapter(directory, f"{FORMAT_NAME}/{FORMAT_VERSION}", config, tensors)


def same_adapter(a: LoRAConfig, b: LoRAConfig) -> bool:
    """Whether two configs give the same adapter: equal but for the order of their targets."""
    return (a.r, a.alpha, a.dropout, a.lm_head_bias, set(a.targets)) == (b.r, b.alpha, b.dropout, b.lm_head_bias,
                                                                       set(b.targets))


def _format_of(directory: Path) -> str:
    """``"llmtime-lora-adapter/2"``, ``"peft"`` or ``"llmtime-lora-adapter/1"``: what the directory holds."""
    if (directory / ADAPTER_METADATA).is_file():
        return f"{FORMAT_NAME}/{FORMAT_VERSION}"
    if not (directory / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(f"no adapter config at {directory}: expected {ADAPTER_METADATA} "
                                f"(lora.save_adapter) or {ADAPTER_CONFIG} (peft's save_pretrained)")
    document = read_json(directory / ADAPTER_CONFIG, "adapter config")
    if document.get("format") == LEGACY_FORMAT:
        return LEGACY_FORMAT
    if "peft_type" in document:
        return "peft"
    raise ValueError(f"{directory / ADAPTER_CONFIG} is neither peft's adapter config (no 'peft_type') nor "
                     f"this project's format {LEGACY_FORMAT!r} (its 'format' is {document.get('format')!r})")


def _own_document(directory: Path, kind: str) -> tuple[Path, dict[str, Any]]:
    """This project's metadata file of the given format, checked for its format and version."""
    path = directory / (ADAPTER_CONFIG if kind == LEGACY_FORMAT else ADAPTER_METADATA)
    document = read_json(path, "adapter metadata")
    if kind == LEGACY_FORMAT:
        return path, document
    if document.get("format") != FORMAT_NAME or document.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} is format {document.get('format')!r} version {document.get('version')!r}; "
                         f"this lora reads {FORMAT_NAME!r} version {FORMAT_VERSION} (and version 1)")
    return path, document


def _peft_config(document: dict[str, Any], model: nn.Module | None, directory: Path) -> LoRAConfig:
    try:
        return lora_config_from_peft(document, model)
    except ValueError as error:
        raise ValueError(f"peft adapter {directory}: {error}") from error


def _check_peft_config_agrees(directory: Path, config: LoRAConfig, model: nn.Module) -> None:
    """A peft config beside our metadata must describe the same adapter (no lm_head bias)."""
    path = directory / ADAPTER_CONFIG
    if not path.is_file():
        return
    theirs = _peft_config(read_json(path, "peft adapter config"), model, directory)
    if config.lm_head_bias or not same_adapter(theirs, config):
        raise ValueError(f"{path} describes {theirs} but {directory / ADAPTER_METADATA} has {config}: the files "
                         "come from different saves")


def _check_save_id(metadata: dict[str, str], save_id: str | None, path: Path) -> None:
    if metadata.get(SAVE_ID_KEY) != save_id:
        hint = (f" (if peft saved over it, delete {ADAPTER_METADATA} to load it as a peft adapter)"
                if path.name == ADAPTER_WEIGHTS and (path.parent / ADAPTER_CONFIG).is_file() else "")
        raise ValueError(f"{path} belongs to save {metadata.get(SAVE_ID_KEY)!r}, but {ADAPTER_METADATA} to "
                         f"save {save_id!r}: the files come from different saves{hint}")


def _read_peft_weights(directory: Path, shapes: dict[str, tuple[int, ...]], save_id: str | None) -> dict:
    """LoRA tensors from ``adapter_model.safetensors`` (peft names), by model parameter name."""
    path = directory / ADAPTER_WEIGHTS
    if not path.is_file() and (directory / PEFT_BINARY_WEIGHTS).is_file():
        raise ValueError(f"{directory} holds {PEFT_BINARY_WEIGHTS} (pickle); re-save it with peft's "
                         f"save_pretrained(..., safe_serialization=True) to get {ADAPTER_WEIGHTS}")
    tensors, metadata = read_tensors(path)
    if save_id is not None:
        _check_save_id(metadata, save_id, path)
    check_tensors(tensors, {peft_key(name): shape for name, shape in shapes.items()}, path)
    return {parameter_name(key): tensor for key, tensor in tensors.items()}


def _read_legacy(model: nn.Module, directory: Path, config: LoRAConfig, shapes: dict) -> StoredAdapter:
    """Format 1: ``adapter.safetensors`` under the model's names, the config in its metadata."""
    _, document = _own_document(directory, LEGACY_FORMAT)
    check_base_model(model, document["base_model"], directory)
    path = directory / LEGACY_WEIGHTS
    tensors, metadata = read_tensors(path)
    stored = metadata.get("lora_config")
    if stored is None or LoRAConfig.from_dict(json.loads(stored)) != config:
        raise ValueError(f"{path} was written with LoRA config {stored}, which does not match "
                         f"{ADAPTER_CONFIG} ({config}); the two files come from different saves")
    check_tensors(tensors, shapes, path)
    return StoredAdapter(directory, LEGACY_FORMAT, config, tensors)
