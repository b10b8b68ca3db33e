"""Robust, honest decoding of LLMTIME text (typically model output) back to numbers.

``decode`` never raises on any text. It returns the values it could parse and a
:class:`DecodeDiagnostics` record counting every problem; a step that is not exactly
``precision``-decimal numbers, ``n_vars`` of them, becomes a NaN row, never a guessed number.

How text is split and classified (``;`` and ``,`` stand for the format's separators):

* Steps are the pieces between ``;``. A trailing ``;`` is a normal end: the empty tail after
  it is not a step. An empty piece between two ``;`` is a step with zero values
  (wrong arity).
* A step is valid when it is ``n_vars`` numbers joined by ``,``, each matching
  ``[0-9]+\\.[0-9]{precision}`` exactly. Numbers with another count of decimals, signs,
  exponents, empty fields and the like are *malformed numbers* (counted per field); a
  step with more or fewer fields than ``n_vars`` is a *wrong-arity step*.
* The last step of the text, when not followed by ``;``, is *truncated* when it is a strict
  prefix of a valid step: fewer values than ``n_vars`` (``"0.25,"``, ``"0.25"``) or a final
  number with fewer decimals than ``precision`` (``"0.25,1.5"``, ``"1."``). Such a step is
  reported as ``truncated_last_step`` (not as malformed) and is a NaN row.
* Every character that is not a digit, ``.`` or a separator is *non-numeric* (whitespace
  included: the format has none) and makes its step invalid.
* With ``n_steps=m`` only the first ``m`` steps are read (text after the ``m``-th ``;`` is
  ``ignored_chars``, not an error); if fewer than ``m`` steps are present, the missing rows
  are NaN and counted in ``missing_steps``.
"""

from __future__ import annotations

import math

import re
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from lvdata.llmtime import DEFAULT_FORMAT, LLMTimeFormat


@dataclass(frozen=True)
class DecodeDiagnostics:
    """What was found while decoding (counts refer to the steps that were read)."""

    n_steps: int  # rows returned, including NaN rows
    n_valid: int  # rows parsed cleanly
    truncated_last_step: bool
    malformed_numbers: int  # fields that are not a well-formed number
    wrong_arity_steps: int  # steps with a number of fields other than n_vars
    non_numeric_chars: int  # characters other than digits, '.', separators
    missing_steps: int = 0  # requested with n_steps but absent from the text
    ignored_chars: int = 0  # text after the requested n_steps steps (not parsed)

    @property
    def ok(self) -> bool:
        """True when every returned step parsed cleanly (ignored trailing text is fine)."""
        return self.n_valid == self.n_steps and not (
            self.truncated_last_step
            or self.malformed_numbers
            or self.wrong_arity_steps
            or self.non_numeric_chars
            or self.missing_steps
        )

    def as_dict(self) -> dict[str, int | bool]:
        return {**asdict(self), "ok": self.ok}


@dataclass(frozen=True)
class DecodeResult:
    """``values`` float64 ``(S, n_vars)`` in original units (NaN rows = unparsed steps)."""

    values: np.ndarray
    diagnostics: DecodeDiagnostics


@dataclass(frozen=True)
class _StepPatterns:
    number: re.Pattern[str]
    step: re.Pattern[str]
    truncated_step: re.Pattern[str]
    foreign_char: re.Pattern[str]


@lru_cache(maxsize=32)
def _patterns(fmt: LLMTimeFormat, n_vars: int) -> _StepPatterns:
    sep = re.escape(fmt.value_sep)
    partial_number = rf"(?:[0-9]+(?:\.[0-9]{{0,{fmt.precision}}})?)?"  # any prefix of a number
    allowed = re.escape("0123456789." + fmt.value_sep + fmt.step_sep)
    return _StepPatterns(
        number=re.compile(fmt.number_regex),
        step=re.compile(fmt.step_regex(n_vars)),
        truncated_step=re.compile(rf"(?:{fmt.number_regex}{sep}){{0,{n_vars - 1}}}{partial_number}"),
        foreign_char=re.compile(rf"[^{allowed}]"),
    )


def decode(
    text: str,
    alpha: float = 1.0,
    n_vars: int = 2,
    fmt: LLMTimeFormat = DEFAULT_FORMAT,
    n_steps: int | None = None,
) -> DecodeResult:
    """Parse LLMTIME ``text`` into values in original units (parsed number × ``alpha``).

    ``n_steps=None`` reads every step; an int reads exactly that many rows (see module doc).
    Raises only on bad arguments (``text`` not a str, ``alpha`` not positive, ...), never on
    the content of ``text``.
    """
    if not isinstance(text, str):
        raise TypeError(f"decode expects text as str, got {type(text).__name__}")
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be positive and finite, got {alpha!r}")
    if n_vars < 1 or (n_steps is not None and n_steps < 0):
        raise ValueError(f"need n_vars >= 1 and n_steps >= 0, got n_vars={n_vars}, n_steps={n_steps}")
    patterns = _patterns(fmt, n_vars)

    pieces = text.split(fmt.step_sep)
    tail = pieces.pop()  # text after the last separator ("" if the text ends with one)
    segments = pieces + ([tail] if tail else [])
    cut = n_steps is not None and len(segments) > n_steps
    if cut:
        segments = segments[:n_steps]
    ignored_chars = len(text) - sum(len(segment) + 1 for segment in segments) if cut else 0
    unterminated_index = len(segments) - 1 if tail and not cut else -1

    rows = np.full((len(segments), n_vars), np.nan)
    n_valid = malformed = wrong_arity = foreign = 0
    truncated = False
    for index, segment in enumerate(segments):
        if patterns.step.fullmatch(segment):
            parsed = [float(field) for field in segment.split(fmt.value_sep)]
            overflowing = sum(not math.isfinite(value * alpha) for value in parsed)
            if overflowing:  # well-formed digits, but not a finite number in original units
                malformed += overflowing
            else:
                rows[index] = parsed
                n_valid += 1
        elif index == unterminated_index and patterns.truncated_step.fullmatch(segment):
            truncated = True
        else:
            fields = segment.split(fmt.value_sep) if segment else []
            wrong_arity += len(fields) != n_vars
            malformed += sum(not patterns.number.fullmatch(field) for field in fields)
            foreign += len(patterns.foreign_char.findall(segment))

    missing = 0 if n_steps is None else n_steps - len(segments)
    values = np.concatenate([rows * alpha, np.full((missing, n_vars), np.nan)])  # (S, n_vars)
    diagnostics = DecodeDiagnostics(
        n_steps=len(values),
        n_valid=n_valid,
        truncated_last_step=truncated,
        malformed_numbers=malformed,
        wrong_arity_steps=wrong_arity,
        non_numeric_chars=foreign,
        missing_steps=missing,
        ignored_chars=ignored_chars,
    )
    return DecodeResult(values=values, diagnostics=diagnostics)


def decode_steps(
    text: str, n_steps: int, alpha: float = 1.0, n_vars: int = 2, fmt: LLMTimeFormat = DEFAULT_FORMAT
) -> DecodeResult:
    """Exactly ``n_steps`` rows from the start of ``text`` (what a forecaster asks for)."""
    return decode(text, alpha=alpha, n_vars=n_vars, fmt=fmt, n_steps=n_steps)
