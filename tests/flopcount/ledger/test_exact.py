"""The exact encoding of FLOP counts: INTEGER while they fit in 64 bits, canonical decimal TEXT
beyond, and SQL helpers that compare and sum them exactly."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing

import pytest

from flopcount.ledger.exact import MAX_FLOPS, SQLITE_INTEGER_MAX, decode_flops, encode_flops, register_functions


def test_encoding_round_trips_and_refuses_what_it_cannot_store():
    rng = random.Random(3)
    for value in [0, 1, SQLITE_INTEGER_MAX, SQLITE_INTEGER_MAX + 1, MAX_FLOPS,
                  *(rng.randrange(10**rng.randrange(1, 39)) for _ in range(200))]:
        assert decode_flops(encode_flops(value)) == value
        assert isinstance(encode_flops(value), int) == (value <= SQLITE_INTEGER_MAX)
    for bad in (-1, MAX_FLOPS + 1, 1.0, True):
        with pytest.raises(ValueError, match="stored FLOP count"):
            encode_flops(bad)
    for bad in ("1e27", "-5", " 5", "٣"):  # the last is an Arabic-Indic digit: str.isdigit() alone would pass it
        with pytest.raises(ValueError, match="not a stored FLOP count"):
            decode_flops(bad)


def test_the_sql_sum_is_exact_beyond_64_bits_and_ignores_nulls():
    with closing(sqlite3.connect(":memory:")) as db:
        register_functions(db)
        db.execute("CREATE TABLE t (flops)")
        values = [SQLITE_INTEGER_MAX, SQLITE_INTEGER_MAX, 10**37, 5]
        db.executemany("INSERT INTO t VALUES (?)", [(encode_flops(v),) for v in values] + [(None,)])
        (summed,) = db.execute("SELECT exact_sum(flops) FROM t").fetchone()
        assert decode_flops(summed) == sum(values)  # a float sum would round the 10**37 away
        assert db.execute("SELECT exact_sum(flops) FROM t WHERE 0").fetchone() == (None,)
