"""Exact FLOP counts of any size in SQLite (ledger schema version 3).

SQLite's INTEGER is a signed 64-bit number (at most ``2**63 - 1`` ~ 9.2e18 FLOPs), less than a
large pre-training budget (1e24-1e27 FLOPs). A FLOP count (a limit, a charge, a reservation, a
running total) is therefore stored as:

- an **INTEGER** while it fits in 64 bits: every value a ledger of schema version 1 or 2 could
  hold, byte for byte as it was, so upgrading a ledger rewrites no value; and
- beyond that, its **canonical decimal TEXT**: digits only, no sign, no leading zero, at most
  :data:`MAX_FLOP_DIGITS` digits, and used only for values above ``2**63 - 1``.

The columns are declared without a type (no affinity), so SQLite never converts either form
(an INTEGER-affinity column would turn a 28-digit string into a lossy REAL), and CHECK
constraints (:func:`exact_count_check`) refuse anything else. Each value has exactly one
representation, so equality is exact, and :func:`at_least` compares two counts in SQL.

Why not the alternatives: decimal TEXT for every value would rewrite every row of an old
ledger and turn the small, common values into strings for every other reader of the file; a
pair of INTEGER columns (high and low 63-bit words) or a BLOB would be exact but unreadable in
the ``sqlite3`` shell and make every query reassemble the number. What this costs: SQL's
``SUM()`` is no longer safe on these columns (it turns TEXT into REAL), so the ledger never
sums in SQL: :class:`ExactSum` (registered as ``exact_sum()`` by :func:`register_functions`)
sums in Python ints, and the running total is computed in Python under the write lock.

The 38-digit bound (``10**38 - 1`` FLOPs, 1e11 times the largest budget in sight) is the
precision of SQL ``DECIMAL(38, 0)`` in most databases, so an exported ledger stays exact there.
"""

from __future__ import annotations

import sqlite3

SQLITE_INTEGER_MAX = 2**63 - 1  # the largest SQLite INTEGER: steps, tokens, ids
MAX_FLOP_DIGITS = 38
MAX_FLOPS = 10**MAX_FLOP_DIGITS - 1  # the largest FLOP count a ledger stores


def encode_flops(value: int) -> int | str:
    """The stored form of the FLOP count ``value`` (an int in ``[0, MAX_FLOPS]``)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FLOPS:
        raise ValueError(f"a stored FLOP count must be an int in [0, {MAX_FLOPS}], got {value!r}")
    return value if value <= SQLITE_INTEGER_MAX else str(value)


def decode_flops(stored: int | str | None) -> int | None:
    """The int a stored FLOP count stands for (``None`` stays ``None``)."""
    if stored is None or isinstance(stored, int):
        return stored
    if isinstance(stored, str) and stored.isdigit() and stored.isascii():
        return int(stored)
    raise ValueError(f"not a stored FLOP count: {stored!r}")


def exact_count_check(column: str) -> str:
    """SQL condition: ``column`` holds a FLOP count in the encoding of this module."""
    return (
        f"(typeof({column}) = 'integer' AND {column} >= 0)"
        f" OR (typeof({column}) = 'text' AND {column} NOT GLOB '*[^0-9]*' AND {column} NOT GLOB '0*'"
        f" AND length({column}) <= {MAX_FLOP_DIGITS}"
        f" AND (length({column}) > 19 OR (length({column}) = 19 AND {column} > '{SQLITE_INTEGER_MAX}')))"
    )


def at_least(left: str, right: str) -> str:
    """SQL condition: count ``left`` >= count ``right``. An INTEGER sorts below any TEXT in
    SQLite, which is also numeric order here (TEXT only holds values above every INTEGER);
    two TEXT counts compare by length, then digit by digit."""
    return (
        f"(CASE WHEN typeof({left}) = 'text' AND typeof({right}) = 'text'"
        f" THEN length({left}) > length({right}) OR (length({left}) = length({right}) AND {left} >= {right})"
        f" ELSE {left} >= {right} END)"
    )


class ExactSum:
    """SQLite aggregate ``exact_sum(x)``: the exact sum of stored counts, in the same encoding.
    NULLs are skipped (they add 0); over no rows at all it is NULL, like ``SUM``."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, value: int | str | None) -> None:
        if value is not None:
            self.total += decode_flops(value)

    def finalize(self) -> int | str:
        return self.total if self.total <= SQLITE_INTEGER_MAX else str(self.total)


def register_functions(connection: sqlite3.Connection) -> None:
    """Make ``exact_sum()`` available to ``connection``'s queries."""
    connection.create_aggregate("exact_sum", 1, ExactSum)
