"""The FLOP guard in other people's training code (needs torch; ``BudgetCallback`` needs
transformers): ``ForwardGuard`` on any model, ``BudgetCallback`` for HF ``Trainer`` and TRL's
``SFTTrainer``."""

from flopcount.integrations.forward_guard import ForwardGuard
from flopcount.integrations.forward_work import ForwardWork, UnpricedForward, read_forward
from flopcount.integrations.hf_trainer import BudgetCallback
from flopcount.integrations.trainer_run import ExperimentAlreadyRun

__all__ = ["BudgetCallback", "ExperimentAlreadyRun", "ForwardGuard", "ForwardWork", "UnpricedForward",
           "read_forward"]
