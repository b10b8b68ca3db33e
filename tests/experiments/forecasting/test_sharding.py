"""The ``generate`` calls of a forecast shared over two CPU processes (``accelerate launch``,
gloo) write and charge exactly what one process does; a refusal stops both ranks at the same call.

The two-process side is this file run as a script under the launcher (see ``__main__``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.forecasting.generate import ForecastConfig, forecast_series, run_in_order
from experiments.forecasting.sharding import generation_runner, rounds, run_sharded
from experiments.training.distributed import world
from experiments.models.loading import build_tiny_model
from flopcount import Budget, Ledger
import lvdata

REPO_ROOT = Path(__file__).resolve().parents[3]
K, M, SERIES = 3, 1, 5
CONFIG = ForecastConfig(k=K, m=M, do_sample=True, samples=2, batch_size=2, seed=3)  # 3 calls: 2 rounds on 2 ranks


def examples() -> list[lvdata.ForecastExample]:
    trajectories = np.random.default_rng(0).uniform(0.5, 20.0, size=(SERIES, K + M, 2))
    return [lvdata.prompt_target_split(t, 1.3, k=K, m=M) for t in trajectories]


def forecast(tokenizer, ledger: Path, limit: int, runner) -> dict:
    """Forecast :func:`examples` charging ``ledger`` on rank 0; what this rank got, JSON-ready."""
    rank = world()[0]
    model = build_tiny_model(seed=0)
    budget = Budget(limit, ledger, "forecast", model) if rank == 0 else None
    try:
        if budget is None:
            output = forecast_series(model, tokenizer, examples(), CONFIG, None, progress=False, runner=runner)
        else:
            with budget:
                output = forecast_series(model, tokenizer, examples(), CONFIG, budget, progress=False, runner=runner)
    except Exception as error:  # noqa: BLE001 - the refusal each rank sees is the point
        return {"error": type(error).__name__}
    return {"texts": output.texts, "generated_tokens": output.generated_tokens.tolist(),
            "batches": [[list(b.indices), b.prompt_len, b.new_tokens] for b in output.batches]}


def charges(ledger: Path) -> list[tuple]:
    with Ledger(ledger) as opened:
        opened.check()
        return [(c.phase, c.step, c.flops, c.tokens, c.reserved_flops, c.is_rerun) for c in opened.charges()]


def test_rounds_give_each_rank_one_call_of_each_round():
    assert rounds(3, 2) == [[0, 1], [2]]
    assert rounds(4, 2) == [[0, 1], [2, 3]]
    assert rounds(2, 4) == [[0, 1]]
    assert rounds(3, 1) == [[0], [1], [2]]
    assert rounds(0, 2) == []


def test_one_process_makes_the_calls_in_order():
    assert world() == (0, 1)
    assert generation_runner() is run_in_order


@pytest.mark.slow
def test_two_ranks_write_and_charge_what_one_process_does(qwen_tokenizer, qwen_assets, tmp_path):
    reference = forecast(qwen_tokenizer, tmp_path / "one.sqlite", 10**15, run_in_order)
    single = charges(tmp_path / "one.sqlite")
    assert len(reference["batches"]) == len(single) == 3
    # A limit that holds the first round at its maximum, but not the third call after it settles.
    (*_, reserved0, _), (*_, reserved1, _), (*_, reserved2, _) = single
    slack = sum(reserved - flops for _, _, flops, _, reserved, _ in single[:2])
    assert reserved2 > slack, "the test's limit would not refuse the third call"
    tight = reserved0 + reserved1
    refused = forecast(qwen_tokenizer, tmp_path / "one-tight.sqlite", tight, run_in_order)
    assert refused == {"error": "BudgetExceeded"} and charges(tmp_path / "one-tight.sqlite") == single[:2]

    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([*launcher, __file__, str(qwen_assets), str(tmp_path), str(tight)], env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    for rank in (0, 1):  # every rank holds the merged forecasts: all calls, in call order
        assert json.loads((tmp_path / f"full-{rank}.json").read_text()) == reference
    assert charges(tmp_path / "two.sqlite") == single  # same charges, same order, one session (rank 0's)
    assert json.loads((tmp_path / "tight-0.json").read_text()) == {"error": "BudgetExceeded"}
    assert json.loads((tmp_path / "tight-1.json").read_text()) == {"error": "MainRankFailed"}
    assert charges(tmp_path / "two-tight.sqlite") == single[:2]  # the first round ran and was settled


if __name__ == "__main__":  # one rank of the two-process test: python -m accelerate.commands.launch ... this file
    from experiments.pipeline.distributed import join_process_group
    from transformers import AutoTokenizer

    assets, out, tight = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    rank, world_size = join_process_group()
    assert world_size == 2, world_size
    tokenizer = AutoTokenizer.from_pretrained(assets)
    for name, ledger, limit in (("full", "two.sqlite", 10**15), ("tight", "two-tight.sqlite", tight)):
        got = forecast(tokenizer, out / ledger, limit, run_sharded)
        (out / f"{name}-{rank}.json").write_text(json.dumps(got))
