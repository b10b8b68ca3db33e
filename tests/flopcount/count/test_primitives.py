"""The primitive cost table and OpCount arithmetic."""

import pytest

from flopcount import PRIMITIVE_COSTS, OpCount


def test_cost_table_is_the_briefs_table_plus_cmp():
    assert dict(PRIMITIVE_COSTS) == {
        "add": 1, "sub": 1, "neg": 1, "mul": 1, "div": 1, "inv": 1, "relu": 1, "abs": 1,
        "cmp": 1, "exp": 10, "log": 10, "sin": 10, "cos": 10, "sqrt": 10,
    }
    with pytest.raises(TypeError):
        PRIMITIVE_COSTS["add"] = 2  # read-only


def test_flops_price_each_primitive():
    count = OpCount(add=3, mul=2, exp=1, sqrt=2, cmp=4)
    assert count.flops == 3 + 2 + 10 + 20 + 4
    assert count.operations == 12
    assert count["exp"] == 1 and count["div"] == 0


def test_arithmetic_is_exact_and_immutable():
    a, b = OpCount(add=1, mul=2), OpCount(mul=5, cos=1)
    assert a + b == OpCount(add=1, mul=7, cos=1)
    assert a * 3 == 3 * a == OpCount(add=3, mul=6)
    huge = OpCount(mul=10**17) * 10**3
    assert huge.flops == 10**20  # Python ints: no float rounding
    assert a == OpCount(add=1, mul=2)  # operands unchanged
    assert OpCount.total_of([a, b, a]) == OpCount(add=2, mul=9, cos=1)
    assert OpCount.total_of([]) == OpCount() and not OpCount()


def test_as_dict_keeps_table_order():
    count = OpCount(sqrt=1, add=2)
    assert list(count.as_dict()) == list(PRIMITIVE_COSTS)
    assert count.as_dict(nonzero=True) == {"add": 2, "sqrt": 1}


@pytest.mark.parametrize("kwargs, error", [
    ({"fma": 1}, ValueError),
    ({"add": -1}, ValueError),
    ({"add": 1.5}, TypeError),
    ({"add": True}, TypeError),
])
def test_bad_counts_are_refused_with_the_primitive_named(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        OpCount(**kwargs)


def test_repeat_needs_a_non_negative_int():
    with pytest.raises(ValueError):
        OpCount(add=1) * -2
    with pytest.raises(TypeError):
        OpCount(add=1) * 1.5
