"""``Budget``: the context manager that guards every FLOP an experiment spends.

Usage::

    setup = flopcount.CountSetup.of("qwen2.5-0.5b", "coursework", lora_rank=4)
    with flopcount.Budget(1e17, "runs/ledger.sqlite", "lora-r4-lr1e-4", setup) as budget:
        budget.preflight(flopcount.TrainingWorkload(steps=10_000, batch=4, seq_len=512))
        for step in range(start_step, steps):
            if not budget.can_afford(budget.training_step_cost(4, 512)):
                save_checkpoint(step)
                budget.finish("stopped", f"budget exhausted at step {step}")
                break
            budget.charge_training_step(batch=4, seq_len=512, step=step)  # before the work
            train_step()

Costs come from the analytic model (:func:`flopcount.training_step_flops` and friends),
never from timing. A charge is committed to the ledger *before* the work it pays for; one
that would take the total spent by all experiments over the limit raises
:class:`~flopcount.ledger.errors.BudgetExceeded` and records nothing.

DDP: create the ``Budget`` on rank 0 only, and charge the *global* batch (per-rank batch x
world size); the other ranks never touch the ledger.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from flopcount.ledger.values import as_count, as_limit
from flopcount.ledger.ledger import BudgetExceeded, Ledger
from flopcount.ledger.sqlite_file import END_STATUSES
from flopcount.ledger.records import Charge, Session
from flopcount.count.conventions import Convention
from flopcount.count.engine import forward_flops, generation_flops, training_step_flops
from flopcount.count.setup import CountSetup, as_setup
from flopcount.count.workload import RunEstimate, TrainingWorkload, estimate_run, remaining_cost, steps_that_fit


class PlanDoesNotFit(Exception):
    """A planned run needs more FLOPs than remain; ``max_steps`` training steps would fit."""

    def __init__(self, message: str, *, max_steps: int, estimate: RunEstimate, remaining: int):
        super().__init__(message)
        self.max_steps, self.estimate, self.remaining = max_steps, estimate, remaining


class ExperimentCapExceeded(BudgetExceeded):
    """A charge would take this experiment past its own cap (``Budget(experiment_limit=...)``,
    e.g. its stage's share of a plan); refused, nothing recorded. ``limit`` is the cap and
    ``spent`` the experiment's FLOPs so far."""

    scope = "experiment cap"

    def __init__(self, cost: int, spent: int, limit: int, experiment: str, phase: str, step: int):
        super().__init__(cost, spent, limit, experiment, phase, step)
        self.args = (f"experiment {experiment!r}, {phase} step {step}: a charge of {cost:.4g} FLOPs would pass "
                     f"the experiment's cap (it spent {spent:.4g} of {limit:.4g} FLOPs); nothing was charged",)


class Budget:
    """Guard one experiment's FLOPs with the ledger file at ``ledger`` (see module docstring).

    Args:
        limit: the budget in FLOPs for *all* experiments sharing the ledger. It is fixed when
            the ledger is created; a different limit for an existing ledger is an error.
        ledger: path of the SQLite ledger (created if missing).
        experiment: experiment name; entering an existing name resumes it in a new session,
            whose charges for already-charged steps are recorded as re-runs.
        setup: the :class:`flopcount.CountSetup` that prices every charge (model shape,
            convention, LoRA), or a model alone (anything :func:`flopcount.model_shape`
            accepts: coursework convention, no LoRA).
        config: the experiment's configuration (JSON-serialisable), stored in the ledger.
        experiment_limit: optional cap, in FLOPs, on this experiment's own charges (all its
            sessions; re-runs included), e.g. its share of a plan; a charge past it raises
            :class:`ExperimentCapExceeded` before the work, like the global limit.
        synchronous: SQLite durability, ``"FULL"`` (survives power loss) or ``"NORMAL"``
            (survives process crashes only; cheaper per charge).
    """

    def __init__(
        self,
        limit: int | float,
        ledger: str | os.PathLike[str],
        experiment: str,
        setup: CountSetup | Any,
        *,
        config: dict[str, Any] | None = None,
        synchronous: str = "FULL",
        experiment_limit: int | float | None = None,
    ) -> None:
        self.limit = as_limit(limit)
        self.ledger_path = Path(ledger)
        self.experiment = experiment
        self.setup: CountSetup = as_setup(setup)
        self.config = dict(config or {})
        self._model_label = self.setup.model or (str(setup) if isinstance(setup, (str, os.PathLike)) else "")
        self._synchronous = synchronous
        self._ledger: Ledger | None = None
        self._session: Session | None = None
        self._finished: str | None = None  # the status given to finish()
        self._costs: dict[tuple, int] = {}  # memoised analytic costs, FLOPs
        self.experiment_limit = None if experiment_limit is None else as_limit(experiment_limit)
        self._experiment_spent = 0  # this experiment's FLOPs, all sessions; read on entry, then kept

    @property
    def convention(self) -> Convention:
        return self.setup.convention

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Budget:
        if self._ledger is not None:
            raise RuntimeError(f"Budget for {self.experiment!r} is already entered")
        ledger = Ledger(self.ledger_path, self.limit, synchronous=self._synchronous)
        try:
            self._session = ledger.begin_session(
                self.experiment,
                model=self._model_label or "unnamed",
                convention=self.convention.name,
                flop_settings=self.setup.describe(),  # what a charge's cost depends on: a resume must match
                config=self.config,
            )
        except BaseException:
            ledger.close()
            raise
        self._ledger, self._finished = ledger, None
        self._experiment_spent = ledger.spent_by_experiment().get(self.experiment, 0)
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, traceback: object) -> None:
        """End the session: finished on a normal exit, stopped when a budget error or Ctrl-C
        escapes, failed on any other exception (which propagates), unless :meth:`finish` already ran."""
        try:
            if not self._finished:
                if exc is None:
                    self.finish("finished")
                elif isinstance(exc, BudgetExceeded):
                    self.finish("stopped", f"{exc.scope} exhausted at {exc.phase} step {exc.step}")
                elif isinstance(exc, PlanDoesNotFit):
                    self.finish("stopped", f"plan does not fit the budget (at most {exc.max_steps} steps would)")
                elif isinstance(exc, KeyboardInterrupt):  # Ctrl-C: a stop the user asked for, not a failure
                    self.finish("stopped", "interrupted (Ctrl-C)")
                else:
                    self.finish("failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._open_ledger().close()
            self._ledger = self._session = None

    def finish(self, status: str = "finished", reason: str | None = None) -> None:
        """Record that the run ended (``finished``, ``stopped`` or ``failed``) and why, e.g.
        ``budget.finish("stopped", "budget exhausted at step 812")``. No charges after it."""
        if status not in END_STATUSES:
            raise ValueError(f"status must be one of {END_STATUSES}, got {status!r}")
        if self._finished:
            raise RuntimeError(f"experiment {self.experiment!r} already finished ({self._finished})")
        self._open_ledger().end_session(self._open_session(), status, reason)
        self._finished = status

    # -- costs (FLOPs, from the analytic model) --------------------------------------------

    def training_step_cost(self, batch: int, seq_len: int) -> int:
        """FLOPs of one training step on ``batch`` sequences of ``seq_len`` tokens (3 x forward)."""
        return self._cost("train", batch=batch, seq_len=seq_len)

    def forward_cost(self, batch: int, seq_len: int) -> int:
        """FLOPs of one forward pass (e.g. a validation batch), logits at every position."""
        return self._cost("forward", batch=batch, seq_len=seq_len)

    def generation_cost(self, prompt_len: int, new_tokens: int, samples: int = 1, batch: int = 1) -> int:
        """FLOPs of prefilling ``prompt_len`` tokens and decoding ``new_tokens`` with a KV
        cache, for ``samples`` samples of each of ``batch`` prompts."""
        return self._cost("generation", prompt_len=prompt_len, new_tokens=new_tokens, samples=samples, batch=batch)

    def _cost(self, kind: str, **shape: int) -> int:
        key = (kind, *shape.items())
        if key not in self._costs:
            if kind == "train":
                self._costs[key] = training_step_flops(self.setup, shape["batch"], shape["seq_len"])
            elif kind == "forward":
                self._costs[key] = forward_flops(self.setup, shape["seq_len"], shape["batch"]).total
            else:
                self._costs[key] = generation_flops(self.setup, **shape).total
        return self._costs[key]

    def _loss_cost(self, batch: int, seq_len: int) -> int:
        """FLOPs of the loss in one forward (0 unless the convention prices it)."""
        if not self.convention.loss:
            return 0
        key = ("loss", batch, seq_len)
        if key not in self._costs:
            self._costs[key] = forward_flops(self.setup, seq_len, batch).component("loss").flops
        return self._costs[key]

    def loss_flops(self, phase: str, batch: int, seq_len: int) -> int:
        """FLOPs of the loss within a ``phase`` charge of ``batch`` sequences of ``seq_len``
        (the audit shows them apart): a training step's forward and backward passes, one
        validation forward, none for generation; 0 unless the convention prices the loss."""
        if phase == "generation":
            return 0
        passes = 1 + self.convention.backward_multiplier if phase == "train" else 1
        return passes * self._loss_cost(batch, seq_len)

    @staticmethod
    def _with_loss(payload: Any, loss_flops: int) -> Any:
        """The payload with the charge's loss FLOPs (a decimal string: exact at any size), for
        the audit to show apart; unchanged when the loss is not priced."""
        if not loss_flops:
            return payload
        if payload is not None and not isinstance(payload, dict):
            raise ValueError("with a convention that prices the loss, a charge's payload must be a dict")
        return {**(payload or {}), "loss_flops": str(loss_flops)}

    # -- charging --------------------------------------------------------------------------

    def charge(self, phase: str, flops: int, *, step: int, tokens: int = 0, payload: Any = None) -> Charge:
        """Commit ``flops`` for ``phase`` (train / validation / generation) at ``step``, or
        raise :class:`BudgetExceeded` having recorded nothing. ``payload``: optional small
        JSON value kept with the charge (e.g. the previous step's loss)."""
        if self._finished:
            raise RuntimeError(f"experiment {self.experiment!r} was finished; enter a new Budget to resume")
        self._check_cap(flops, phase, step)
        charge = self._open_ledger().charge(
            self._open_session(), phase, flops, step=step, tokens=tokens, payload=payload
        )
        self._experiment_spent += charge.flops
        return charge

    def _check_cap(self, flops: int, phase: str, step: int) -> None:
        """Refuse a charge past ``experiment_limit`` (one process charges an experiment at a
        time, so the count kept since entry is exact)."""
        if not self.fits_experiment_cap(flops):
            raise ExperimentCapExceeded(flops, self._experiment_spent, self.experiment_limit, self.experiment,
                                        phase, step)

    def fits_experiment_cap(self, flops: int) -> bool:
        """Whether ``flops`` more fit this experiment's ``experiment_limit`` (always, without one)."""
        return self.experiment_limit is None or self._experiment_spent + flops <= self.experiment_limit

    def charge_training_step(
        self, *, batch: int, seq_len: int, step: int, tokens: int | None = None, payload: Any = None
    ) -> Charge:
        """Charge training step ``step`` (:meth:`training_step_cost`); call it *before* the
        step runs. ``tokens`` defaults to ``batch * seq_len``."""
        flops = self.training_step_cost(batch, seq_len)
        tokens = batch * seq_len if tokens is None else tokens
        payload = self._with_loss(payload, self.loss_flops("train", batch, seq_len))
        return self.charge("train", flops, step=step, tokens=tokens, payload=payload)

    def charge_forward(
        self, *, batch: int, seq_len: int, step: int, tokens: int | None = None, payload: Any = None
    ) -> Charge:
        """Charge one validation forward pass at training step ``step`` (:meth:`forward_cost`)."""
        flops = self.forward_cost(batch, seq_len)
        tokens = batch * seq_len if tokens is None else tokens
        payload = self._with_loss(payload, self.loss_flops("validation", batch, seq_len))
        return self.charge("validation", flops, step=step, tokens=tokens, payload=payload)

    def reserve_generation(
        self, *, prompt_len: int, max_new_tokens: int, samples: int = 1, batch: int = 1, step: int = 0,
        payload: Any = None,
    ) -> GenerationReservation:  # fmt: skip
        """Pay for a ``generate`` call before it runs, when only its maximum length is known.

        Commits (or refuses with :class:`BudgetExceeded`, recording nothing) the cost of
        ``max_new_tokens`` new tokens for ``samples`` samples of ``batch`` prompts of
        ``prompt_len`` tokens; :meth:`GenerationReservation.settle` then rewrites it to the
        cost of the tokens actually generated. Exact and never past the limit: the charge
        held while the work runs is its maximum, and settling only lowers it. A reservation
        never settled (a crash mid-generation) stays charged at the maximum and the audit
        reports it as unsettled.
        """
        if self._finished:
            raise RuntimeError(f"experiment {self.experiment!r} was finished; enter a new Budget to resume")
        flops = self.generation_cost(prompt_len, max_new_tokens, samples, batch)
        tokens = batch * samples * (prompt_len + max_new_tokens - 1)
        self._check_cap(flops, "generation", step)
        charge = self._open_ledger().reserve(
            self._open_session(), "generation", flops, step=step, tokens=tokens, payload=payload
        )
        self._experiment_spent += flops
        return GenerationReservation(self, charge, prompt_len, max_new_tokens, samples, batch)

    def mark_checkpoint(self, step: int) -> None:
        """Record in the ledger that this session's work up to ``step`` is saved in a checkpoint
        (once on entry with the step resumed from, 0 if none; then after every save). Charges
        for later steps count as lost in the audit until a newer checkpoint is marked."""
        self._open_ledger().mark_checkpoint(self._open_session(), step)

    # -- the state of the budget -----------------------------------------------------------

    @property
    def spent(self) -> int:
        """FLOPs spent by every experiment in the ledger."""
        return self._open_ledger().spent

    @property
    def remaining(self) -> int:
        """FLOPs left for everything: the limit minus all experiments' charges."""
        return self.limit - self.spent

    @property
    def spent_by_experiment(self) -> dict[str, int]:
        """FLOPs spent per experiment, in start order."""
        return self._open_ledger().spent_by_experiment()

    def can_afford(self, flops: int) -> bool:
        """Whether a charge of ``flops`` would fit now (other processes may charge next)."""
        return as_count(flops, "flops") <= self.remaining

    def preflight(self, workload: TrainingWorkload, done: int = 0) -> RunEstimate:
        """Return the FLOP estimate of ``workload`` if what it still costs after ``done``
        finished steps fits the remaining budget; otherwise raise :class:`PlanDoesNotFit`
        saying how many steps would fit (:func:`flopcount.steps_that_fit`)."""
        estimate = estimate_run(self.setup, workload)
        needed, remaining = remaining_cost(estimate, workload.steps, done), self.remaining
        if needed <= remaining:
            return estimate
        max_steps = steps_that_fit(self.setup, workload, remaining, done)
        first = f"steps {done + 1}..{workload.steps}" if done else f"the plan of {workload.steps} steps"
        raise PlanDoesNotFit(
            f"experiment {self.experiment!r}: {first} and their validations need {needed:.4g} FLOPs but only "
            f"{remaining:.4g} of {self.limit:.4g} remain; the budget pays up to step {max_steps}",
            max_steps=max_steps, estimate=estimate, remaining=remaining,
        )  # fmt: skip

    # -- internals -------------------------------------------------------------------------

    def _open_ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError(f"enter the Budget for {self.experiment!r} (a with block) before using it")
        return self._ledger

    def _open_session(self) -> Session:
        self._open_ledger()
        assert self._session is not None
        return self._session


@dataclasses.dataclass
class GenerationReservation:
    """A generation paid at its maximum (:meth:`Budget.reserve_generation`), awaiting its exact
    cost. ``charge`` is the ledger record: the reservation, then the settled charge."""

    budget: Budget
    charge: Charge
    prompt_len: int
    max_new_tokens: int
    samples: int
    batch: int

    @property
    def settled(self) -> bool:
        return not self.charge.is_open_reservation

    def settle(self, new_tokens: int) -> Charge:
        """Rewrite the reservation to the exact cost of ``new_tokens`` generated tokens per
        sequence (1 .. ``max_new_tokens``), i.e. :meth:`Budget.generation_cost` of the actual
        shapes, and return the settled charge."""
        if not 1 <= new_tokens <= self.max_new_tokens:
            raise ValueError(f"new_tokens must be in 1..{self.max_new_tokens} (the reserved maximum), got {new_tokens}")
        flops = self.budget.generation_cost(self.prompt_len, new_tokens, self.samples, self.batch)
        tokens = self.batch * self.samples * (self.prompt_len + new_tokens - 1)
        reserved = self.charge.flops
        self.charge = self.budget._open_ledger().settle(self.charge.id, flops, tokens=tokens)
        self.budget._experiment_spent -= reserved - self.charge.flops
        return self.charge
