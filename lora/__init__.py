"""LoRA for Hugging Face causal LMs: the layer, injection with a report, adapter files.

    report = lora.inject(model, r=4)                  # q_proj, v_proj; everything else frozen
    optimizer = torch.optim.Adam(lora.trainable_parameters(model).values(), lr=1e-5)
    lora.save_adapter(model, "runs/adapter")          # adapter.safetensors + adapter_config.json
    lora.load_adapter(fresh_model, "runs/adapter")    # injects, then loads strictly
"""

from .adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, load_adapter, read_adapter_config, save_adapter
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

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "DEFAULT_TARGETS",
    "InjectionReport",
    "LoRAConfig",
    "LoRALinear",
    "ParameterBlock",
    "adapter_shapes",
    "describe",
    "inject",
    "injected_config",
    "load_adapter",
    "lora_state_dict",
    "read_adapter_config",
    "save_adapter",
    "trainable_parameters",
]
