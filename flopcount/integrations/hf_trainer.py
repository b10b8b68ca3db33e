"""The FLOP guard inside HF ``Trainer`` (and TRL's ``SFTTrainer``): ``BudgetCallback``.

    setup = CountSetup.from_lora(model.config, lora_config_from_peft(peft_model))
    callback = BudgetCallback(1e17, "runs/ledger.sqlite", "sft-r8", setup, seq_len=512)
    trainer = Trainer(model, args, train_dataset=..., callbacks=[callback])
    trainer.floating_point_ops = callback.floating_point_ops  # total_flos = the analytic count
    trainer.train()

Every optimizer step is charged *before* it runs: the first at ``on_train_begin``, each next one
at the ``on_step_end`` of the step before, when the Trainer has not yet fetched its batches. A
step costs ``gradient_accumulation_steps`` micro-batches of the *global* batch
(``per_device_train_batch_size × world size``) sequences of ``seq_len`` tokens (pad to that
length; shorter sequences make the charge an upper bound), priced by the ``CountSetup``. When
the next step (or a scheduled evaluation) cannot be paid, the callback stops training cleanly
(``should_training_stop``, with a checkpoint), and the ledger records why. Evaluation is charged
as one forward of ``seq_len`` tokens per evaluation example, before it runs. A resumed Trainer
charges from its restored ``global_step`` on: nothing is charged twice, except the steps lost
after the last checkpoint, which the ledger marks as re-runs. Rank 0 alone holds the ledger and
hands its decision to every rank.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from flopcount.budget import Budget
from flopcount.count.engine import forward_flops, training_step_flops
from flopcount.count.setup import CountSetup, as_setup
from flopcount.ledger.errors import BudgetExceeded


class BudgetCallback(TrainerCallback):
    """Charge a ``Trainer``'s steps and evaluations to a FLOP ledger before they run.

    Args:
        limit: the budget in FLOPs for every experiment sharing ``ledger``.
        ledger: path of the SQLite ledger (created if missing).
        experiment: this run's name in the ledger (a resume continues it).
        setup: the ``CountSetup`` of the trained model (or a model alone: no LoRA).
        seq_len: tokens of every training and evaluation sequence.
        eval_examples: sequences one evaluation scores (the Trainer's ``eval_dataset`` size),
            needed to charge evaluations before they run.
    """

    def __init__(self, limit: int | float, ledger: str | os.PathLike[str], experiment: str, setup: CountSetup | Any,
                 *, seq_len: int, eval_examples: int | None = None) -> None:
        self.setup = as_setup(setup)
        self.seq_len = seq_len
        self.eval_examples = eval_examples
        self.budget = Budget(limit, ledger, experiment, self.setup)
        self.stop_reason: str | None = None
        self._open = False

    # -- the analytic count the Trainer can use for total_flos ----------------------------------

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """FLOPs of one micro-batch on this process, ``training_step_flops`` of its shape: set
        ``trainer.floating_point_ops`` to this and ``state.total_flos`` is the analytic count
        (summed over micro-batches and processes, as the Trainer sums it)."""
        batch, seq_len = inputs["input_ids"].shape
        return training_step_flops(self.setup, int(batch), int(seq_len))

    def step_cost(self, args: TrainingArguments) -> int:
        """FLOPs of one optimizer step: every micro-batch of the global batch."""
        global_batch = args.per_device_train_batch_size * max(args.world_size, 1)
        return args.gradient_accumulation_steps * training_step_flops(self.setup, global_batch, self.seq_len)

    # -- the Trainer's events --------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.is_world_process_zero and not self._open:
            self.budget.config = {"trainer": "transformers.Trainer", "seq_len": self.seq_len,
                                  "per_device_train_batch_size": args.per_device_train_batch_size,
                                  "gradient_accumulation_steps": args.gradient_accumulation_steps,
                                  "world_size": args.world_size}
            self.budget.__enter__()
            self._open = True
        self._pay_next_step(args, state, control)
        return control

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if control.should_evaluate:
            self._pay_evaluation(state, control, kwargs.get("eval_dataloader"))
        if state.global_step < state.max_steps and not control.should_training_stop:
            self._pay_next_step(args, state, control)
        return control

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.is_world_process_zero and self._open:
            self.budget.finish("stopped" if self.stop_reason else "finished", self.stop_reason)
            self.budget.__exit__(None, None, None)
            self._open = False
        return control

    # -- charging ----------------------------------------------------------------------------------

    def _pay_next_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl) -> None:
        step, cost = state.global_step + 1, self.step_cost(args)
        tokens = args.gradient_accumulation_steps * args.per_device_train_batch_size * max(args.world_size, 1) \
            * self.seq_len
        self._pay(state, control, lambda: self.budget.charge("train", cost, step=step, tokens=tokens))

    def _pay_evaluation(self, state: TrainerState, control: TrainerControl, dataloader) -> None:
        examples = self.eval_examples
        if examples is None and dataloader is not None and hasattr(dataloader, "dataset"):
            examples = len(dataloader.dataset)
        if examples is None:
            raise ValueError("BudgetCallback: the Trainer evaluates, but the callback does not know how many "
                             "sequences an evaluation scores; pass eval_examples=len(eval_dataset)")
        cost = examples * forward_flops(self.setup, self.seq_len).total
        self._pay(state, control, lambda: self.budget.charge("validation", cost, step=state.global_step,
                                                             tokens=examples * self.seq_len))

    def _pay(self, state: TrainerState, control: TrainerControl, charge) -> None:
        """Charge on rank 0; on a refusal every rank stops, with a checkpoint of the last step."""
        refusal = None
        if state.is_world_process_zero:
            try:
                charge()
            except BudgetExceeded as error:
                refusal = f"{error.scope} exhausted at {error.phase} step {error.step} (the next charge needs " \
                          f"{error.cost:.4g} FLOPs; {error.remaining:.4g} remain)"
        refusal = _from_rank_zero(refusal)
        if refusal:
            self.stop_reason = refusal
            control.should_training_stop = True
            control.should_evaluate = False
            control.should_save = state.global_step > 0


def _from_rank_zero(value: Any) -> Any:
    """``value`` of rank 0 on every process (itself when not distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
