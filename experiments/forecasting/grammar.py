"""Constrained decoding of LLMTIME: the step grammar as a finite automaton over tokens.

Grammar (``p`` = the format's precision, ``D`` = ``max_int_digits``, ``V`` = ``n_vars``,
``m`` = ``n_steps``; ``,`` and ``;`` stand for the format's separators)::

    number := ("0" | [1-9][0-9]{0,D-1}) "." [0-9]{p}    canonical, as lvdata.encode writes it
    step   := number ("," number){V-1} ";"
    text   := step{m} EOS

Qwen's tokenizer writes each of these 13 characters as one token, so the automaton reads
one character per token; the ids are looked up from the tokenizer (never hard-coded) and a
tokenizer that splits them otherwise is refused. The automaton's state is one integer per
sequence: ``step * S + s`` with ``s`` the position inside a step (``S`` states), plus one
final state after ``m`` steps in which only EOS is allowed. Two tables drive it, both built
once: ``next_state (states, classes)`` and ``allowed (states, classes)``. A decoding step is
then two gathers over the batch, never a loop over rows or over the vocabulary.

:class:`StepStoppingCriteria` stops each row at its ``m``-th step separator, so a constrained
batch stops at the token on which its last row completes, without spending a forward pass
on an EOS token; rows that finished earlier are filled with the pad token by ``generate``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import torch
from transformers import LogitsProcessor, StoppingCriteria

from experiments.forecasting.vocabulary_subset import VocabularySubset
from lvdata import DEFAULT_FORMAT, LLMTimeFormat

DIGITS = "0123456789"
N_CHAR_CLASSES = 13  # digits, '.', value separator, step separator
EOS_CLASS = N_CHAR_CLASSES  # end of sequence: the only class allowed after the last step
OTHER_CLASS = N_CHAR_CLASSES + 1  # any other token (pad, prose): never allowed
FORBIDDEN = -1


@dataclass(frozen=True)
class LLMTimeGrammar:
    """The text of ``n_steps`` LLMTIME steps of ``n_vars`` numbers (see the module docstring)."""

    n_steps: int
    n_vars: int = 2
    max_int_digits: int = 3
    fmt: LLMTimeFormat = DEFAULT_FORMAT

    def __post_init__(self) -> None:
        for name in ("n_steps", "n_vars", "max_int_digits"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"LLMTimeGrammar.{name} must be an int >= 1, got {getattr(self, name)!r}")

    @property
    def characters(self) -> str:
        """The alphabet in class order: digits, ``.``, value separator, step separator."""
        return DIGITS + "." + self.fmt.value_sep + self.fmt.step_sep

    @property
    def number_regex(self) -> str:
        return rf"(?:0|[1-9][0-9]{{0,{self.max_int_digits - 1}}})\.[0-9]{{{self.fmt.precision}}}"

    def regex(self) -> re.Pattern[str]:
        """The whole text the grammar accepts (EOS excluded); use with ``fullmatch``."""
        sep, end = re.escape(self.fmt.value_sep), re.escape(self.fmt.step_sep)
        step = rf"{self.number_regex}(?:{sep}{self.number_regex}){{{self.n_vars - 1}}}{end}"
        return re.compile(rf"(?:{step}){{{self.n_steps}}}")

    @property
    def max_step_tokens(self) -> int:
        """Tokens of the longest step: ``V`` numbers of ``D + 1 + p`` characters and ``V`` separators."""
        return self.n_vars * (self.max_int_digits + 1 + self.fmt.precision + 1)

    @property
    def max_new_tokens(self) -> int:
        """The most tokens a constrained generation can take: ``m`` longest steps."""
        return self.n_steps * self.max_step_tokens

    @cached_property
    def tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``next_state`` int64 ``(n_states, 15)`` and ``allowed`` bool ``(n_states, 14)``.

        Column order: the 13 character classes, EOS, then (``next_state`` only) any other
        token. A token the state does not allow leads to the final state: it can only get
        there if something after this processor forced it, and the decoder reports it.
        """
        step_next = torch.tensor(self._step_automaton())  # (S, 13): intra-step successor, S = "step complete"
        n_intra = len(step_next)
        done = self.n_steps * n_intra  # the final state
        allowed_in_step = step_next != FORBIDDEN  # (S, 13)
        step_start = torch.arange(self.n_steps)[:, None, None] * n_intra  # (m, 1, 1)
        successors = torch.where(allowed_in_step, step_start + step_next, done)  # (m, S, 13); S -> next step
        next_state = torch.full((done + 1, OTHER_CLASS + 1), done, dtype=torch.int64)
        next_state[:done, :N_CHAR_CLASSES] = successors.reshape(done, N_CHAR_CLASSES)
        allowed = torch.zeros((done + 1, EOS_CLASS + 1), dtype=torch.bool)
        allowed[:done, :N_CHAR_CLASSES] = allowed_in_step.repeat(self.n_steps, 1)
        allowed[done, EOS_CLASS] = True  # after the last step: EOS only; every token keeps it there
        return next_state, allowed

    @property
    def final_state(self) -> int:
        return len(self.tables[0]) - 1

    def _step_automaton(self) -> list[list[int]]:
        """Transitions inside one step over the 13 character classes (``FORBIDDEN`` = not allowed);
        the successor ``len(result)`` means "step complete"."""
        D, p, V = self.max_int_digits, self.fmt.precision, self.n_vars
        # States of one number, from its first state `start`: start; after a leading "0" (start + 1);
        # after j = 1..D integer digits (start + 1 + j); after "." and j = 0..p decimals (start + 2 + D + j).
        per_number = 2 + D + (p + 1)
        complete = V * per_number
        dot, value_sep, step_sep = 10, 11, 12
        rows = [[FORBIDDEN] * N_CHAR_CLASSES for _ in range(complete)]
        for v in range(V):
            start = v * per_number
            zero, integer, fraction = start + 1, start + 1, start + 2 + D  # integer + j, fraction + j
            rows[start][0] = zero
            rows[start][1:10] = [integer + 1] * 9
            rows[zero][dot] = fraction
            for j in range(1, D + 1):
                rows[integer + j][dot] = fraction
                if j < D:
                    rows[integer + j][:10] = [integer + j + 1] * 10
            for j in range(p):
                rows[fraction + j][:10] = [fraction + j + 1] * 10
            if v < V - 1:
                rows[fraction + p][value_sep] = start + per_number
            else:
                rows[fraction + p][step_sep] = complete
        return rows


def alphabet_token_ids(tokenizer, grammar: LLMTimeGrammar) -> list[int]:
    """Token id of each character class, looked up from ``tokenizer``.

    Raises:
        ValueError: a character is not exactly one token, or two share an id.
    """
    ids = []
    for char in grammar.characters:
        encoded = tokenizer.encode(char, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"the tokenizer writes {char!r} as {len(encoded)} tokens {encoded}; constrained "
                             "decoding needs one token per LLMTIME character")
        ids.append(int(encoded[0]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"the tokenizer maps distinct LLMTIME characters {grammar.characters!r} to shared ids {ids}")
    return ids


class LLMTimeLogitsProcessor(LogitsProcessor):
    """Sets every logit the grammar does not allow to ``-inf``, per sequence.

    Use one instance per ``generate`` call: it reads the prompt length on its first call and
    then advances each row's automaton by the token generated since. It works for greedy
    search and sampling; ``generate`` applies it before temperature and top-p, so those only
    ever see grammatical tokens. ``subset``: ``generate`` runs in its subset ids
    (:func:`~experiments.forecasting.vocabulary_subset.vocabulary_subset`), so the scores
    are ``(rows, K)`` and the ids the subset's.
    """

    def __init__(self, grammar: LLMTimeGrammar, tokenizer, eos_token_id: int,
                 subset: VocabularySubset | None = None) -> None:
        self.grammar = grammar
        class_token_ids = [*alphabet_token_ids(tokenizer, grammar), int(eos_token_id)]
        self.class_token_ids = torch.tensor(class_token_ids) if subset is None else subset.to_subset(
            class_token_ids)  # (14,)
        self.next_state, self.allowed = grammar.tables
        self.state: torch.Tensor | None = None  # (rows,) automaton state per sequence
        self._length: int | None = None  # sequence length at the last call

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        device = scores.device
        if self.state is None:  # prefill: nothing generated yet
            self._to(device)
            self.state = torch.zeros(len(input_ids), dtype=torch.int64, device=device)
        elif input_ids.shape[1] != self._length + 1:
            raise RuntimeError(f"LLMTimeLogitsProcessor saw length {input_ids.shape[1]} after {self._length}: "
                               "use a fresh processor for each generate call")
        else:
            last = input_ids[:, -1]  # (rows,)
            match = last[:, None] == self.class_token_ids[None, :]  # (rows, 14)
            token_class = torch.where(match.any(dim=1), match.int().argmax(dim=1), OTHER_CLASS)  # (rows,)
            self.state = self.next_state[self.state, token_class]
        self._length = input_ids.shape[1]
        allowed = self.allowed[self.state]  # (rows, 14)
        kept = scores[:, self.class_token_ids].masked_fill(~allowed, float("-inf"))  # (rows, 14)
        constrained = torch.full_like(scores, float("-inf"))  # (rows, vocab)
        constrained[:, self.class_token_ids] = kept
        return constrained

    @property
    def finished(self) -> torch.Tensor:
        """``(rows,)`` bool: the row has its ``n_steps`` steps (only EOS is allowed now)."""
        if self.state is None:
            raise RuntimeError("the processor has not seen a generation step yet")
        return self.state == self.grammar.final_state

    def _to(self, device: torch.device) -> None:
        self.class_token_ids = self.class_token_ids.to(device)
        self.next_state, self.allowed = self.next_state.to(device), self.allowed.to(device)


class StepStoppingCriteria(StoppingCriteria):
    """Marks a row done once its continuation holds ``n_steps`` step separators.

    ``prompt_length`` is the (padded) prompt length: separators in the prompt do not count.
    """

    def __init__(self, step_token_id: int, n_steps: int, prompt_length: int) -> None:
        self.step_token_id, self.n_steps, self.prompt_length = int(step_token_id), n_steps, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None, **kwargs) -> torch.BoolTensor:
        generated = input_ids[:, self.prompt_length:]  # (rows, new tokens so far)
        return (generated == self.step_token_id).sum(dim=1) >= self.n_steps
