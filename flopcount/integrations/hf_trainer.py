"""The FLOP guard inside HF ``Trainer`` (and TRL's ``SFTTrainer``): ``BudgetCallback``.

    setup = CountSetup.from_lora(model.config, lora_config_from_peft(peft_model))
    callback = BudgetCallback(1e17, "runs/ledger.sqlite", "sft-r8", setup)
    trainer = Trainer(model, args, train_dataset=..., callbacks=[callback])
    trainer.floating_point_ops = callback.floating_point_ops  # total_flos = the analytic count
    trainer.train()

The callback puts a :class:`~flopcount.integrations.ForwardGuard` on the Trainer's model when
the Trainer is built: every forward, training or evaluation (any ``eval_strategy``,
``eval_on_start``, ``evaluate()``, ``predict()``), is priced from its real batch and charged
before it runs, and one the budget cannot pay is refused before it computes (``train()``
raises ``BudgetExceeded``; no forward runs unpaid). The Trainer checks a stop only after a
step, so the callback also stops training cleanly, with a checkpoint, after a step when the
costliest step seen so far (and a scheduled evaluation, at the cost of the last one) would no
longer fit. Under DDP every rank's forwards are charged together by rank 0, which also makes
the stop decisions for every rank. A resumed Trainer charges from its restored ``global_step`` on (the steps lost
after the last checkpoint are marked as re-runs); a fresh start under an experiment name that
already trained to an end is refused before any forward.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from flopcount.budget import Budget
from flopcount.count.setup import CountSetup
from flopcount.integrations.forward_guard import ForwardGuard
from flopcount.integrations.forward_work import read_forward
from flopcount.integrations.ranks import on_rank_zero, world
from flopcount.integrations.trainer_run import refuse_fresh_start_over_finished_run


class BudgetCallback(TrainerCallback):
    """Charge every forward of a ``Trainer``'s model to a FLOP ledger before it runs.

    Args:
        limit: the budget in FLOPs for every experiment sharing ``ledger``.
        ledger: path of the SQLite ledger (created if missing).
        experiment: this run's name in the ledger (a resume continues it).
        setup: the ``CountSetup`` of the trained model (or a model alone: no LoRA).
        seq_len: optional planned tokens per sequence, recorded with the run as a planning
            estimate; charges always use the real batches.
        eval_examples: accepted for code written for earlier versions, which charged evaluations
            from it; evaluations are now charged from their real batches, so it is ignored (with a
            ``DeprecationWarning``).
    """

    def __init__(self, limit: int | float, ledger: str | os.PathLike[str], experiment: str, setup: CountSetup | Any,
                 *, seq_len: int | None = None, eval_examples: int | None = None) -> None:
        if eval_examples is not None:
            warnings.warn("BudgetCallback(eval_examples=...) is ignored: every evaluation is charged from its real "
                          "batches", DeprecationWarning, stacklevel=2)
        self.guard = ForwardGuard(limit, ledger, experiment, setup, step_of=self._step_of)
        self.setup = self.guard.setup
        self.seq_len = seq_len
        self.stop_reason: str | None = None
        self._state: TrainerState | None = None
        self._training = False
        self._step_start = 0  # FLOPs charged when the current optimizer step began
        self._costliest_step = 0  # FLOPs of the costliest optimizer step so far
        self._evaluated = 0  # validation FLOPs charged up to the last evaluation's end
        self._last_eval = 0  # FLOPs of the costliest whole evaluation

    @property
    def budget(self) -> Budget:
        """The guard's ``Budget`` (the ledger session)."""
        return self.guard.budget

    # -- the analytic count the Trainer can use for total_flos ----------------------------------

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """FLOPs of one training micro-batch, exactly what the guard charged for it: set
        ``trainer.floating_point_ops`` to this and ``state.total_flos`` is the ledger's training
        total (uneven gradient accumulation included)."""
        return self.guard.cost(read_forward((), inputs, grad=True))

    def _step_of(self, phase: str) -> int:
        step = self._state.global_step if self._state is not None else 0
        return step + 1 if phase == "train" else step

    # -- the Trainer's events --------------------------------------------------------------------

    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._state = state
        if kwargs.get("model") is not None:
            self.guard.attach(kwargs["model"])
        return control

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._state, self._training, self.stop_reason = state, True, None
        if kwargs.get("model") is not None:
            self.guard.attach(kwargs["model"])
        on_rank_zero(lambda: self._open_session(args, state))  # a refusal raises on every rank
        self._step_start = self._charged()
        return control

    def _open_session(self, args: TrainingArguments, state: TrainerState) -> None:
        self.guard.close()  # a session left open by evaluate() before train()
        refuse_fresh_start_over_finished_run(self.budget, state.global_step)
        self.budget.config = {"trainer": "transformers.Trainer", "planned_seq_len": self.seq_len,
                              "per_device_train_batch_size": args.per_device_train_batch_size,
                              "gradient_accumulation_steps": args.gradient_accumulation_steps,
                              "processes": world()[1]}
        self.guard.refusal = None
        self.guard.open()
        if state.global_step > 0 or getattr(args.save_strategy, "value", args.save_strategy) != "no":
            self.budget.mark_checkpoint(state.global_step)  # a run that keeps checkpoints (or resumed from one)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._step_start = self._charged()
        return control

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._costliest_step = max(self._costliest_step, self._charged() - self._step_start)
        stop, skip_evaluation = on_rank_zero(lambda: self._decide(state, control.should_evaluate))
        if stop:  # rank 0 decides (it holds the ledger), every rank acts
            self.stop_reason = stop
            control.should_training_stop = True
            control.should_save = state.global_step > 0
            control.should_evaluate = control.should_evaluate and not skip_evaluation
        return control

    def _decide(self, state: TrainerState, evaluates: bool) -> tuple[str | None, bool]:
        """Whether to stop after this step (why) and to skip its scheduled evaluation."""
        evaluation = self._last_eval if evaluates else 0
        if evaluation and not self.guard.can_pay(evaluation):
            return self._why(state, f"the scheduled evaluation at step {state.global_step} needs about "
                                    f"{evaluation:.4g} FLOPs (the last one's cost)"), True
        if state.global_step < state.max_steps and not self.guard.can_pay(evaluation + self._costliest_step):
            return self._why(state, f"step {state.global_step + 1} may need {self._costliest_step:.4g} FLOPs "
                                    "(the costliest step so far)"), False
        return None, False

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        validation = self.guard.charged.get("validation", 0)
        self._last_eval = max(self._last_eval, validation - self._evaluated)  # this evaluation's FLOPs
        self._evaluated = validation
        self._close_outside_training()
        return control

    def on_predict(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._close_outside_training()
        return control

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if state.is_world_process_zero and self.guard.is_open:
            self.budget.mark_checkpoint(state.global_step)
        return control

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._training = False
        if state.is_world_process_zero:
            self.guard.close("stopped" if self.stop_reason else "finished", self.stop_reason)
        return control

    # -- internals ---------------------------------------------------------------------------------

    def _charged(self) -> int:
        """FLOPs the guard has charged so far (rank 0: every rank's forwards)."""
        return sum(self.guard.charged.values())

    def _why(self, state: TrainerState, why: str) -> str:
        return f"budget exhausted after step {state.global_step}: {why}, {self.budget.remaining:.4g} FLOPs remain"

    def _close_outside_training(self) -> None:
        """End the session an evaluation outside ``train()`` opened (``evaluate()`` before or
        after it, or after a refusal ended it)."""
        if self._training and self.guard.refusal is None:
            return
        status = "stopped" if (self.stop_reason or self.guard.refusal) else "finished"
        self.guard.close(status, self.stop_reason or self.guard.refusal)
