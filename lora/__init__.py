"""LoRA for Hugging Face causal LMs: the layer, injection with a report, adapter files, peft interop.

    report = lora.inject(model, r=4)                  # q_proj, v_proj; everything else frozen
    optimizer = torch.optim.Adam(lora.trainable_parameters(model).values(), lr=1e-5)
    lora.save_adapter(model, "runs/adapter")          # peft's files + llmtime_adapter.json
    lora.load_adapter(fresh_model, "runs/adapter")    # injects, then loads strictly (ours, peft's, or v1)
    peft.PeftModel.from_pretrained(base, "runs/adapter")  # the same logits
    lora.lora_config_from_peft(peft_model_or_config)  # a LoRAConfig from peft's rank, alpha, targets
"""

from .adapter import StoredAdapter, load_adapter, read_adapter, read_adapter_config, save_adapter
from .adapter_files import (
    ADAPTER_CONFIG,
    ADAPTER_METADATA,
    ADAPTER_WEIGHTS,
    LEGACY_WEIGHTS,
    LM_HEAD_BIAS_WEIGHTS,
    peft_key,
)
from .inject import (
    DEFAULT_TARGETS,
    InjectionReport,
    LoRAConfig,
    ParameterBlock,
    adapter_shapes,
    describe,
    inject,
    injected_config,
    lora_state_dict,
    trainable_parameters,
)
from .layer import LoRALinear
from .peft_config import COUNTABLE_TARGETS, lora_config_from_peft, peft_adapter_config

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_METADATA",
    "ADAPTER_WEIGHTS",
    "COUNTABLE_TARGETS",
    "DEFAULT_TARGETS",
    "LEGACY_WEIGHTS",
    "LM_HEAD_BIAS_WEIGHTS",
    "InjectionReport",
    "LoRAConfig",
    "LoRALinear",
    "ParameterBlock",
    "StoredAdapter",
    "adapter_shapes",
    "describe",
    "inject",
    "injected_config",
    "load_adapter",
    "lora_config_from_peft",
    "lora_state_dict",
    "peft_adapter_config",
    "peft_key",
    "read_adapter",
    "read_adapter_config",
    "save_adapter",
    "trainable_parameters",
]
