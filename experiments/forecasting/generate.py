"""Forecast trajectories with a causal LM: batched, KV-cached ``generate``, charged to the budget.

For each :class:`lvdata.ForecastExample` (its prompt is the LLMTIME text of the first ``k``
steps, ending with the step separator) the model generates the next ``m`` steps; the text is
decoded with :func:`lvdata.decode_steps` (honest diagnostics, NaN rows for anything malformed)
and rescaled by the example's α to the original units.

* **Constrained** (default): :class:`~experiments.forecasting.grammar.LLMTimeLogitsProcessor` allows only
  the step grammar, so every output is ``m`` well-formed steps. **Unconstrained**: no
  processor, so the malformed fraction measures how often the model breaks the format.
  Both stop a row at its ``m``-th step separator (or EOS), bounded by ``max_new_tokens``.
  A constrained forecast runs ``generate`` over a vocabulary subset, the tokens it can read or
  write (:mod:`~experiments.forecasting.vocabulary_subset`): the same tokens, without computing
  and passing over the 151,936-token logits every step.
* **Batching**: prompts are sorted by token length (less padding) and left-padded by hand
  with an attention mask; ``generate`` derives the position ids from the mask, so a row's
  output does not depend on its batch (tested). The caller's tokenizer is not modified.
* **Sampling**: ``samples`` sequences per trajectory (each prompt repeated, its samples
  adjacent), drawn by :class:`~experiments.forecasting.sampling.GumbelMaxSampler` (the same
  distribution as ``generate``'s own sampler, without its ``multinomial`` over the whole
  vocabulary); the point forecast is the per-step median of the valid samples, the band their
  quantiles. Each batch is seeded from ``(seed, batch index)`` inside a forked RNG:
  deterministic for a seed, and the caller's global RNG is left untouched.
* **Charging** (:meth:`flopcount.Budget.reserve_generation`): before each ``generate``, the
  budget commits the cost of the longest generation the batch can make (``max_new_tokens``
  for every row: the grammar's bound), or refuses it with ``BudgetExceeded`` before any work;
  afterwards the reservation is settled to the exact cost of the tokens the batch actually
  ran (prefill of the padded prompt plus KV-cached decoding, for every sample). A crash in
  between leaves the maximum charged. The charge is never past the limit and, once settled,
  exact; per-decode-step charging was rejected: hundreds of ledger commits per batch, and a
  charge made for a step the batch may never run.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from experiments.forecasting.forecast_config import N_VARS, ForecastConfig
from experiments.forecasting.grammar import LLMTimeGrammar, LLMTimeLogitsProcessor, StepStoppingCriteria, alphabet_token_ids
from experiments.forecasting.metrics import ForecastSet
from experiments.forecasting.sampling import GumbelMaxSampler
from experiments.forecasting.vocabulary_subset import VocabularySubset, subset_is_exact, vocabulary_subset
from experiments.training.distinct_rows import distinct_rows_output
from flopcount import Budget
from flopcount.ledger.records import Charge
from lvdata import DecodeDiagnostics, ForecastExample, decode_steps, tokenize_texts

@dataclass(frozen=True)
class GenerationBatch:
    """One ``generate`` call: example ``indices``, the padded ``prompt_len`` and the
    ``new_tokens`` every row ran for (tokens), ``samples`` per example, and the settled
    ledger ``charge`` (None without a budget)."""

    indices: tuple[int, ...]
    prompt_len: int
    new_tokens: int
    samples: int
    charge: Charge | None

    @property
    def flops(self) -> int:
        """FLOPs charged for this call (0 without a budget)."""
        return 0 if self.charge is None else self.charge.flops


@dataclass
class ForecastOutput:
    """Forecasts of ``N`` examples with ``S`` samples each, values in original units.

    ``values`` ``(N, m, 2)``: the point forecast (greedy output, or per-step median of the
    valid samples), NaN where no valid value exists. ``samples`` ``(N, S, m, 2)``; ``lower`` /
    ``upper`` ``(N, m, 2)`` the sample band (None for one sample). ``texts`` and
    ``diagnostics`` ``[N][S]``: the generated text (up to EOS) and its decode record.
    ``generated_tokens`` ``(N, S)``: tokens each sample generated before it stopped.
    """

    config: ForecastConfig
    values: np.ndarray
    samples: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    texts: list[list[str]]
    diagnostics: list[list[DecodeDiagnostics]]
    generated_tokens: np.ndarray
    batches: list[GenerationBatch] = field(default_factory=list)

    @property
    def flops(self) -> int:
        """FLOPs charged to the budget for all batches (0 without a budget)."""
        return sum(batch.flops for batch in self.batches)

    @property
    def malformed_sample_fraction(self) -> float:
        """Fraction of generated samples whose text did not decode cleanly to ``m`` steps."""
        return float(np.mean([[not d.ok for d in row] for row in self.diagnostics]))

    @property
    def repaired(self) -> np.ndarray:
        """``(N,)`` bool: some samples were malformed, but the median of the valid ones gave a
        value at every step (the malformed samples were dropped: a repair)."""
        malformed_samples = np.array([[not d.ok for d in row] for row in self.diagnostics]).any(axis=1)
        return malformed_samples & np.isfinite(self.values).all(axis=(1, 2))

    def forecast_set(self, truth: np.ndarray, ids: np.ndarray) -> ForecastSet:
        """Pair with the truth ``(N, m, 2)`` of trajectories ``ids`` for :func:`evaluate_forecasts`."""
        return ForecastSet(truth=truth, forecast=self.values, ids=ids, lower=self.lower, upper=self.upper,
                           repaired=self.repaired, samples=self.samples if self.config.samples > 1 else None)


def forecast_series(
    model, tokenizer, examples: list[ForecastExample], config: ForecastConfig, budget: Budget | None = None,
    step: int = 0, *, progress: bool = True, runner: BatchRunner | None = None,
) -> ForecastOutput:
    """Forecast ``config.m`` steps of every example (see the module docstring).

    ``budget``: every ``generate`` call is reserved before it runs and settled to its exact cost, as
    a ``generation`` charge at training step ``step``. Raises ``BudgetExceeded`` (nothing generated
    for that batch), or ``ValueError`` for examples that do not fit the config (``k`` prompt steps
    in its format; prompt numbers within ``max_int_digits``). ``runner``: who makes the calls
    (default :func:`run_in_order`; :mod:`~experiments.forecasting.sharding`: the ranks).
    """
    _check_examples(examples, config)
    if budget is not None and not config.use_cache:
        raise ValueError("use_cache=False cannot be charged: the budget's generation count assumes a KV cache")
    job = ForecastJob.prepare(model, tokenizer, examples, config)
    return job.output((runner or run_in_order)(job, budget, step, progress))


@dataclass(frozen=True)
class GeneratedBatch:
    """What one ``generate`` call of a :class:`ForecastJob` wrote: its ``b * S`` rows as (text, tokens),
    an example's samples adjacent; ``batch`` its record (``charge`` set once settled). Picklable."""

    batch: GenerationBatch
    rows: list[tuple[str, int]]

    def settled(self, reservation) -> GeneratedBatch:
        """This call with its ``reservation`` (None: no budget) settled to the exact cost of its tokens."""
        charge = None if reservation is None else reservation.settle(self.batch.new_tokens)
        return self if charge is None else dataclasses.replace(self, batch=dataclasses.replace(self.batch, charge=charge))


@dataclass(frozen=True)
class ForecastJob:
    """The ``generate`` calls of one :func:`forecast_series`: prompts shortest first (less padding),
    ``batch_size`` per call; a call is seeded by its number, so no matter which process makes it."""

    generator: _BatchGenerator
    examples: list[ForecastExample]
    prompts: list[np.ndarray]
    batches: list[tuple[int, ...]]  # the example indices of each call

    @classmethod
    def prepare(cls, model, tokenizer, examples: list[ForecastExample], config: ForecastConfig) -> ForecastJob:
        prompts = tokenize_texts(tokenizer, [example.prompt_text for example in examples])
        generator = _BatchGenerator.build(model, tokenizer, config, prompts)
        _check_context_length(model, prompts, generator.max_new_tokens)
        order = sorted(range(len(examples)), key=lambda i: len(prompts[i]))  # shortest first: less padding
        batches = [tuple(order[start:start + config.batch_size]) for start in range(0, len(order), config.batch_size)]
        return cls(generator, examples, prompts, batches)

    @property
    def config(self) -> ForecastConfig:
        return self.generator.config

    @contextmanager
    def running(self) -> Iterator[None]:
        """The context the calls run in. The model's own generation defaults are set aside (``generate``
        fills every field its config leaves unset from them: a checkpoint's ``suppress_tokens`` or
        ``num_beams`` would change the forecasts). A constrained forecast runs over a vocabulary subset,
        an unconstrained one over a frozen head's few distinct rows if it has them: the same logits, faster."""
        model = self.generator.model
        faster = (vocabulary_subset(model, self.generator.subset) if self.generator.subset is not None
                  else distinct_rows_output(model, full_logits=True))
        own_defaults, model.generation_config = model.generation_config, GenerationConfig()
        try:
            with faster:
                yield
        finally:
            model.generation_config = own_defaults

    def reserve(self, budget: Budget, number: int, step: int):
        """Reserve call ``number``'s longest possible generation on ``budget`` (before it runs)."""
        prompt_len = max(len(self.prompts[i]) for i in self.batches[number])
        return budget.reserve_generation(prompt_len=prompt_len, max_new_tokens=self.generator.max_new_tokens,
                                         samples=self.config.samples, batch=len(self.batches[number]), step=step)

    def generate(self, number: int) -> GeneratedBatch:
        """Make call ``number`` (inside :meth:`running`); uncharged until :meth:`GeneratedBatch.settled`."""
        input_ids, attention_mask = _left_pad([self.prompts[i] for i in self.batches[number]], self.generator.pad_id)
        generated = self.generator.generate(input_ids, attention_mask, number)  # (b * S, new_tokens)
        batch = GenerationBatch(self.batches[number], input_ids.shape[1], generated.shape[1], self.config.samples, None)
        return GeneratedBatch(batch, self.generator.texts(generated))

    def output(self, done: list[GeneratedBatch]) -> ForecastOutput:
        """The forecasts of every example from all calls (``done``, in call order)."""
        n, s = len(self.examples), self.config.samples
        texts: list[list[str]] = [[] for _ in range(n)]
        generated_tokens = np.zeros((n, s), dtype=np.int64)
        for generated in done:
            indices = generated.batch.indices
            for row, (text, length) in enumerate(generated.rows):
                texts[indices[row // s]].append(text)
                generated_tokens[indices[row // s], row % s] = length
        return _decoded_output(self.config, self.examples, texts, generated_tokens, [g.batch for g in done])


BatchRunner = Callable[[ForecastJob, "Budget | None", int, bool], list[GeneratedBatch]]


def run_in_order(job: ForecastJob, budget: Budget | None, step: int, progress: bool) -> list[GeneratedBatch]:
    """Every call of ``job`` in this process, in order, each reserved before it runs and settled after."""
    done = []
    with job.running():
        for number in tqdm(range(len(job.batches)), desc=job.config.method_name, unit="batch", disable=not progress):
            reservation = None if budget is None else job.reserve(budget, number, step)
            done.append(job.generate(number).settled(reservation))
    return done


@dataclass(frozen=True)
class _BatchGenerator:
    """What every ``generate`` call of one :func:`forecast_series` shares. ``eos_ids``, ``pad_id`` and
    ``step_token_id`` are real token ids; ``subset`` (constrained forecasts of a model where it is
    exact) the subset ids ``generate`` runs in, None for the whole vocabulary."""

    model: object
    tokenizer: object
    config: ForecastConfig
    grammar: LLMTimeGrammar
    eos_ids: tuple[int, ...]
    pad_id: int
    step_token_id: int
    subset: VocabularySubset | None

    @classmethod
    def build(cls, model, tokenizer, config: ForecastConfig, prompts: list[np.ndarray]) -> _BatchGenerator:
        grammar = config.grammar()
        eos_ids = _eos_ids(model, tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
        alphabet = alphabet_token_ids(tokenizer, grammar)
        subset = None
        if config.constrained and subset_is_exact(model):  # what a forecast can read or write
            tokens = np.concatenate([alphabet, eos_ids, [pad_id], *prompts])
            subset = VocabularySubset.of(tokens, len(model.get_output_embeddings().weight))
        return cls(model, tokenizer, config, grammar, eos_ids, pad_id, step_token_id=alphabet[-1],
                   subset=subset)

    @property
    def max_new_tokens(self) -> int:
        return self.config.new_token_bound

    def _generate_ids(self, real_ids: torch.Tensor | list[int]) -> torch.Tensor:
        """``real_ids`` as ``generate`` sees them: their subset ids when it runs over a vocabulary subset."""
        return torch.as_tensor(real_ids) if self.subset is None else self.subset.to_subset(real_ids)

    @property
    def generation_config(self) -> GenerationConfig:
        eos_ids = self._generate_ids(list(self.eos_ids)).tolist()
        return _generation_config(self.config, self.max_new_tokens, eos_ids, int(self._generate_ids([self.pad_id])[0]))

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch_index: int) -> torch.Tensor:
        """New tokens ``(b * S, new_tokens)`` on the CPU, the S samples of a prompt adjacent, for
        left-padded ``input_ids`` / ``attention_mask`` ``(b, L)``; seeded by ``(seed, batch_index)``."""
        input_ids = self._generate_ids(input_ids)  # (b, L)
        processors = LogitsProcessorList()
        if self.config.constrained:
            processors.append(LLMTimeLogitsProcessor(self.grammar, self.tokenizer, eos_token_id=self.eos_ids[0],
                                                     subset=self.subset))
        if self.config.do_sample:  # after the grammar: the nucleus is taken among grammatical tokens
            processors.append(GumbelMaxSampler(self.config.temperature, self.config.top_p))
            input_ids = input_ids.repeat_interleave(self.config.samples, dim=0)  # (b * S, L)
            attention_mask = attention_mask.repeat_interleave(self.config.samples, dim=0)
        step_token_id = int(self._generate_ids([self.step_token_id])[0])
        stopping = StoppingCriteriaList([StepStoppingCriteria(step_token_id, self.config.m, input_ids.shape[1])])
        device = self.model.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(int(np.random.SeedSequence([self.config.seed, batch_index]).generate_state(1)[0]))
            sequences = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                generation_config=self.generation_config, logits_processor=processors, stopping_criteria=stopping,
            )  # (b * S, L + new_tokens)
        generated = sequences[:, input_ids.shape[1]:].cpu()  # (b * S, new_tokens)
        return generated if self.subset is None else self.subset.to_real(generated)

    def texts(self, generated: torch.Tensor) -> list[tuple[str, int]]:
        """Each row's text up to (excluding) its first EOS or pad token, and that token count. Other
        special tokens are kept (``skip_special_tokens=False``): output that drifts into chat markup
        is reported as non-numeric, never silently dropped."""
        stop_ids = {*self.eos_ids, self.pad_id}
        rows = []
        for ids in generated.tolist():
            length = next((position for position, token in enumerate(ids) if token in stop_ids), len(ids))
            rows.append((self.tokenizer.decode(ids[:length], skip_special_tokens=False), length))
        return rows


def _decoded_output(config: ForecastConfig, examples: list[ForecastExample], texts: list[list[str]],
                    generated_tokens: np.ndarray, batches: list[GenerationBatch]) -> ForecastOutput:
    """Decode every text to ``m`` steps in original units and reduce the samples."""
    decoded = [[decode_steps(text, config.m, alpha=example.alpha, n_vars=N_VARS, fmt=config.fmt) for text in row]
               for example, row in zip(examples, texts)]
    samples = np.array([[result.values for result in row] for row in decoded])  # (N, S, m, 2)
    diagnostics = [[result.diagnostics for result in row] for row in decoded]
    lower = upper = None
    if config.samples == 1:
        values = samples[:, 0]
    else:
        with warnings.catch_warnings():  # a step without any valid sample stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmedian(samples, axis=1)  # (N, m, 2)
            lower, upper = np.nanquantile(samples, config.band, axis=1)  # (N, m, 2) each
    return ForecastOutput(config, values, samples, lower, upper, texts, diagnostics, generated_tokens, batches)


def _check_examples(examples: list[ForecastExample], config: ForecastConfig) -> None:
    if not examples:
        raise ValueError("no examples to forecast")
    prompt_grammar = config.fmt.trajectory_regex(N_VARS)
    for index, example in enumerate(examples):
        text = example.prompt_text
        if not (text.endswith(config.fmt.step_sep) and prompt_grammar.fullmatch(text[:-1])):
            raise ValueError(f"example {index}: its prompt is not LLMTIME text of {N_VARS} variables in the config's "
                             f"format {config.fmt} ending with {config.fmt.step_sep!r}: {text[:40]!r}...")
        if len(example.prompt_values) != config.k:
            raise ValueError(f"example {index} has a prompt of {len(example.prompt_values)} steps; the config "
                             f"forecasts from k={config.k}")
        widest = max(len(digits) for digits in re.findall(r"([0-9]+)\.", example.prompt_text))
        if widest > config.max_int_digits:
            raise ValueError(f"example {index}: its prompt holds numbers of {widest} integer digits, more than "
                             f"max_int_digits={config.max_int_digits} lets the model write; raise it")


def _check_context_length(model, prompts: list[np.ndarray], max_new_tokens: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(prompt) for prompt in prompts)
    if limit is not None and longest + max_new_tokens > limit:
        raise ValueError(f"a prompt of {longest} tokens plus {max_new_tokens} new tokens exceeds the model's "
                         f"{limit} positions")


def _eos_ids(model, tokenizer) -> tuple[int, ...]:
    """End-of-sequence ids: the tokenizer's first, then the model's generation config's."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    ids = [tokenizer.eos_token_id, *configured]
    return tuple(dict.fromkeys(int(i) for i in ids if i is not None))


def _generation_config(config: ForecastConfig, max_new_tokens: int, eos_ids: list[int],
                       pad_id: int) -> GenerationConfig:
    """Every setting that matters set explicitly; :meth:`ForecastJob.running` sets the model's own
    defaults aside (Qwen ships repetition_penalty 1.1, top_k 20, ...), so they never change the forecasts."""
    return GenerationConfig(  # greedy: a sampled forecast draws its tokens in GumbelMaxSampler
        max_new_tokens=max_new_tokens, do_sample=False, num_return_sequences=1, repetition_penalty=1.0,
        eos_token_id=eos_ids, pad_token_id=pad_id, use_cache=config.use_cache,
    )


def _left_pad(prompts: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask``, int64 ``(b, L)``, prompts right-aligned."""
    length = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), length), pad_id, dtype=torch.int64)
    attention_mask = torch.zeros((len(prompts), length), dtype=torch.int64)
    for row, prompt in enumerate(prompts):
        input_ids[row, length - len(prompt):] = torch.from_numpy(prompt)
        attention_mask[row, length - len(prompt):] = 1
    return input_ids, attention_mask
