"""Load the causal LM and tokenizer (hub id, local directory or the named ``tiny`` model).

The real model is ``Qwen/Qwen2.5-0.5B-Instruct``. Its weights cannot be downloaded on every
machine, so a ``tiny`` Qwen2-architecture model with the real vocabulary stands in for demos
and tests; ``save_tiny_model`` writes it with ``save_pretrained`` so that it is loaded through
exactly the same ``AutoModelForCausalLM.from_pretrained`` path as the real checkpoint.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import hashlib
import os
import socket
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, Qwen2Config, Qwen2ForCausalLM

from lora import InjectionReport, LoRAConfig, inject
from lvdata import default_tokenizer_source, load_tokenizer
from lvdata.defaults import HUB_MODEL_ID

TINY_MODEL = "tiny"
BASE_MODEL = "llmtime-base"  # the tiny architecture pretrained on simulated trajectories (experiments.basemodel.cache)
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


def build_random_model(config: Qwen2Config, seed: int = 0, dtype: torch.dtype = torch.float32) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 model of ``config``'s architecture, in eval mode.

    E.g. Qwen2.5-0.5B's shipped ``config.json`` (``AutoConfig.from_pretrained``): FLOPs,
    shapes and memory do not depend on the weight values. Identical for equal seeds (the global
    RNG is untouched). Initialised in float32 whatever ``config.torch_dtype`` says, then cast
    to ``dtype`` (the full-size model: about 2.0 GB in float32, 1.0 GB in bfloat16).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    return model.to(dtype=dtype).eval()


def build_tiny_model(seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised ``tiny`` model, identical for equal seeds (global RNG untouched)."""
    model = build_random_model(tiny_config(), seed)
    model.config.name_or_path = TINY_MODEL
    return model


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
    return AutoModelForCausalLM.from_pretrained(source, local_files_only=local_files_only, **kwargs)


def _load_from_cache(source: str, **kwargs) -> PreTrainedModel:
    """Hub id ``source`` from the local Hugging Face cache alone; ``OSError`` if it is not there.

    Loaded from its cached snapshot directory, so no lookup leaves the machine: given the hub id
    and ``local_files_only``, ``AutoModelForCausalLM`` still looks for an adapter_config.json on
    the hub (it does not pass the flag on), and passing the flag in ``adapter_kwargs`` instead
    collides with the one transformers 4.x passes itself (TypeError). ``name_or_path`` is set
    back to the hub id, as a hub load sets it.
    """
    from huggingface_hub import snapshot_download

    snapshot = snapshot_download(source, local_files_only=True)  # LocalEntryNotFoundError: an OSError
    model = _from_pretrained(snapshot, local_files_only=True, **kwargs)
    model.config.name_or_path = source
    return model


def _load_from_hub(source: str, **kwargs) -> PreTrainedModel:
    """Hub id: the local cache first, then the hub, failing fast and clearly when it is out of reach."""
    try:
        return _load_from_cache(source, **kwargs)
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


NAMED_SOURCES: dict[str, Callable[[], str]] = {}
"""Model sources known by name, each resolved to a directory when loaded: a higher layer
registers them (``experiments.basemodel`` registers ``llmtime-base``, its cached base, built on
first use), so loading does not depend on how a named model is made."""


def _resolve_base(source: str | os.PathLike) -> str:
    """A registered named source (e.g. ``BASE_MODEL``) becomes its directory; others as given."""
    source = os.fspath(source)
    return NAMED_SOURCES[source]() if source in NAMED_SOURCES else source


def model_identity(source: str | os.PathLike) -> dict[str, str]:
    """What identifies the weights ``source`` loads, for a run to refuse a resume on other ones:
    ``{"source": ..., "sha256": ...}``, the digest of a local directory's ``config.json`` and
    weight files (named sources resolved to their directory first; a 1 GB checkpoint takes about
    2 s), or of the source's name for ``tiny`` (seeded, always the same) and uncached hub ids."""
    resolved = _resolve_base(source)
    digest = hashlib.sha256()
    directory = Path(resolved).expanduser()
    files = [directory / name for name in ("config.json", *WEIGHT_FILES)] if directory.is_dir() else []
    for path in (path for path in files if path.is_file()):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                digest.update(chunk)
    if not files:
        digest.update(str(resolved).encode())
    return {"source": os.fspath(source), "sha256": digest.hexdigest()}


def release_unreachable_memory() -> None:
    """Free what nothing reaches any more before a model is allocated, and hand the freed heap
    back to the operating system (glibc's ``malloc_trim``; nothing more elsewhere).

    A model its caller has dropped can still be held by a reference cycle: matplotlib's
    parsing (pyparsing) leaves exceptions whose tracebacks keep the frames of every caller
    alive, with their locals, so the previous stage's model lives on until the next full
    collection. When that collection runs depends on allocation counts, so without this a
    second full-size copy (2 GB in float32) is alive while the next one loads on some runs
    and not on others.
    """
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library of this process if it has ``malloc_trim`` (glibc), else None."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded into the process, libc among them
    except (OSError, TypeError):  # TypeError: Windows has no such handle
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def load_model(
    source: str | os.PathLike,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """Load a causal LM from a hub id, a local directory, ``"tiny"`` or ``"llmtime-base"`` (the
    cached base of :mod:`experiments.basemodel.cache`, built on first use), every parameter frozen.

    ``dtype`` None means float32 (LoRA tensors take the base dtype, and bfloat16 ones would
    round away Adam updates at lr 1e-5); ``"auto"`` keeps the checkpoint's dtype. Raises
    ``FileNotFoundError`` for a directory without config or weights and ``OSError`` for a hub
    id that is neither cached nor reachable. The model is returned in eval mode. Unreachable
    memory is released first (:func:`release_unreachable_memory`): a dropped model is gone
    before the next copy is allocated.
    """
    source = _resolve_base(source)
    dtype = _resolve_dtype(dtype)
    release_unreachable_memory()
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


QWEN_VOCABULARY_MODELS = (TINY_MODEL, BASE_MODEL)  # named models on Qwen2.5's vocabulary: the shared tokenizer


def tokenizer_source_for(
    model_source: str | os.PathLike, tokenizer_source: str | os.PathLike | None = None
) -> str | os.PathLike:
    """Where ``model_source``'s tokenizer comes from: ``tokenizer_source`` when given; for the
    named models ``"tiny"`` and ``"llmtime-base"``, ``default_tokenizer_source()`` (the shared
    Qwen2.5 tokenizer: a named base is not built just to read its tokenizer); else the model
    source itself (a hub id or a directory saved with its tokenizer)."""
    if tokenizer_source:
        return tokenizer_source
    return default_tokenizer_source() if os.fspath(model_source) in QWEN_VOCABULARY_MODELS else model_source


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

    The tokenizer comes from ``tokenizer_source``, by default :func:`tokenizer_source_for` the
    model source. Raises ``ValueError`` if the tokenizer has ids the model's embedding cannot hold.
    """
    tokenizer_source = tokenizer_source_for(source, tokenizer_source)
    source = _resolve_base(source)
    model = load_model(source, dtype=dtype, device=device, attn_implementation=attn_implementation)
    tokenizer = load_tokenizer(tokenizer_source)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"tokenizer {tokenizer_source} has {len(tokenizer)} entries but model {source} "
                         f"embeds only {model.config.vocab_size} ids")
    injection = inject(model, lora) if lora is not None else None
    return LoadedModel(model, tokenizer, injection, source, os.fspath(tokenizer_source))
