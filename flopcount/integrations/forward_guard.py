"""``ForwardGuard``: a budget on the model itself, for any training or inference loop.

    guard = ForwardGuard(1e17, "runs/ledger.sqlite", "my-run", setup).attach(model)
    ...                       # HF Trainer, TRL, accelerate or a plain PyTorch loop
    guard.close()             # or ``with guard:``; an exit or SIGTERM closes it too

A forward pre-hook reads every call's real input shapes (:func:`read_forward`), prices them
with the analytic count (a forward with gradients: ``training_step_flops``, its backward
included; without: ``forward_flops``) and commits the charge to the ledger *before* the
forward runs. When the budget cannot pay, the hook raises :class:`BudgetExceeded` and the
forward never runs; the ledger session is closed as ``stopped`` with the reason. A forward
whose size cannot be read is refused too (:class:`UnpricedForward`): nothing runs unpaid.

Replicas of ``nn.DataParallel`` share the hook and each charges its own shard (the ledger
is written under a lock). Under DDP (several processes), every forward's shapes are gathered
from all ranks and rank 0 charges their sum before any rank computes; a refusal stops every rank.
Steps: ``step_of(phase)`` numbers a charge; by default every training forward is a step, and
evaluation or generation is charged at the last step.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from flopcount.budget import Budget
from flopcount.count.setup import CountSetup, as_setup
from flopcount.integrations.forward_work import ForwardWork, read_forward
from flopcount.integrations.model_lora import check_model_lora
from flopcount.integrations.ranks import gathered, on_rank_zero
from flopcount.integrations.session_end import SessionEnd
from flopcount.ledger.errors import BudgetExceeded


class ForwardGuard:
    """Charge every forward of the attached model to a FLOP ledger before it runs.

    Args:
        limit: the budget in FLOPs for every experiment sharing ``ledger``.
        ledger: path of the SQLite ledger (created if missing).
        experiment: this run's name in the ledger.
        setup: the ``CountSetup`` of the guarded model (or a model alone: no LoRA).
        config: the run's configuration (JSON), recorded with the experiment.
        step_of: the step a charge of ``phase`` is recorded at (default: training forwards
            are numbered 1, 2, ...; other phases take the last training step).
        ranks: in a run of several processes, charge every rank's forward together (rank 0
            holds the ledger): the ranks must run their forwards in step, as DDP training and
            the Trainer's evaluation do. False: each process charges its own forwards (give
            each rank its own experiment name).
    """

    def __init__(self, limit: int | float, ledger: str | os.PathLike[str], experiment: str, setup: CountSetup | Any,
                 *, config: dict[str, Any] | None = None, step_of: Callable[[str], int] | None = None,
                 ranks: bool = True) -> None:
        self.setup = as_setup(setup)
        self.budget = Budget(limit, ledger, experiment, self.setup, config=config)
        self.step_of = step_of or self._own_step
        self.ranks = ranks
        self.refusal: str | None = None  # why the last refused forward was refused
        self.forwards = 0  # forwards charged (and so allowed to run)
        self.charged: dict[str, int] = {}  # FLOPs this guard charged, by phase (rank 0: every rank's)
        self._training_forwards = 0
        self._lock = threading.RLock()
        self._costs: dict[ForwardWork, int] = {}
        self._handles: list[tuple[int, Any]] = []
        self.busy: int | None = None  # the thread (ident) writing a charge to the ledger
        self._end = SessionEnd(self)

    # -- attaching ---------------------------------------------------------------------------

    def attach(self, model: nn.Module) -> ForwardGuard:
        """Guard ``model``'s forward (once; a second attach to the same model is a no-op). The
        LoRA the model carries must be the setup's (:func:`check_model_lora`). The hook goes on
        the module that computes (:func:`computing_module`): a peft model's ``generate`` calls
        its base model's forward, not its own."""
        check_model_lora(model, self.setup)
        runs = computing_module(model)
        if any(module_id == id(runs) for module_id, _ in self._handles):
            return self
        handle = runs.register_forward_pre_hook(self._before_forward, with_kwargs=True, prepend=True)
        self._handles.append((id(runs), handle))
        return self

    def detach(self) -> None:
        """Remove the hook from every guarded module (the session stays as it is)."""
        for _, handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- the session -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether a ledger session is open (between the first charge and :meth:`close`)."""
        return self.budget._ledger is not None

    def open(self) -> None:
        """Open the ledger session now (the first charge opens it otherwise)."""
        with self._lock:
            if not self.is_open:
                self.budget.__enter__()
                self._end.arm()

    def close(self, status: str = "finished", reason: str | None = None) -> None:
        """End the open session (``finished``, ``stopped`` or ``failed``, with ``reason``)."""
        with self._lock:
            if not self.is_open:
                return
            try:
                if not self.budget._finished:
                    self.budget.finish(status, reason)
            finally:
                self.budget.__exit__(None, None, None)
                self._end.disarm()

    def __enter__(self) -> ForwardGuard:
        self.open()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, traceback: object) -> None:
        if exc is None:
            self.close("finished" if self.refusal is None else "stopped", self.refusal)
        elif isinstance(exc, (BudgetExceeded, KeyboardInterrupt)):
            self.close("stopped", self.refusal or type(exc).__name__)
        else:
            self.close("failed", f"{type(exc).__name__}: {exc}")

    # -- charging ----------------------------------------------------------------------------

    def cost(self, work: ForwardWork) -> int:
        """FLOPs of ``work`` under the guard's setup (memoised)."""
        if work not in self._costs:
            self._costs[work] = work.flops(self.setup)
        return self._costs[work]

    def charge(self, work: ForwardWork) -> None:
        """Commit ``work`` to the ledger, or close the session as stopped and raise
        ``BudgetExceeded`` (nothing recorded). In a run of several processes (``ranks``), the
        forwards every rank is about to run are gathered and rank 0 charges their sum."""
        cost = self.cost(work)  # a shape the count refuses raises here, before anything is charged
        loss = self.budget.loss_flops(work.phase, work.batch, work.seq_len)
        share = (work.phase, cost, work.tokens, loss, f"{work.batch} x {work.seq_len}")
        in_step = self.ranks and threading.current_thread() is threading.main_thread()
        shares = gathered(share) if in_step else [share]
        try:
            on_rank_zero(lambda: self._commit(shares)) if in_step else self._commit(shares)
        finally:
            self._end.deliver_pending()
        self.forwards += 1
        self._training_forwards += work.phase == "train"

    def _commit(self, shares: list[tuple[str, int, int, int, str]]) -> None:
        """Charge the forwards of ``shares`` (one per rank) as one charge."""
        phase = shares[0][0]
        cost, tokens, loss = (sum(share[i] for share in shares) for i in (1, 2, 3))
        with self._lock:
            self.open()
            step = self.step_of(phase)
            self.busy = threading.get_ident()
            try:
                self.budget.charge(phase, cost, step=step, tokens=tokens, payload=self.budget._with_loss(None, loss))
            except BudgetExceeded as error:
                self.refusal = (f"{error.scope} exhausted at {error.phase} step {error.step} (a forward of "
                                f"{' + '.join(share[4] for share in shares)} tokens needs {error.cost:.4g} FLOPs; "
                                f"{error.remaining:.4g} remain)")
                self.busy = None
                self.close("stopped", self.refusal)
                raise
            finally:
                self.busy = None
            self.charged[phase] = self.charged.get(phase, 0) + cost

    def can_pay(self, flops: int) -> bool:
        """Whether ``flops`` fit what remains of the budget (and of the experiment's cap) now."""
        with self._lock:
            self.open()
            return self.budget.fits_experiment_cap(flops) and self.budget.can_afford(flops)

    def _own_step(self, phase: str) -> int:
        return self._training_forwards + (phase == "train")

    def _before_forward(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.charge(read_forward(args, kwargs, grad=torch.is_grad_enabled()))


def computing_module(model: nn.Module) -> nn.Module:
    """The module whose forward every call of ``model`` runs: a peft ``PeftModel``'s base causal LM
    (its ``forward`` and its ``generate`` both reach it; ``generate`` bypasses the wrapper's own
    forward), ``model`` itself otherwise."""
    while hasattr(model, "get_base_model") and model.get_base_model() is not model:
        model = model.get_base_model()
    return model
