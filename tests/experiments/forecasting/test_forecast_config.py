"""``ForecastConfig``: refused when made with settings no forecast can follow; the grammar it implies."""

from __future__ import annotations

import pytest

from experiments.forecasting.forecast_config import ForecastConfig


@pytest.mark.parametrize(("fields", "message"), [
    ({"samples": 3}, "do_sample=True"),
    ({"band": (0.9, 0.1)}, "band"),
    ({"m": 0}, "m must be"),
    ({"do_sample": True, "top_p": 0.0}, "top_p"),
])
def test_a_bad_config_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ForecastConfig(**fields)


def test_the_token_bound_is_the_grammars_unless_set_and_names_say_the_method():
    config = ForecastConfig(k=5, m=3, max_int_digits=2)
    assert config.new_token_bound == config.grammar().max_new_tokens >= 3 * len("99.99,99.99;")  # m longest steps
    assert ForecastConfig(m=3, max_new_tokens=7).new_token_bound == 7
    assert config.method_name == "llm-greedy"
    assert ForecastConfig(do_sample=True, samples=4, constrained=False).method_name == "llm-sampled-4-unconstrained"
