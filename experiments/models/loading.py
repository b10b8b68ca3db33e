"""Load the causal LM and tokenizer (hub id, local directory or the named ``tiny`` model).

The real model is ``Qwen/Qwen2.5-0.5B-Instruct``. Its weights cannot be downloaded on every
machine, so a ``tiny`` Qwen2-architecture model with the real vocabulary stands in for demos
and tests; ``save_tiny_model`` writes it with ``save_pretrained`` so that it is loaded through
exactly the same ``AutoModelForCausalLM.from_pretrained`` path as the real checkpoint.
"""

from __future__ import annotations

import os
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, Qwen2Config, Qwen2ForCausalLM

from lora import InjectionReport, LoRAConfig, inject
from lvdata import default_tokenizer_source, load_tokenizer
from lvdata.defaults import HUB_MODEL_ID

TINY_MODEL = "tiny"
BASE_MODEL = "llmtime-base"  # the tiny architecture pretrained on simulated trajectories (experiments.models.base_cache)
QWEN_MODEL_ID = HUB_MODEL_ID
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
)


def tiny_config() -> Qwen2Config:
    """The ``tiny`` model: Qwen2.5's architecture and vocabulary at a size 2 CPU cores can train.

    About 9.8M parameters, 9.7M of them the (tied) embedding of the real 151,936-entry
    vocabulary, so every id of the real tokenizer is valid.
    """
    return Qwen2Config(
        vocab_size=151936,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as the real model (14 query / 2 KV heads)
        head_dim=16,
        intermediate_size=256,
        hidden_act="silu",
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        rope_theta=1e6,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
    )


def build_tiny_model(seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised ``tiny`` model, identical for equal seeds (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(tiny_config())
    model.config.name_or_path = TINY_MODEL
    return model.eval()


def save_tiny_model(
    directory: str | os.PathLike, tokenizer_source: str | os.PathLike | None = None, seed: int = 0,
    *, overwrite: bool = False,
) -> Path:
    """Write the ``tiny`` model and a tokenizer with ``save_pretrained``; returns the directory.

    ``tokenizer_source`` defaults to ``default_tokenizer_source()``. Refuses to replace an
    existing model in ``directory`` unless ``overwrite=True``.
    """
    directory = Path(directory)
    existing = [name for name in (*WEIGHT_FILES, "config.json") if (directory / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{directory} already holds a model ({existing}); pass overwrite=True to replace it")
    tokenizer = load_tokenizer(tokenizer_source or default_tokenizer_source())
    build_tiny_model(seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use a torch.dtype, its name (e.g. 'bfloat16') or 'auto'")
    return resolved


def _looks_like_path(source: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a local path."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or (os.sep != "/" and os.sep in source)


def _check_model_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory.absolute()} does not exist (or is not a directory)")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} has no config.json, so it is not a saved model")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        found = sorted(p.name for p in directory.iterdir())
        raise FileNotFoundError(
            f"{directory} holds no model weights (none of {list(WEIGHT_FILES)}; found {found}). "
            f"A config and tokenizer alone cannot be loaded: use save_tiny_model() or {TINY_MODEL!r} for a test model"
        )


def _hub_unavailable_reason() -> str | None:
    """Why the Hugging Face hub cannot be used right now, or None if it looks reachable.

    A direct TCP probe of the endpoint fails in milliseconds without a network, where
    huggingface_hub would retry with back-off for tens of seconds per file.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if urllib.request.getproxies():
        return None  # a proxy may reach what a direct connection cannot: let the hub client try
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=5).close()
    except OSError as error:
        return f"the hub at {constants.ENDPOINT} cannot be reached ({error})"
    return None


def _from_pretrained(source: str, local_files_only: bool, **kwargs) -> PreTrainedModel:
    # adapter_kwargs: transformers does not pass local_files_only on to its adapter_config.json lookup.
    return AutoModelForCausalLM.from_pretrained(
        source, local_files_only=local_files_only, adapter_kwargs={"local_files_only": local_files_only}, **kwargs
    )


def _load_from_hub(source: str, **kwargs) -> PreTrainedModel:
    """Hub id: the local cache first, then the hub, failing fast and clearly when it is out of reach."""
    try:
        return _from_pretrained(source, local_files_only=True, **kwargs)
    except OSError as not_cached:
        reason = _hub_unavailable_reason()
        if reason is not None:
            raise OSError(
                f"cannot load model {source!r}: it is not a local directory, not in the Hugging Face cache, "
                f"and {reason}. Pass a directory holding config.json and weights, or {TINY_MODEL!r}."
            ) from not_cached
    try:
        return _from_pretrained(source, local_files_only=False, **kwargs)
    except OSError as error:
        raise OSError(f"cannot load model {source!r} from the Hugging Face hub: {error}") from error


def _resolve_base(source: str | os.PathLike) -> str:
    """``BASE_MODEL`` becomes the directory of the cached base, built on first use."""
    from experiments.models.base_cache import resolve_model_source  # it imports this module

    return resolve_model_source(source)


def load_model(
    source: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """Load a causal LM from a hub id, a local directory, ``"tiny"`` or ``"llmtime-base"`` (the
    cached base of :mod:`experiments.models.base_cache`, built on first use), every parameter frozen.

    ``dtype`` None means float32 (LoRA tensors take the base dtype, and bfloat16 ones would
    round away Adam updates at lr 1e-5); ``"auto"`` keeps the checkpoint's dtype. Raises
    ``FileNotFoundError`` for a directory without config or weights and ``OSError`` for a hub
    id that is neither cached nor reachable. The model is returned in eval mode.
    """
    source = _resolve_base(source)
    dtype = _resolve_dtype(dtype)
    if source == TINY_MODEL:
        model = build_tiny_model()
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
        if dtype != "auto":
            model.to(dtype=dtype)
    else:
        kwargs = {"dtype": dtype, "attn_implementation": attn_implementation}
        path = Path(source).expanduser()
        if path.exists() or _looks_like_path(source):
            _check_model_directory(path)
            model = _from_pretrained(str(path), local_files_only=True, **kwargs)
        else:
            model = _load_from_hub(source, **kwargs)
    if device is not None:
        model.to(device)
    return model.requires_grad_(False).eval()


@dataclass
class LoadedModel:
    """A frozen model (LoRA-injected when asked), its tokenizer and where both came from."""

    model: PreTrainedModel
    tokenizer: object
    injection: InjectionReport | None
    source: str
    tokenizer_source: str


def load_model_and_tokenizer(
    source: str | os.PathLike,
    tokenizer_source: str | os.PathLike | None = None,
    lora: LoRAConfig | None = None,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """``load_model`` plus its tokenizer, then LoRA injection when ``lora`` is given.

    The tokenizer comes from ``tokenizer_source``, by default the model source itself (for
    ``"tiny"``: ``default_tokenizer_source()``). Raises ``ValueError`` if the tokenizer has
    ids the model's embedding cannot hold.
    """
    source = _resolve_base(source)
    if tokenizer_source is None:
        tokenizer_source = default_tokenizer_source() if source == TINY_MODEL else source
    model = load_model(source, dtype=dtype, device=device, attn_implementation=attn_implementation)
    tokenizer = load_tokenizer(tokenizer_source)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"tokenizer {tokenizer_source} has {len(tokenizer)} entries but model {source} "
                         f"embeds only {model.config.vocab_size} ids")
    injection = inject(model, lora) if lora is not None else None
    return LoadedModel(model, tokenizer, injection, source, os.fspath(tokenizer_source))
