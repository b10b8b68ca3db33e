"""``ModelShape``: the hyperparameters a FLOP count needs, from presets or real configs.

``model_shape(x)`` accepts a ``ModelShape``, a preset name (``"qwen2.5-0.5b"``, ...), one of
the four Qwen2.5 hub ids (``"Qwen/Qwen2.5-0.5B-Instruct"``: aliases of the presets, so
planning works offline), a path to a ``config.json`` or a directory holding one, a
``transformers.PretrainedConfig``, an ``nn.Module`` with ``.config``, or any other hub id
(read with ``AutoConfig.from_pretrained``; a clear error when offline).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    """Architecture of a Llama-style decoder (SwiGLU MLP, RMSNorm, RoPE, optional GQA): the
    Qwen2/Qwen2.5, Qwen3, Llama 2/3 and Mistral families.

    Widths are in elements: ``hidden_size`` (d), ``head_dim`` (hd), ``intermediate_size``
    (MLP width), ``vocab_size`` (V). ``num_kv_heads < num_heads`` means grouped-query
    attention. ``qkv_bias`` / ``o_bias`` / ``mlp_bias`` say which projections add a bias;
    ``qk_norm``: an RMSNorm over each query and key head before RoPE (Qwen3);
    ``sliding_window``: keys a query may see when that attention is on (Mistral), None when off
    (a count that would need it is refused: the dense count would overstate the work).
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        for field in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                      "intermediate_size", "vocab_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelShape{f' {self.name!r}' if self.name else ''}: {field} must be "
                                 f"a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"ModelShape {self.name!r}: num_heads ({self.num_heads}) must be a multiple "
                             f"of num_kv_heads ({self.num_kv_heads})")

    @property
    def q_width(self) -> int:
        """Output width of q_proj: ``num_heads * head_dim``."""
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Real output width of k_proj and v_proj: ``num_kv_heads * head_dim``."""
        return self.num_kv_heads * self.head_dim


PRESETS: dict[str, ModelShape] = {
    "qwen2.5-0.5b": ModelShape(
        hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64,
        intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, qkv_bias=True,
        name="qwen2.5-0.5b"),
    "qwen2.5-1.5b": ModelShape(
        hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2, head_dim=128,
        intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True, qkv_bias=True,
        name="qwen2.5-1.5b"),
    "qwen2.5-3b": ModelShape(
        hidden_size=2048, num_layers=36, num_heads=16, num_kv_heads=2, head_dim=128,
        intermediate_size=11008, vocab_size=151936, tie_word_embeddings=True, qkv_bias=True,
        name="qwen2.5-3b"),
    "qwen2.5-7b": ModelShape(
        hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128,
        intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False, qkv_bias=True,
        name="qwen2.5-7b"),
    "qwen3-0.6b": ModelShape(
        hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128,
        intermediate_size=3072, vocab_size=151936, tie_word_embeddings=True, qkv_bias=False, qk_norm=True,
        name="qwen3-0.6b"),
    "qwen3-8b": ModelShape(
        hidden_size=4096, num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128,
        intermediate_size=12288, vocab_size=151936, tie_word_embeddings=False, qkv_bias=False, qk_norm=True,
        name="qwen3-8b"),
    "llama-2-7b": ModelShape(
        hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32, head_dim=128,
        intermediate_size=11008, vocab_size=32000, tie_word_embeddings=False, qkv_bias=False,
        name="llama-2-7b"),
    "llama-3.2-1b": ModelShape(
        hidden_size=2048, num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
        intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, qkv_bias=False,
        name="llama-3.2-1b"),
    "llama-3.1-8b": ModelShape(
        hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128,
        intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False, qkv_bias=False,
        name="llama-3.1-8b"),
    "mistral-7b-v0.1": ModelShape(
        hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128,
        intermediate_size=14336, vocab_size=32000, tie_word_embeddings=False, qkv_bias=False,
        sliding_window=4096, name="mistral-7b-v0.1"),
}
"""Literal hyperparameters from the published configs (base and instruct share a shape)."""

FAMILIES = ("qwen2", "qwen3", "llama", "mistral")
"""``model_type`` values the analytic model prices; any other is refused by name."""

_HUB_ALIAS = re.compile(r"^qwen/qwen2\.5-(0\.5b|1\.5b|3b|7b)(-instruct)?$", re.IGNORECASE)


def model_shape(model: Any) -> ModelShape:
    """Return the ``ModelShape`` of ``model`` (see the module docstring for what it accepts)."""
    if isinstance(model, ModelShape):
        return model
    if isinstance(model, (str, Path)):
        return _shape_from_name_or_path(str(model))
    config = getattr(model, "config", None)
    if config is not None and hasattr(model, "forward"):
        return shape_from_config(config)
    if hasattr(model, "hidden_size") and hasattr(model, "num_hidden_layers"):
        return shape_from_config(model)
    raise TypeError(f"cannot read a model shape from {type(model).__name__}: pass a ModelShape, a preset "
                    f"name ({', '.join(PRESETS)}), a config.json path, a PretrainedConfig, a model "
                    "with .config, or a hub id")


def _shape_from_name_or_path(name: str) -> ModelShape:
    key = name.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    alias = _HUB_ALIAS.match(name.strip())
    if alias:
        return PRESETS[f"qwen2.5-{alias.group(1).lower()}"]
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"directory {path.parent} holds no config.json")
    if path.is_file():
        try:
            fields = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a readable JSON model config: {exc}") from exc
        return shape_from_config(fields, default_name=path.parent.name)
    if "/" not in name or name.startswith((".", "/", "~")):
        raise ValueError(f"{name!r} is neither a preset ({', '.join(PRESETS)}), nor an existing config "
                         "path, nor a hub id (owner/name)")
    return _shape_from_hub(name)


def _shape_from_hub(hub_id: str) -> ModelShape:
    """The hub config: from the local cache if there, else downloaded (huggingface_hub retries
    for ~25 s without a network unless ``HF_HUB_OFFLINE=1``)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(hub_id, local_files_only=True)
    except (OSError, ValueError):
        config = None
    try:
        config = config or AutoConfig.from_pretrained(hub_id)
    except (OSError, ValueError) as exc:
        raise ValueError(f"could not load the config of hub model {hub_id!r} (offline or unknown id?): "
                         f"{exc}. Offline, use a preset ({', '.join(PRESETS)}) or a local config.json") from exc
    return shape_from_config(config, default_name=hub_id)


def shape_from_config(config: Any, default_name: str = "") -> ModelShape:
    """Build a ``ModelShape`` from a ``PretrainedConfig`` or a config.json dict.

    Qwen2 (``model_type == "qwen2"``) hard-codes bias on q/k/v and none on o_proj; Qwen3,
    Llama and Mistral say it with ``attention_bias``. Qwen3 adds q/k RMSNorm. The MLP must be
    SwiGLU with SiLU. Anything the count does not price is refused with an error naming it:
    another ``model_type``, another activation, mixture-of-experts layers, per-layer
    attention types.
    """
    fields = config if isinstance(config, dict) else config.to_dict()
    where = fields.get("_name_or_path") or default_name or fields.get("model_type", "config")

    def need(key: str) -> Any:
        if fields.get(key) is None:
            raise ValueError(f"model config {where!r} has no {key!r}: not a decoder config the count knows")
        return fields[key]

    family = fields.get("model_type")
    if not family:
        raise ValueError(f"model config {where!r} has no model_type: the count cannot tell which family's graph it "
                         f"prices (add one of {', '.join(FAMILIES)})")
    if family not in FAMILIES:
        raise ValueError(f"model config {where!r}: model_type {family!r} is not priced by the analytic model "
                         f"(it prices {', '.join(FAMILIES)})")
    hidden, heads = need("hidden_size"), need("num_attention_heads")
    act = fields.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"model config {where!r}: hidden_act {act!r} has no formula (SwiGLU with SiLU only)")
    experts = [key for key in ("num_experts", "num_local_experts", "n_routed_experts") if fields.get(key)]
    if experts:
        raise ValueError(f"model config {where!r}: mixture-of-experts layers ({experts[0]} = "
                         f"{fields[experts[0]]}) are not priced")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                "intermediate_size", "vocab_size"):
        value = fields.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"model config {where!r}: {key} must be a positive integer, got {value!r}")
    layer_types = set(fields.get("layer_types") or ()) - {"full_attention", "sliding_attention"}
    if layer_types:
        raise ValueError(f"model config {where!r}: layer types {sorted(layer_types)} are not priced")
    if family == "qwen2":
        qkv_bias, o_bias = True, False
    elif family == "mistral":  # MistralAttention builds every projection without bias, whatever attention_bias says
        qkv_bias = o_bias = False
    else:
        qkv_bias = o_bias = bool(fields.get("attention_bias", False))
    return ModelShape(
        hidden_size=hidden,
        num_layers=need("num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=fields.get("num_key_value_heads") or heads,
        head_dim=fields.get("head_dim") or hidden // heads,
        intermediate_size=need("intermediate_size"),
        vocab_size=need("vocab_size"),
        tie_word_embeddings=bool(fields.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=family in ("llama",) and bool(fields.get("mlp_bias", False)),
        qk_norm=family == "qwen3",
        sliding_window=_sliding_window(fields, family),
        name=str(where),
    )


def _sliding_window(fields: dict[str, Any], family: str) -> int | None:
    """The attention window when sliding-window attention is on, else None. Mistral turns it
    on by giving ``sliding_window``; Qwen2/Qwen3 also need ``use_sliding_window``; a config whose
    ``layer_types`` (transformers >= 4.53) has no ``sliding_attention`` layer keeps it off."""
    window = fields.get("sliding_window")
    if not window or (family in ("qwen2", "qwen3") and not fields.get("use_sliding_window")):
        return None
    layer_types = fields.get("layer_types")
    if layer_types and "sliding_attention" not in layer_types:  # every layer attends to all its keys
        return None
    return int(window)


def check_window(shape: ModelShape, keys: int) -> None:
    """Refuse a count in which a query attends to more than the sliding window: the model
    would do less work than the dense count says, and the count does not model the band."""
    if shape.sliding_window is not None and keys > shape.sliding_window:
        raise ValueError(f"{shape.name or 'model'}: sliding-window attention (window {shape.sliding_window}) is "
                         f"active at {keys} keys and is not priced; count at most {shape.sliding_window} tokens")
