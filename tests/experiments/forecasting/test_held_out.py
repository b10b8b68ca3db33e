"""evaluate_test_split: the LLM and every baseline on the same test trajectories, one metric
path, results JSON/Markdown/arrays/plots written, nothing overwritten or spent by mistake."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from experiments.forecasting.baselines import BASELINES
from experiments.data import DataConfig, prepare_data
from experiments.forecasting.held_out import evaluate_test_split
from experiments.forecasting.generate import ForecastConfig
from experiments.forecasting.metrics import ValidationMetrics
from experiments.models.loading import build_tiny_model
from flopcount import Budget, Ledger

K, M = 8, 3
TEST_IDS = (972, 10, 20)
GREEDY = ForecastConfig(k=K, m=M, max_int_digits=2)
SAMPLED = ForecastConfig(k=K, m=M, max_int_digits=2, do_sample=True, samples=2, seed=1)


@pytest.fixture(scope="module")
def data(real_data_path, qwen_tokenizer):
    return prepare_data(DataConfig(path=real_data_path, test_ids=TEST_IDS), qwen_tokenizer)


@pytest.fixture(scope="module")
def model():
    return build_tiny_model(seed=0)


@pytest.fixture(scope="module")
def evaluated(model, qwen_tokenizer, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    with Budget(10**15, out / "ledger.sqlite", "evaluate", model) as budget:
        results = evaluate_test_split(model, qwen_tokenizer, data, [GREEDY, SAMPLED], budget, out / "test",
                                      step=12, validation=ValidationMetrics(1.25, 4096), n_bootstrap=50,
                                      progress=False)
    return out, results


def test_every_method_is_measured_on_the_same_test_trajectories(evaluated, data):
    out, results = evaluated
    document = json.loads((out / "test" / "results.json").read_text())
    names = [method["method"] for method in document["methods"]]
    assert names == ["llm-greedy", "llm-sampled-2", *BASELINES]
    assert document["test_ids"] == [10, 20, 972] and (document["k"], document["m"]) == (K, M)
    for method in document["methods"]:
        assert method["ids"] == [10, 20, 972] and method["n_trajectories"] == 3 and method["horizon"] == M
        assert 0 <= method["malformed_fraction"] <= 1 and 0 <= method["repaired_fraction"] <= 1
    # Persistence's MSE, recomputed here from the dataset: the truth is steps k..k+m of the test trajectories.
    ids = [10, 20, 972]
    truth, last = data.trajectories[ids, K:K + M], data.trajectories[ids, K - 1:K]
    persistence = next(method for method in document["methods"] if method["method"] == "persistence")
    expected = ((truth - last) ** 2).mean(axis=1)  # (N, 2)
    np.testing.assert_allclose(persistence["species"]["prey"]["per_trajectory"]["mse"], expected[:, 0], rtol=1e-6)
    np.testing.assert_allclose(persistence["species"]["predator"]["mse"]["mean"], expected[:, 1].mean(), rtol=1e-6)
    assert document["validation"] == {"cross_entropy_nats": 1.25, "perplexity": pytest.approx(np.exp(1.25)),
                                      "n_tokens": 4096}


def test_the_llm_rows_carry_their_charged_flops_and_format_failures(evaluated):
    out, results = evaluated
    document = json.loads((out / "test" / "results.json").read_text())
    with Ledger(out / "ledger.sqlite") as ledger:
        charges = ledger.charges()
        assert {charge.step for charge in charges} == {12} and not any(c.is_open_reservation for c in charges)
        assert document["generation_flops"] == ledger.spent > 0
    llm = {method["method"]: method for method in document["methods"] if method["method"].startswith("llm")}
    assert sum(method["extras"]["generation_flops"] for method in llm.values()) == document["generation_flops"]
    assert llm["llm-sampled-2"]["extras"]["samples_per_trajectory"] == 2
    assert all(method["extras"]["malformed_sample_fraction"] == 0 for method in llm.values())  # constrained
    assert llm["llm-sampled-2"]["species"]["prey"]["band_coverage"] is not None
    table = (out / "test" / "results.md").read_text()
    assert all(f"| {name} |" in table for name in ("llm-greedy", "llm-sampled-2", *BASELINES))


def test_forecasts_and_plots_are_written(evaluated, data):
    out, results = evaluated
    written = {path.name for path in results.files}
    assert {"forecast_972.png", "forecast_10.png", "forecast_20.png", "horizon_errors.png"} <= written
    for name in written:
        assert (out / "test" / name).stat().st_size > 0
    assert (out / "test" / "forecast_972.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    arrays = np.load(out / "test" / "forecasts.npz")
    np.testing.assert_array_equal(arrays["truth"], data.trajectories[[10, 20, 972], K:K + M])
    np.testing.assert_array_equal(arrays["llm-sampled-2/samples"], results.llm["llm-sampled-2"].samples)
    assert arrays["persistence/forecast"].shape == (3, M, 2)


def test_existing_results_are_never_overwritten_and_nothing_is_spent_first(model, qwen_tokenizer, data, tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "results.json").write_text("the user's results")
    with Budget(10**15, tmp_path / "ledger.sqlite", "evaluate", model) as budget:
        with pytest.raises(FileExistsError, match="results.json"):
            evaluate_test_split(model, qwen_tokenizer, data, GREEDY, budget, tmp_path / "test", progress=False)
        assert budget.spent == 0
    assert (tmp_path / "test" / "results.json").read_text() == "the user's results"


def test_baselines_alone_need_no_model(data, tmp_path):
    results = evaluate_test_split(None, None, data, GREEDY, None, tmp_path, methods=("persistence",), ids=[972],
                                  n_plots=1, n_bootstrap=0, progress=False)
    assert [metrics.method for metrics in results.metrics] == ["persistence"] and results.llm == {}
    assert {path.name for path in results.files} >= {"forecast_972.png", "results.json"}


def test_the_figures_name_the_model_they_show(data, tmp_path, monkeypatch):
    from experiments.forecasting import held_out

    titles = []
    for name in ("plot_forecast", "plot_horizon_errors"):
        real = getattr(held_out, name)
        monkeypatch.setattr(held_out, name, lambda *args, real=real, **kwargs: titles.append(kwargs["title"])
                            or real(*args, **kwargs))
    evaluate_test_split(None, None, data, GREEDY, None, tmp_path, methods=("persistence",), ids=[972], n_plots=1,
                        n_bootstrap=0, progress=False, model_label="untrained base model")
    assert titles == ["Mean absolute error against horizon (1 test trajectory); LLM: untrained base model",
                      "Test trajectory 972; LLM: untrained base model"]


def test_the_llm_writes_in_the_datas_format(model, qwen_tokenizer, tmp_path):
    data = prepare_data(DataConfig(simulate_systems=8, fractions=(0.5, 0.25, 0.25), precision=3), qwen_tokenizer)
    results = evaluate_test_split(model, qwen_tokenizer, data, ForecastConfig(k=4, m=2, max_int_digits=2), None,
                                  tmp_path, methods=("llm",), n_plots=0, n_bootstrap=0, progress=False)
    (output,) = results.llm.values()
    assert output.config.fmt.precision == 3
    assert all(re.fullmatch(r"(?:[0-9]+\.[0-9]{3},[0-9]+\.[0-9]{3};){2}", text) for row in output.texts for text in row)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"ids": [0]}, ValueError, "not in the test split"),
    ({"methods": ("llm", "oracle")}, ValueError, "unknown methods"),
    ({"config": [GREEDY, ForecastConfig(k=K, m=M + 1)]}, ValueError, "disagree on"),
])
def test_bad_requests_are_refused(data, tmp_path, kwargs, error, message):
    arguments = {"config": GREEDY, **kwargs}
    with pytest.raises(error, match=message):
        evaluate_test_split(None, None, data, budget=None, out_dir=tmp_path, progress=False, **arguments)
    assert not any(tmp_path.iterdir())
