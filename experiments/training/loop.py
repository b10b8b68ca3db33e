"""The budget-guarded LoRA training loop.

    data = prepare_data(DataConfig(), tokenizer)
    result = train(model, data, TrainConfig("lora-r4", steps=1000), "runs/lora-r4",
                   BudgetConfig(1e17, "runs/ledger.sqlite"))

``train`` injects LoRA into the model from the config (seeded, so the adapter's initial
values are reproducible), trains the adapter with Adam, and

- charges every step through ``flopcount.Budget`` *before* it runs (the global batch: per-rank
  batch × world size, ``context`` tokens each), and every validation as one forward of the
  windows it scores; when the budget refuses, it saves a checkpoint of the last completed
  step, records ``stopped`` with the reason in the ledger, and returns;
- runs exactly ``config.steps`` steps in total (earlier sessions included), resuming from the
  run directory's latest checkpoint; the data order is a pure function of the step
  (:mod:`experiments.training.batching`), so a resumed run is bit-identical to an uninterrupted one on
  CPU, and steps re-run after a crash are charged again (the ledger marks them as re-runs);
- runs under ``accelerate``: one CPU, one GPU, or several processes (``torchrun`` /
  ``accelerate launch``; gloo on CPU). Rank 0 alone holds the Budget, the ledger, the metrics
  file and the checkpoints; it broadcasts every go / stop decision.

Loss: the token-weighted mean cross-entropy over the non-padding targets of the *global*
batch. Each rank scales its sum of nats by ``world_size / global targets`` (the global count is
known on every rank from the deterministic data order), so DDP's gradient average is exactly
the gradient of the global mean, whatever the padding on each rank.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from tqdm.auto import tqdm
from transformers import get_scheduler

from experiments.training.batching import Batch, WindowOrder, windows_digest
from experiments.training.checkpoint import (
    TrainerState,
    capture_rng_state,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from experiments.training.distributed import make_accelerator, on_main, resolve_mixed_precision
from experiments.training.interrupts import INTERRUPTED, InterruptFlag, RunInterrupted
from experiments.training.validation import validate, validation_indices
from experiments.training.loss import count_targets
from experiments.training.distinct_rows import causal_lm_nats, distinct_rows_output
from experiments.training.metrics_log import METRICS_FILE, MetricsLog
from experiments.training.trackers import check_trackers_installed, open_trackers
from experiments.training.run_dir import check_resumable, config_hash, open_run_dir
from experiments.training.config import BudgetConfig, TrainConfig, TrainResult
from flopcount import Budget, BudgetExceeded, PlanDoesNotFit
from flopcount.ledger.records import Charge
from lora import LoRAConfig, inject, injected_config, lora_state_dict, trainable_parameters
from lora.adapter import base_model_info

logger = logging.getLogger(__name__)
def accumulate_gradients(model: nn.Module, batch: Batch, accelerator: Accelerator, *, global_targets: int,
                         sync: bool = True) -> torch.Tensor:
    """Forward and backward of one micro-batch on this rank; returns its summed nats (detached).

    ``global_targets``: non-padding targets in all micro-batches of the optimizer step on all
    ranks, so that the accumulated gradient, after DDP's average over ranks, is that of the
    global token-weighted mean. ``sync`` False skips DDP's gradient all-reduce (every
    micro-batch but the last of a step).
    """
    model.train()
    with (nullcontext() if sync else accelerator.no_sync(model)):
        # full-vocabulary nats; over the distinct rows of a frozen collapsed head inside distinct_rows_output
        nats, _ = causal_lm_nats(model, batch.input_ids, batch.attention_mask, batch.labels)
        accelerator.backward(nats * (accelerator.num_processes / max(global_targets, 1)))
    return nats.detach()


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, accelerator: Accelerator, *,
                   scheduler: LRScheduler | None = None, max_grad_norm: float | None = None) -> None:
    """Clip (optionally), step the optimizer and the learning-rate schedule, zero the gradients."""
    if max_grad_norm is not None:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, accelerator: Accelerator,
               *, global_targets: int, max_grad_norm: float | None = None) -> torch.Tensor:
    """One optimizer step on one micro-batch (no accumulation); returns its summed nats."""
    nats = accumulate_gradients(model, batch, accelerator, global_targets=global_targets)
    optimizer_step(model, optimizer, accelerator, max_grad_norm=max_grad_norm)
    return nats


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> LRScheduler:
    """The learning-rate schedule of ``config`` (transformers' ``get_scheduler``): constant,
    linear or cosine decay over ``steps`` optimizer steps after ``warmup_steps`` of warmup."""
    name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[config.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=config.steps)


def ensure_lora(model: nn.Module, lora: LoRAConfig) -> None:
    """Inject ``lora`` into ``model``, or check the LoRA it already carries is ``lora``; then
    check that the LoRA tensors are exactly the parameters that will be trained."""
    current = injected_config(model)
    if current is None:
        inject(model, lora)
    elif current != lora:
        raise ValueError(f"the model already carries LoRA {current}, but the training config asks for {lora}")
    extra = sorted(set(trainable_parameters(model)) - set(lora_state_dict(model)))
    if extra:
        raise ValueError(f"parameters outside the LoRA adapter require grad: {extra[:5]}; freeze them "
                         "(only the adapter is trained and charged)")


def run_identity(config: TrainConfig, data, model: nn.Module) -> dict[str, Any]:
    """The configuration a run directory and its checkpoints are tied to (JSON-ready)."""
    return {"train": config.to_dict(), "data": data.config.to_dict(), "model": base_model_info(model)}


class _Run:
    """The state of one ``train`` call; rank 0 alone has ``budget``, ``log`` and ``bar``."""

    def __init__(self, model, optimizer, scheduler: LRScheduler, accelerator: Accelerator, data, config: TrainConfig,
                 run_dir: Path, state: TrainerState, run_record: dict[str, Any], saved_step: int | None) -> None:
        self.model, self.optimizer, self.accelerator, self.config = model, optimizer, accelerator, config
        self.scheduler = scheduler
        self.run_dir, self.state, self.run_record = run_dir, state, run_record
        self.unwrapped = accelerator.unwrap_model(model)
        self.train_windows = data.train_windows(config.context)
        validates = config.eval_every > 0 and config.steps > 0
        self.val_windows = data.validation_windows(config.context) if validates else None
        self.order = WindowOrder(len(self.train_windows), state.data_order_seed)
        self.val_indices = (validation_indices(len(self.val_windows), config.eval_windows, config.seed)
                            if validates else np.empty(0, dtype=np.int64))
        self.workload = config.workload(accelerator.num_processes, eval_windows=len(self.val_indices))
        self.budget: Budget | None = None
        self.log: MetricsLog | None = None
        self.bar: tqdm | None = None
        self.saved_step = saved_step  # the step of the newest checkpoint on disk
        self.charged = 0  # FLOPs this session charged (rank 0)
        self.session: int | None = None
        self.last_charge: Charge | None = None  # rank 0: the charge paying for the current work
        self.last_loss: float | None = None
        self.started = time.perf_counter()
        self.interrupt = InterruptFlag()
        self.stopped_by_budget = False  # set when the budget refuses a charge (the run stops there)

    def interrupted(self) -> bool:
        """Whether Ctrl-C (SIGINT) came since the last step; every rank agrees (rank 0's word)."""
        flag = self.interrupt.raised
        if self.accelerator.num_processes > 1:
            flag = on_main(self.accelerator, lambda: self.interrupt.raised)
        return flag

    # -- the guard ---------------------------------------------------------------------------

    def pay(self, charge: Callable[[Budget], Charge]) -> str | None:
        """Charge on rank 0 before the work; return None to go on, or the refusal (every rank)."""
        def attempt() -> tuple[str | None, Charge | None]:
            try:
                paid = charge(self.budget)
            except BudgetExceeded as refusal:
                return (f"{refusal.scope} exhausted at {refusal.phase} step {refusal.step} (it needs "
                        f"{refusal.cost:.4g} FLOPs; {refusal.remaining:.4g} of {refusal.limit:.4g} remain)"), None
            self.charged += paid.flops
            self.session = paid.session_id
            return None, paid

        refusal, self.last_charge = on_main(self.accelerator, attempt)
        self.stopped_by_budget = refusal is not None
        return refusal

    # -- one step, one validation, one checkpoint -------------------------------------------

    def micro_batches(self, step: int) -> list[np.ndarray]:
        """Window indices (W, B) of each micro-batch of optimizer step ``step``: micro-batch
        ``i`` is position ``(step - 1) * grad_accum_steps + i + 1`` of the data order, so one
        process of batch ``W * B`` reads the same windows as ``W`` ranks of batch ``B``."""
        accum, world_size = self.config.grad_accum_steps, self.accelerator.num_processes
        first = (step - 1) * accum + 1
        return [self.order.step(first + i, self.config.batch_size, world_size) for i in range(accum)]

    def train_step(self, step: int, micro: list[np.ndarray]) -> str | None:
        """Optimizer step ``step`` over the micro-batches ``micro``, each charged before it runs;
        returns the refusal if the budget stops it (the step's gradients are then discarded)."""
        config, world_size = self.config, self.accelerator.num_processes
        labels = self.train_windows.labels
        global_targets = sum(count_targets(labels[indices.ravel()]) for indices in micro)
        nats, tokens, flops = torch.zeros(()), 0, 0
        for number, indices in enumerate(micro, start=1):
            micro_tokens = int(self.train_windows.attention_mask[indices.ravel()].sum())
            refusal = self.pay(lambda budget: budget.charge_training_step(
                batch=self.workload.batch, seq_len=self.workload.seq_len, step=step, tokens=micro_tokens,
                payload={"micro_batch": number, "of": len(micro)} if len(micro) > 1 else None))
            if refusal:
                self.optimizer.zero_grad(set_to_none=True)
                return refusal
            flops += self.last_charge.flops if self.last_charge is not None else 0
            tokens += micro_tokens
            batch = Batch.from_windows(self.train_windows, indices[self.accelerator.process_index],
                                       self.accelerator.device)
            nats = nats + accumulate_gradients(self.model, batch, self.accelerator, global_targets=global_targets,
                                               sync=number == len(micro)).cpu()
        if world_size > 1:
            nats = self.accelerator.reduce(nats.to(self.accelerator.device), "sum").cpu()
        if not torch.isfinite(nats):  # the same verdict on every rank: nats is the global sum
            self.optimizer.zero_grad(set_to_none=True)
            return (f"non-finite training loss at step {step} (learning rate too high?); the adapter of step "
                    f"{self.state.step}, the last finite one, is kept")
        lr = self.scheduler.get_last_lr()[0]
        optimizer_step(self.model, self.optimizer, self.accelerator, scheduler=self.scheduler,
                       max_grad_norm=config.max_grad_norm)
        self.last_loss = float(nats) / max(global_targets, 1)
        self.state = replace(self.state, step=step)
        if self.log is not None:
            paid = self.last_charge
            self.log.write("train", step=step, loss=self.last_loss, lr=lr, tokens=tokens,
                           micro_batches=len(micro), flops_step=flops, flops_spent_total=self.budget.spent,
                           rerun=paid.is_rerun, elapsed_s=round(time.perf_counter() - self.started, 6),
                           session=paid.session_id)
        return None

    def validate(self, step: int) -> None:
        with self.accelerator.autocast():
            metrics = validate(self.unwrapped, self.val_windows, self.val_indices, self.config.batch_size,
                               self.accelerator)
        loss = metrics.cross_entropy_nats
        best = self.state.best_val_loss
        if best is None or loss < best:
            self.state = replace(self.state, best_val_loss=loss, best_val_step=step)
        self.state = replace(self.state, last_val_loss=loss)
        if self.log is not None:
            self.log.write("validation", step=step, val_loss=loss, val_ppl=metrics.perplexity,
                           val_tokens=metrics.n_tokens, flops=self.last_charge.flops,
                           flops_spent_total=self.budget.spent, session=self.last_charge.session_id)

    def save(self) -> None:
        """Checkpoint the last completed step (once per step); every rank must call it."""
        if self.saved_step == self.state.step:
            return
        rng_states = gather_object([capture_rng_state()])
        if self.accelerator.is_main_process:
            save_checkpoint(self.run_dir, self.state, model=self.unwrapped, optimizer=self.optimizer,
                            scheduler=self.scheduler, rng_states=rng_states, run_config=self.run_record,
                            keep=self.config.keep_checkpoints)
            self.budget.mark_checkpoint(self.state.step)  # the work up to here is kept: not lost in the audit
        self.accelerator.wait_for_everyone()
        self.saved_step = self.state.step

    def show(self) -> None:
        if self.bar is None:
            return
        val = "-" if self.state.last_val_loss is None else f"{self.state.last_val_loss:.4f}"
        self.bar.set_postfix_str(f"loss {self.last_loss:.4f} val {val} "
                                 f"FLOPs {self.budget.spent:.3g}/{self.budget.limit:.3g}", refresh=False)
        self.bar.update(self.state.step - self.bar.n)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> str | None:
        """Steps ``state.step + 1 .. config.steps``; returns the stop reason, or None when done."""
        config = self.config
        validates = self.val_windows is not None
        val_tokens = int(self.val_windows.attention_mask[self.val_indices].sum()) if validates else 0
        for step in range(self.state.step + 1, config.steps + 1):
            if self.interrupted():
                return f"{INTERRUPTED} after step {self.state.step}"
            refusal = self.train_step(step, self.micro_batches(step))
            if refusal:
                return refusal
            if self.workload.validates_after(step):
                refusal = self.pay(lambda budget: budget.charge_forward(
                    batch=self.workload.eval_windows, seq_len=self.workload.seq_len, step=step, tokens=val_tokens))
                if refusal:
                    return refusal
                self.validate(step)
            if step % config.checkpoint_every == 0 or step == config.steps:
                self.save()
            self.show()
        return None


def _preflight(run: _Run, require_fit: bool) -> None:
    """Say (or, with ``require_fit``, refuse) when the rest of the run cannot all be paid
    (``Budget.preflight``: the steps after the last checkpoint and their validations)."""
    try:
        run.budget.preflight(run.workload, done=run.state.step)
    except PlanDoesNotFit as refusal:
        if require_fit:
            raise
        logger.warning("%s; the run will stop there", refusal)


def train(model: nn.Module, data, config: TrainConfig, run_dir: str | Path, budget: BudgetConfig, *,
          accelerator: Accelerator | None = None, progress: bool = True) -> TrainResult:
    """Train a LoRA adapter on ``data`` (an ``ExperimentData``) under ``budget``; see the module
    docstring. ``model`` is the base causal LM (LoRA is injected from ``config``; an already
    injected model must carry the same LoRA). ``run_dir`` holds the run's ``run_config.json``,
    ``metrics.jsonl`` and ``checkpoints/``; an existing run directory of the same config is
    resumed from its latest checkpoint. Every rank must call ``train``."""
    if budget.ledger is None:
        raise ValueError("train needs a BudgetConfig with a ledger path")
    if config.experiment is None or config.steps is None:
        raise ValueError(f"train needs a TrainConfig with an experiment name and steps (TrainConfig.for_run), got "
                         f"experiment={config.experiment!r}, steps={config.steps!r}")
    check_trackers_installed(config.report_to)
    config.check_context(model.config)
    accelerator = accelerator or make_accelerator(mixed_precision=config.mixed_precision)
    precision = resolve_mixed_precision(config.mixed_precision, cpu=accelerator.device.type == "cpu")
    if accelerator.mixed_precision != precision:
        raise ValueError(f"the accelerator autocasts {accelerator.mixed_precision!r} but the run asks for "
                         f"{precision!r}: pass make_accelerator(mixed_precision={config.mixed_precision!r})")
    rank, world_size = accelerator.process_index, accelerator.num_processes
    run_dir = Path(run_dir)
    set_seed(config.seed)
    ensure_lora(model, config.lora_config())
    record = run_identity(config, data, model)
    with ExitStack() as held:  # the run directory's lock (main process), until the run has ended
        checkpoint = on_main(accelerator, lambda: open_run_dir(run_dir, record, held))

        optimizer = torch.optim.Adam(trainable_parameters(model).values(), lr=config.learning_rate)
        model, optimizer = accelerator.prepare(model, optimizer)
        scheduler = make_scheduler(optimizer, config)  # stepped once per optimizer step, on every rank
        fresh = TrainerState(step=0, seed=config.seed, data_order_seed=config.seed, world_size=world_size,
                             config_hash=config_hash(record),
                             train_windows_digest=windows_digest(data.train_windows(config.context)))
        if checkpoint is not None:
            check_resumable(checkpoint.state, fresh, checkpoint.path)
            load_checkpoint(checkpoint, model=accelerator.unwrap_model(model), optimizer=optimizer, scheduler=scheduler,
                            rank=rank)
        run = _Run(model, optimizer, scheduler, accelerator, data, config, run_dir,
                   fresh if checkpoint is None else checkpoint.state,
                   record, saved_step=None if checkpoint is None else checkpoint.step)

        with ExitStack() as stack:
            stack.enter_context(distinct_rows_output(run.unwrapped))  # exact, cheaper loss for a collapsed frozen head

            def open_guard() -> None:
                run.budget = stack.enter_context(Budget(
                    budget.limit, budget.ledger, config.experiment, config.count_setup(run.unwrapped.config,
                                                                                       budget.convention),
                    config={**record, "world_size": world_size, "run_dir": str(run_dir.resolve())},
                    synchronous=budget.synchronous, experiment_limit=budget.experiment_limit,
                ))  # fmt: skip
                _preflight(run, budget.require_fit)
                run.budget.mark_checkpoint(run.state.step)  # resumed from here (0: nothing saved yet)
                trackers = open_trackers(config.report_to, config.experiment, run_dir / "trackers", record)
                run.log = stack.enter_context(MetricsLog(run_dir / METRICS_FILE, trackers))
                if progress:
                    run.bar = stack.enter_context(tqdm(total=config.steps, initial=run.state.step,
                                                       desc=config.experiment, unit="step"))

            on_main(accelerator, open_guard)
            with run.interrupt:
                stop_reason = run.run()
            run.save()
            if stop_reason is not None:
                on_main(accelerator, lambda: run.budget.finish("stopped", stop_reason))
            charged, session = on_main(accelerator, lambda: (run.charged, run.session))
    if stop_reason is not None and stop_reason.startswith(INTERRUPTED):
        raise RunInterrupted(
            f"{config.experiment}: {stop_reason}; checkpoint {checkpoint_path(run_dir, run.state.step)}",
            step=run.state.step)

    state = run.state
    return TrainResult(
        steps_done=state.step,
        status="stopped" if stop_reason is not None else "finished",
        stop_reason=stop_reason,
        final_train_loss=run.last_loss,
        last_val_loss=state.last_val_loss,
        last_val_perplexity=None if state.last_val_loss is None else math.exp(state.last_val_loss),
        best_val_loss=state.best_val_loss,
        best_val_step=state.best_val_step,
        flops_charged=charged,
        checkpoint=checkpoint_path(run_dir, state.step),
        metrics_path=run_dir / METRICS_FILE,
        run_dir=run_dir,
        resumed_from=None if checkpoint is None else checkpoint.step,
        session=session,
        stopped_by_budget=run.stopped_by_budget,
    )
