"""The FLOP guard in other people's training code (needs transformers): ``BudgetCallback`` for
HF ``Trainer`` and TRL's ``SFTTrainer``."""

from flopcount.integrations.hf_trainer import BudgetCallback

__all__ = ["BudgetCallback"]
