"""The value checks of the ledger: FLOPs, steps and tokens as exact ints it can hold."""

from __future__ import annotations

import pytest

from flopcount.ledger.exact import MAX_FLOPS, SQLITE_INTEGER_MAX
from flopcount.ledger.values import as_count, as_limit

E27 = 10**27


def test_a_float_beyond_64_bits_means_the_decimal_it_is_written_as():
    assert as_count(1e27, "x") == E27 and as_limit(1e27) == E27  # int(1e27) is 1000000000000000013287555072
    assert as_count(2.5e26, "x") == 25 * 10**25
    assert as_count(1e17, "x") == 10**17
    assert as_count(float(2**60), "x") == 2**60  # below 2**63 a float keeps its binary value, as before
    with pytest.raises(ValueError, match="whole number"):
        as_count(float("inf"), "x")
    with pytest.raises(ValueError, match=f"budget limit \\(FLOPs\\) must be between 0 and {MAX_FLOPS}"):
        as_limit(1e39)


@pytest.mark.parametrize("value, error, message", [
    (True, TypeError, "tokens must be an integer, got a bool"),
    ("12", TypeError, "tokens must be an integer, got str"),
    (2.5, ValueError, "tokens must be a whole number, got 2.5"),
    (-1, ValueError, f"tokens must be between 0 and {SQLITE_INTEGER_MAX}, got -1"),
    (SQLITE_INTEGER_MAX + 1, ValueError, "tokens must be between 0 and"),
])
def test_a_count_that_is_not_a_whole_number_in_range_is_refused_naming_it(value, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        as_count(value, "tokens", SQLITE_INTEGER_MAX)


def test_a_limit_is_a_positive_count_up_to_max_flops():
    assert as_limit(MAX_FLOPS) == MAX_FLOPS and as_count(0, "x") == 0
    with pytest.raises(ValueError, match="must be positive, got 0"):
        as_limit(0)
