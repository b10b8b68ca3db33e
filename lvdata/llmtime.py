"""LLMTIME text format and its vectorised encoder.

A trajectory ``(T, V)`` of non-negative values is divided by ``α``, rounded to ``precision``
decimals, and written with variables of one step joined by ``value_sep`` and steps joined
by ``step_sep``, no spaces and no trailing separator::

    0.25,1.50;0.27,1.47;0.31,1.42

Every number has at least one integer digit, a decimal point and exactly ``precision``
decimals. Rounding is to the nearest ``10^-precision`` (ties to even), so
``|decode(encode(x)) − x| ≤ 0.5·10^-precision·α`` up to float rounding.

The encoder builds the characters with numpy integer arithmetic over all values at once
(no per-value Python loop or string formatting); only the final split into one string per
trajectory loops, once per trajectory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
import numpy as np

MAX_PRECISION = 8
MAX_EXACT_INTEGER = 2**53  # scaled values (in units of 10^-precision) must stay exact in float64


@dataclass(frozen=True)
class LLMTimeFormat:
    """How numbers are written: ``precision`` decimals (1..8), single-character ASCII separators."""

    precision: int = 2
    value_sep: str = ","
    step_sep: str = ";"

    def __post_init__(self) -> None:
        if not isinstance(self.precision, int) or not 1 <= self.precision <= MAX_PRECISION:
            raise ValueError(
                f"LLMTimeFormat.precision must be an int in 1..{MAX_PRECISION}, got {self.precision!r}"
            )
        for name in ("value_sep", "step_sep"):
            sep = getattr(self, name)
            if not isinstance(sep, str) or len(sep) != 1 or not sep.isascii() or sep.isdigit() or sep == ".":
                raise ValueError(
                    f"LLMTimeFormat.{name} must be one ASCII character other than a digit or '.', got {sep!r}"
                )
        if self.value_sep == self.step_sep:
            raise ValueError(f"LLMTimeFormat separators must differ, both are {self.value_sep!r}")

    @property
    def number_regex(self) -> str:
        """Regex source of one encoded number, e.g. ``[0-9]+\\.[0-9]{2}``."""
        return rf"[0-9]+\.[0-9]{{{self.precision}}}"

    def step_regex(self, n_vars: int = 2) -> str:
        """Regex source of one complete step of ``n_vars`` numbers."""
        number, sep = self.number_regex, re.escape(self.value_sep)
        return rf"{number}(?:{sep}{number}){{{n_vars - 1}}}"

    def trajectory_regex(self, n_vars: int = 2) -> re.Pattern[str]:
        """Compiled grammar of a whole encoded trajectory (use with ``fullmatch``)."""
        step = self.step_regex(n_vars)
        return re.compile(rf"{step}(?:{re.escape(self.step_sep)}{step})*")

    @property
    def scale(self) -> int:
        """``10^precision``: one encoded unit is ``1/scale`` of a scaled value."""
        return 10**self.precision


DEFAULT_FORMAT = LLMTimeFormat()


def encode(
    trajectories: np.ndarray, alpha: float | np.ndarray, fmt: LLMTimeFormat = DEFAULT_FORMAT
) -> str | list[str]:
    """Encode one trajectory ``(T, V)`` to a string, or a batch ``(N, T, V)`` to a list of strings.

    Args:
        trajectories: non-negative finite values in original units.
        alpha: scale factor(s): a float, or one per trajectory ``(N,)`` for a batch.
        fmt: the text format.

    Raises:
        ValueError: wrong shape, negative or non-finite values, bad ``alpha``, or a scaled
            value too large to be written exactly at this precision.
    """
    values = np.asarray(trajectories, dtype=np.float64)
    single = values.ndim == 2
    if single:
        values = values[None]
    if values.ndim != 3 or 0 in values.shape:
        raise ValueError(
            f"encode expects a non-empty (T, V) or (N, T, V) array, got shape {np.shape(trajectories)}"
        )
    alphas = _checked_alphas(alpha, values.shape[0])
    texts = _encode_batch(_fixed_point(values, alphas, fmt), fmt)
    return texts[0] if single else texts


def _checked_alphas(alpha: float | np.ndarray, n: int) -> np.ndarray:
    alphas = np.asarray(alpha, dtype=np.float64)
    if alphas.ndim == 0:
        alphas = np.full(n, float(alphas))
    if alphas.shape != (n,):
        raise ValueError(f"alpha must be a float or have shape ({n},), got shape {alphas.shape}")
    bad = ~(np.isfinite(alphas) & (alphas > 0))
    if bad.any():
        raise ValueError(
            f"alpha must be positive and finite, got {alphas[bad][:5].tolist()} "
            f"at trajectories {np.flatnonzero(bad)[:5].tolist()}"
        )
    return alphas


def _fixed_point(values: np.ndarray, alphas: np.ndarray, fmt: LLMTimeFormat) -> np.ndarray:
    """Scaled values as integers in units of ``10^-precision``: int64 ``(N, T, V)``."""
    for problem, bad in (("NaN/inf", ~np.isfinite(values)), ("negative values", values < 0)):
        if bad.any():
            raise ValueError(f"cannot encode {problem} (first at index {np.argwhere(bad)[0].tolist()})")
    units = np.rint(values / alphas[:, None, None] * fmt.scale)
    if units.max() > MAX_EXACT_INTEGER:
        raise ValueError(
            f"scaled value {units.max() / fmt.scale:.6g} is too large to encode exactly with "
            f"precision {fmt.precision} (limit {MAX_EXACT_INTEGER / fmt.scale:.6g}); use a larger alpha"
        )
    return units.astype(np.int64)


def _encode_batch(units: np.ndarray, fmt: LLMTimeFormat) -> list[str]:
    """Write int64 ``units (N, T, V)`` as one string per trajectory, with array ops only."""
    n, n_steps, n_vars = units.shape
    n_values = n_steps * n_vars
    largest = int(units.max())
    n_int = len(str(largest // fmt.scale))  # integer digits of the widest number
    dot = n_int  # column of the decimal point

    # One fixed-width cell per value: [integer digits | '.' | decimals | separator].
    cells = np.empty((n, n_values, n_int + 1 + fmt.precision + 1), dtype=np.uint8)  # (N, M, width)
    rest = units.reshape(n, n_values).astype(np.uint32 if largest < 2**32 else np.uint64)
    # Digits least significant first: decimals right to left, then integer digits right to left.
    digit_columns = [*range(dot + fmt.precision, dot, -1), *range(n_int - 1, -1, -1)]
    for column in digit_columns:  # one array pass per digit position, not per value
        quotient = rest // 10
        cells[..., column] = rest - quotient * 10 + ord("0")
        rest = quotient
    cells[..., dot] = ord(".")
    is_last_var = np.arange(n_values) % n_vars == n_vars - 1  # (M,)
    cells[..., -1] = np.where(is_last_var, ord(fmt.step_sep), ord(fmt.value_sep))

    keep = np.ones(cells.shape, dtype=bool)
    leading = cells[..., : n_int - 1]  # integer digits before the units digit, which always stays
    keep[..., : n_int - 1] = np.logical_or.accumulate(leading != ord("0"), axis=-1)  # drop leading zeros
    keep[:, -1, -1] = False  # no separator after the last value

    text = cells[keep].tobytes().decode("ascii")  # row-major: trajectories in order
    lengths = keep.reshape(n, -1).sum(axis=1)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    return [text[start:end] for start, end in zip(starts.tolist(), ends.tolist())]
