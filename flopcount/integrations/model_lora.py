"""The LoRA a guarded model really carries must be the LoRA its ``CountSetup`` prices.

A peft model (``PeftModel``, or a transformers model with peft adapters loaded) is read with
:func:`lora.lora_config_from_peft`, which refuses by name what the count cannot price (LoRA on
the embedding, several active adapters); a model injected by :func:`lora.inject` is read with
:func:`lora.injected_config`. A setup that prices another rank, other targets or no LoRA at all
is refused before the first forward: the charges would not be the work.
"""

from __future__ import annotations

from torch import nn

from flopcount.count.setup import CountSetup
from lora import injected_config, lora_config_from_peft


def check_model_lora(model: nn.Module, setup: CountSetup) -> None:
    """Raise ``ValueError`` unless ``model``'s LoRA (rank, targets, lm_head bias) is ``setup``'s."""
    carried = None
    if getattr(model, "peft_config", None):
        carried = lora_config_from_peft(model)
    elif injected_config(model) is not None:
        carried = injected_config(model)
    rank, targets = (carried.r, tuple(carried.targets)) if carried is not None else (0, ())
    head_bias = bool(carried is not None and carried.lm_head_bias)
    if (rank, set(targets), head_bias) != (setup.lora_rank, set(setup.lora_targets), setup.lm_head_bias):
        model_says = f"LoRA r={rank} on {', '.join(targets)}" if rank else "no LoRA"
        setup_says = f"LoRA r={setup.lora_rank} on {', '.join(setup.lora_targets)}" if setup.lora_rank else "no LoRA"
        raise ValueError(f"the guarded model carries {model_says}{' and an lm_head bias' if head_bias else ''} but "
                         f"the CountSetup prices {setup_says}{' and an lm_head bias' if setup.lm_head_bias else ''}: "
                         "build it with CountSetup.from_lora(model.config, lora_config_from_peft(model))")
