"""The primitive cost table and ``OpCount``, a count of primitive operations.

Every FLOP figure in :mod:`flopcount` is an ``OpCount`` (how many adds, muls, exps, ...)
priced by ``PRIMITIVE_COSTS``, so a reader can always see where each FLOP comes from.

Costs (FLOPs per primitive), from the project brief:

========================  =====
add, sub, neg             1
mul, div, inv (1/x)       1
relu, abs, cmp            1
exp, log                  10
sin, cos, sqrt            10
========================  =====

``cmp`` (a comparison, as in a running maximum) is not in the brief's table; it is priced
like ReLU because ``relu(x) = max(x, 0)`` *is* one comparison. Softmax's max-subtraction
(``exact`` convention) needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

PRIMITIVE_COSTS: Mapping[str, int] = MappingProxyType(
    {
        "add": 1,
        "sub": 1,
        "neg": 1,
        "mul": 1,
        "div": 1,
        "inv": 1,
        "relu": 1,
        "abs": 1,
        "cmp": 1,
        "exp": 10,
        "log": 10,
        "sin": 10,
        "cos": 10,
        "sqrt": 10,
    }
)
"""FLOPs charged per primitive operation (read-only)."""

PRIMITIVES: tuple[str, ...] = tuple(PRIMITIVE_COSTS)
_COSTS: tuple[int, ...] = tuple(PRIMITIVE_COSTS.values())
_INDEX: dict[str, int] = {name: i for i, name in enumerate(PRIMITIVES)}


class OpCount:
    """Immutable counts of primitive operations, e.g. ``OpCount(mul=6, add=4)``.

    Counts are exact Python ints (no float rounding). ``a + b`` adds counts primitive by
    primitive, ``a * k`` (``k`` an int) repeats an operation ``k`` times, ``.flops`` prices the
    counts with ``PRIMITIVE_COSTS``.
    """

    __slots__ = ("_counts",)

    def __init__(self, **counts: int) -> None:
        values = [0] * len(PRIMITIVES)
        for name, count in counts.items():
            if name not in _INDEX:
                raise ValueError(f"unknown primitive {name!r}; known primitives: {', '.join(PRIMITIVES)}")
            if isinstance(count, bool) or not isinstance(count, int):
                raise TypeError(f"count of {name!r} must be an int, got {count!r} ({type(count).__name__})")
            if count < 0:
                raise ValueError(f"count of {name!r} must be >= 0, got {count}")
            values[_INDEX[name]] = count
        self._counts = tuple(values)

    @classmethod
    def _from_tuple(cls, counts: tuple[int, ...]) -> OpCount:
        # Internal fast path: ``counts`` is already a validated tuple in PRIMITIVES order.
        new = object.__new__(cls)
        new._counts = counts
        return new

    @classmethod
    def total_of(cls, counts: Iterable[OpCount]) -> OpCount:
        """Sum of many counts in one pass (faster than chaining ``+``)."""
        columns = zip(*(c._counts for c in counts))
        summed = tuple(map(sum, columns))
        return cls._from_tuple(summed) if summed else ZERO

    @property
    def flops(self) -> int:
        """FLOPs: each primitive count times its cost in ``PRIMITIVE_COSTS``."""
        return sum(n * cost for n, cost in zip(self._counts, _COSTS))

    @property
    def operations(self) -> int:
        """Number of primitive operations, unpriced."""
        return sum(self._counts)

    def __getitem__(self, primitive: str) -> int:
        if primitive not in _INDEX:
            raise KeyError(f"unknown primitive {primitive!r}")
        return self._counts[_INDEX[primitive]]

    def as_dict(self, nonzero: bool = False) -> dict[str, int]:
        """Counts by primitive in table order (only the non-zero ones if ``nonzero``)."""
        return {name: n for name, n in zip(PRIMITIVES, self._counts) if n or not nonzero}

    def __add__(self, other: OpCount) -> OpCount:
        if not isinstance(other, OpCount):
            return NotImplemented
        return OpCount._from_tuple(tuple(a + b for a, b in zip(self._counts, other._counts)))

    def __mul__(self, times: int) -> OpCount:
        if isinstance(times, bool) or not isinstance(times, int):
            return NotImplemented
        if times < 0:
            raise ValueError(f"an OpCount can only be repeated a non-negative number of times, got {times}")
        return OpCount._from_tuple(tuple(n * times for n in self._counts))

    __rmul__ = __mul__

    def __bool__(self) -> bool:
        return any(self._counts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpCount) and self._counts == other._counts

    def __hash__(self) -> int:
        return hash(self._counts)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.as_dict(nonzero=True).items())
        return f"OpCount({inner})"


ZERO = OpCount()
"""The empty count (0 FLOPs)."""
