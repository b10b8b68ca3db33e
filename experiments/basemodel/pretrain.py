"""Pretrain a base from random initialisation: the stand-in for Qwen's own pretraining.

    record = build_base(DEMO_RECIPE, Path("~/.cache/llmtime-budget/llmtime-base").expanduser())

The ``tiny`` architecture with the 14-row compact head (exactly the full-vocabulary loss, see
:mod:`experiments.basemodel.compact_head`) learns LLMTIME text of general two-variable sequences
(:mod:`experiments.basemodel.corpus`, :mod:`experiments.basemodel.families`) with AdamW, warmup and a cosine schedule
(:class:`~experiments.basemodel.recipe.BaseRecipe`). Then it is copied into the full
vocabulary and written with ``save_pretrained`` beside the tokenizer and ``llmtime-base.json``,
the record of how it was made (recipe and hash, steps, tokens, FLOPs, losses, wall time).

- **FLOPs**: every step and validation is charged *before* it runs to the base's own ledger
  (``ledger.sqlite`` in the directory; :mod:`experiments.basemodel.flops`), never to a plan's.
- **Resume**: a checkpoint every ``checkpoint_every`` steps (model, optimizer, losses), and at
  the step boundary after a Ctrl-C; a build started again in the same directory continues from
  the newest one, and the steps it repeats (after a crash) are charged again, as re-runs.
- **Deterministic**: the initial weights come from the recipe's seed, the data order is a pure
  function of (seed, step) and the learning rate of the step, so a build, resumed or not, gives
  the same weights on the same machine and thread count.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers import Qwen2ForCausalLM

from experiments.basemodel.corpus import CompactRows, pretrain_corpus
from experiments.basemodel.families import CORPUS_DESCRIPTION, FAMILIES
from experiments.basemodel.flops import (
    base_flops,
    charge_step,
    charge_validation,
    ledger_flops,
    open_base_budget,
)
from experiments.basemodel.recipe import BaseRecipe
from experiments.basemodel.compact_head import CompactVocabulary, compact_config, compact_logits, expand_to_full_vocabulary
from experiments.models.loading import tiny_config
from experiments.training.batching import WindowOrder
from experiments.training.interrupts import INTERRUPTED, InterruptFlag, RunInterrupted
from experiments.training.loss import token_cross_entropy
from lvdata import default_tokenizer_source, load_tokenizer

logger = logging.getLogger(__name__)
RECORD_FILE = "llmtime-base.json"
RECORD_FORMAT = "llmtime-base/1"
CHECKPOINTS = "checkpoints"
TRAIN_LOSS_WINDOW = 50  # the recorded final training loss is the mean of the last this-many steps


def learning_rate(recipe: BaseRecipe, step: int) -> float:
    """Learning rate of step ``step`` (1-based): linear warmup over ``warmup_steps``, then cosine
    from ``learning_rate`` down to ``min_lr_ratio`` of it at the last step."""
    if step <= recipe.warmup_steps:
        return recipe.learning_rate * step / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(recipe.steps - recipe.warmup_steps, 1)
    floor = recipe.min_lr_ratio
    return recipe.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def read_record(directory: Path) -> dict[str, Any] | None:
    """The base record in ``directory`` (``llmtime-base.json``), or None if there is none."""
    path = directory / RECORD_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    temporary = directory / f".{RECORD_FILE}.tmp"
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, directory / RECORD_FILE)


@dataclass
class _State:
    """What a checkpoint keeps besides the weights: the step, every step's training loss
    (nats per target token) and the validations so far; ``elapsed_s`` of compute."""

    step: int = 0
    train_losses: list[float] = field(default_factory=list)
    validations: list[dict[str, float]] = field(default_factory=list)
    tokens: int = 0
    elapsed_s: float = 0.0


def _new_model(recipe: BaseRecipe, vocabulary: CompactVocabulary) -> Qwen2ForCausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        return Qwen2ForCausalLM(compact_config(tiny_config(), vocabulary))


def _optimizer(model: Qwen2ForCausalLM, recipe: BaseRecipe) -> torch.optim.AdamW:
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    others = [p for p in model.parameters() if p.ndim < 2]  # norms and q/k/v biases: no weight decay
    return torch.optim.AdamW([{"params": matrices, "weight_decay": recipe.weight_decay},
                              {"params": others, "weight_decay": 0.0}], lr=recipe.learning_rate,
                             betas=recipe.betas)


def _checkpoint_dirs(directory: Path) -> list[Path]:
    root = directory / CHECKPOINTS
    return sorted(root.glob("step-*")) if root.is_dir() else []


def _save_checkpoint(directory: Path, model, optimizer, state: _State) -> None:
    """Write ``checkpoints/step-<n>`` atomically (a staged directory renamed), keep only it."""
    root = directory / CHECKPOINTS
    root.mkdir(exist_ok=True)
    staging = root / f".staging-{state.step:08d}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    torch.save(model.state_dict(), staging / "model.pt")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    (staging / "state.json").write_text(json.dumps(state.__dict__) + "\n", encoding="utf-8")
    final = root / f"step-{state.step:08d}"
    os.replace(staging, final)
    for older in _checkpoint_dirs(directory):
        if older != final:
            shutil.rmtree(older)


def _load_checkpoint(path: Path, model, optimizer) -> _State:
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    return _State(**json.loads((path / "state.json").read_text(encoding="utf-8")))


@torch.no_grad()
def validation_loss(model, rows: CompactRows, log_multiplicity: torch.Tensor, batch_size: int) -> float:
    """Mean next-token cross-entropy (nats per target token, the full vocabulary's) on ``rows``."""
    model.eval()
    nats, targets = 0.0, 0
    for start in range(0, len(rows), batch_size):
        input_ids, labels = rows.batch(np.arange(start, min(start + batch_size, len(rows))))
        batch_nats, batch_targets = token_cross_entropy(compact_logits(model, input_ids, log_multiplicity), labels)
        nats, targets = nats + float(batch_nats), targets + int(batch_targets)
    return nats / targets


def _train_step(model, optimizer, rows: CompactRows, indices: np.ndarray, log_multiplicity: torch.Tensor,
                recipe: BaseRecipe, lr: float) -> float:
    """One AdamW step on rows ``indices``; returns its loss (nats per target token)."""
    model.train()
    input_ids, labels = rows.batch(indices)  # (B, T) each
    nats, targets = token_cross_entropy(compact_logits(model, input_ids, log_multiplicity), labels)
    loss = nats / targets
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def build_base(recipe: BaseRecipe, directory: str | os.PathLike, *, tokenizer_source: str | os.PathLike | None = None,
               progress: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Build (or resume, or find finished) the base of ``recipe`` in ``directory``; returns its
    record. ``stop_after``: stop, checkpointed, once this session has run that many steps (as an
    interruption would; the record's status stays ``building``). Refuses a directory holding
    another recipe's base (:mod:`experiments.basemodel.cache` decides when to replace one)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(tokenizer_source or default_tokenizer_source())
    vocabulary = CompactVocabulary.from_tokenizer(tokenizer, tiny_config().vocab_size)
    recipe_hash = recipe.recipe_hash(vocabulary.alphabet_ids)
    record = read_record(directory)
    if record is not None and record["recipe_hash"] != recipe_hash:
        raise FileExistsError(f"{directory} holds the base of recipe {record['recipe_hash']}, not {recipe_hash}")
    if record is not None and record["status"] == "complete":
        return record
    record = {"format": RECORD_FORMAT, "status": "building", "name": recipe.name, "recipe_hash": recipe_hash,
              **recipe.hash_document(vocabulary.alphabet_ids)}
    _write_record(directory, record)

    corpus = pretrain_corpus(recipe, vocabulary)
    log_multiplicity = vocabulary.log_multiplicity()
    model = _new_model(recipe, vocabulary)
    optimizer = _optimizer(model, recipe)
    checkpoints = _checkpoint_dirs(directory)
    state = _load_checkpoint(checkpoints[-1], model, optimizer) if checkpoints else _State()
    order = WindowOrder(len(corpus.train), recipe.seed)
    evaluations = set(recipe.evaluation_steps())
    eval_rows = CompactRows(corpus.validation.ids[: recipe.eval_rows], corpus.validation.lengths[: recipe.eval_rows])
    if len(eval_rows) < recipe.eval_rows:
        raise ValueError(f"the recipe validates on {recipe.eval_rows} rows but generates {len(eval_rows)}")
    last_step = recipe.steps if stop_after is None else min(recipe.steps, state.step + stop_after)

    started = time.perf_counter()
    with open_base_budget(recipe, directory, recipe_hash) as budget, InterruptFlag() as interrupt, \
            tqdm(total=recipe.steps, initial=state.step, desc=f"pretrain {recipe.name}", unit="step",
                 disable=not progress) as bar:
        for step in range(state.step + 1, last_step + 1):
            indices = order.step(step, recipe.batch_size)[0]  # (B,)
            charge_step(budget, recipe, step, corpus.train.tokens(indices))
            state.train_losses.append(_train_step(model, optimizer, corpus.train, indices, log_multiplicity, recipe,
                                                  learning_rate(recipe, step)))
            state.tokens += corpus.train.tokens(indices)
            state.step = step
            if step in evaluations:
                charge_validation(budget, recipe, step, eval_rows.tokens(np.arange(len(eval_rows))))
                loss = validation_loss(model, eval_rows, log_multiplicity, recipe.batch_size)
                state.validations.append({"step": step, "loss": loss})
            if step % recipe.checkpoint_every == 0 or step == last_step or interrupt.raised:
                state.elapsed_s += time.perf_counter() - started
                started = time.perf_counter()
                _save_checkpoint(directory, model, optimizer, state)
            bar.set_postfix_str(_postfix(state, budget.spent), refresh=False)
            bar.update(step - bar.n)
            if interrupt.raised:  # Ctrl-C: stopped at this step boundary, checkpointed just above
                budget.finish("stopped", f"{INTERRUPTED} after step {step} of {recipe.steps}")
                raise RunInterrupted(f"base {recipe.name}: {INTERRUPTED} after step {step} of {recipe.steps}; "
                                     f"checkpoint {_checkpoint_dirs(directory)[-1]}", step=step)
        if state.step < recipe.steps:
            budget.finish("stopped", f"stopped after step {state.step} of {recipe.steps}")
    if state.step < recipe.steps:
        return record
    return _finish(recipe, directory, model, tokenizer, vocabulary, state, record, corpus)


def _postfix(state: _State, spent: int) -> str:
    window = state.train_losses[-TRAIN_LOSS_WINDOW:]
    val = f"{state.validations[-1]['loss']:.3f}" if state.validations else "-"
    return f"loss {sum(window) / len(window):.3f} val {val} FLOPs {spent:.3g}"


def _curve(losses: list[float], every: int = 100) -> list[dict[str, float]]:
    """Mean training loss of each ``every`` steps: ``[{"step": last step, "loss": nats}, ...]``."""
    return [{"step": min(start + every, len(losses)), "loss": sum(chunk) / len(chunk)}
            for start in range(0, len(losses), every) if (chunk := losses[start:start + every])]


def _finish(recipe: BaseRecipe, directory: Path, model, tokenizer, vocabulary: CompactVocabulary, state: _State,
            record: dict[str, Any], corpus) -> dict[str, Any]:
    """Expand to the full vocabulary, save model and tokenizer, write the complete record."""
    full = expand_to_full_vocabulary(model, tiny_config(), vocabulary)
    full.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    analytic = base_flops(recipe, vocabulary.n_rows)
    charged = ledger_flops(directory)
    window = state.train_losses[-TRAIN_LOSS_WINDOW:]
    record.update(
        status="complete", seed=recipe.seed, steps=state.step, tokens=state.tokens,
        corpus={"description": CORPUS_DESCRIPTION, "families": list(FAMILIES)},
        rows={"train": len(corpus.train), "validation": len(corpus.validation),
              "scaled_by_first_steps": corpus.context_scaled, "truncated": corpus.truncated},
        parameters={"compact": sum(p.numel() for p in model.parameters()),
                    "full": sum(p.numel() for p in full.parameters())},
        flops={"analytic": analytic.to_dict(), "ledger": charged},
        losses={"first_train": state.train_losses[0], "final_train": sum(window) / len(window),
                "final_validation": state.validations[-1]["loss"], "validations": state.validations,
                "train_curve": _curve(state.train_losses),
                "unit": "nats per target token, full 151,936-token vocabulary"},
        wall_seconds=round(state.elapsed_s, 3),
        tokens_per_second=round(state.tokens / state.elapsed_s, 1) if state.elapsed_s else None,
        threads=torch.get_num_threads(), torch_version=torch.__version__,
        transformers_version=transformers.__version__, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )  # fmt: skip
    if charged["useful"] != analytic.total:
        raise RuntimeError(f"the ledger holds {charged['useful']} useful FLOPs but the recipe counts {analytic.total}")
    _write_record(directory, record)
    shutil.rmtree(directory / CHECKPOINTS, ignore_errors=True)
    return record


__all__ = ["CHECKPOINTS", "RECORD_FILE", "RECORD_FORMAT", "build_base", "learning_rate", "read_record",
           "validation_loss"]
