"""The base causal LM and tokenizer: a hub id, a local directory, or the named ``tiny`` model."""

from experiments.models.loading import (
    QWEN_MODEL_ID,
    TINY_MODEL,
    LoadedModel,
    build_random_model,
    build_tiny_model,
    default_tokenizer_source,
    load_model,
    load_model_and_tokenizer,
    load_tokenizer,
    model_identity,
    release_unreachable_memory,
    save_tiny_model,
    tiny_config,
)

__all__ = [
    "QWEN_MODEL_ID", "TINY_MODEL", "LoadedModel", "build_random_model", "build_tiny_model", "default_tokenizer_source", "load_model",
    "load_model_and_tokenizer", "load_tokenizer", "model_identity", "release_unreachable_memory", "save_tiny_model",
    "tiny_config",
]
