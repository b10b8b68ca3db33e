"""Plan files: the shipped plans parse, and every kind of bad plan is refused with a clear error."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from experiments.data import load_or_simulate
from lvdata import DatasetError
from experiments.pipeline.plan import REST, PlanError, load_plan, parse_plan, run_configs, shipped_plans, stage_of

MINIMAL = """
[model]
source = "tiny"
[budget]
limit = 1e13
[[stages]]
kind = "train"
steps = 3
"""


def write_plan(tmp_path: Path, text: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_plans_are_the_coursework_and_the_demo():
    assert set(shipped_plans()) == {"coursework", "demo"}


def test_coursework_plan_is_the_brief():
    plan = load_plan("coursework")
    assert plan.model.source == "Qwen/Qwen2.5-0.5B-Instruct"
    assert plan.budget.limit == 10**17 and isinstance(plan.budget.limit, int)
    assert plan.budget.reserve == 0.02  # the final takes the rest: crashes' re-runs need room of their own
    assert (plan.training.lora_rank, plan.training.learning_rate, plan.training.batch_size,
            plan.training.context) == (4, 1e-5, 4, 512)
    assert plan.training.lora_targets == ("q_proj", "v_proj")
    kinds = [stage.kind for stage in plan.stages]
    assert kinds == ["baseline", "train", "sweep", "context", "final", "evaluate"]
    grid = plan.stage("grid")
    assert grid.grid == {"learning_rate": (1e-5, 5e-5, 1e-4), "lora_rank": (2, 4, 8)}
    assert grid.max_steps == 10_000
    context = plan.stage("context")
    assert (context.contexts, context.max_steps, context.source) == ((128, 512, 768), 2000, "grid")
    final = plan.stage("final")
    assert (final.max_steps, final.budget_share, final.source) == (30_000, REST, "context")
    assert plan.data.prompt_steps == 50 and plan.data.forecast_steps == 50


def test_demo_plan_uses_the_pretrained_base_and_falls_back_to_simulation():
    plan = load_plan("demo")
    assert plan.model.source == "llmtime-base"
    assert plan.data.fallback == "simulate"
    assert [stage.kind for stage in plan.stages] == [stage.kind for stage in load_plan("coursework").stages]


def test_a_missing_data_file_is_simulated_only_when_the_plan_says_so(tmp_path):
    text = MINIMAL + '[data]\npath = "nowhere.h5"\n'
    plan = load_plan(write_plan(tmp_path, text))
    with pytest.raises(DatasetError, match="nowhere.h5: file not found"):
        load_or_simulate(plan.data)
    simulated = load_plan(write_plan(tmp_path, text.replace('"nowhere.h5"', '"nowhere.h5"\nfallback = "simulate"'),
                                     "fallback.toml"))
    assert load_or_simulate(simulated.data)[2].startswith("simulate(")


def test_relative_data_paths_are_relative_to_the_plan_file(tmp_path):
    (tmp_path / "data.h5").write_bytes(b"")
    plan = load_plan(write_plan(tmp_path, MINIMAL + '[data]\npath = "data.h5"\n'))
    assert Path(plan.data.path) == tmp_path / "data.h5"


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('source = "tiny"', 'source = "tiny"\nweights = "x"'),
     r"\[model\]: unknown key\(s\) \['weights'\]"),
    (lambda t: t.replace("[model]\nsource = \"tiny\"\n", ""), r"missing required key\(s\) \['model'\]"),
    (lambda t: t.replace('source = "tiny"', 'dtype = "float32"'), r"\[model\]: missing required key\(s\) \['source'\]"),
    (lambda t: t.replace("limit = 1e13", 'limit = "lots"'), "limit must be int, got str"),
    (lambda t: t.replace("limit = 1e13", "limit = 1.5"), "limit must be int, got float"),
    (lambda t: t.replace("limit = 1e13", "limit = -5"), "limit must be >= 0"),
    (lambda t: t.replace("steps = 3", 'steps = "3"'), "steps must be int, got str"),
    (lambda t: t.replace("steps = 3", "steps = 3\nlearning_rate = true"), "learning_rate must be float, got bool"),
    (lambda t: t.replace("steps = 3", "steps = 3\nlr = 0.1"), r"unknown key\(s\) \['lr'\]"),
    (lambda t: t.replace('kind = "train"', 'kind = "fit"'), "kind must be one of"),
    (lambda t: t.replace("steps = 3", "steps = 3\nmax_steps = 9"), "exactly one of steps"),
    (lambda t: t.replace("steps = 3", "max_steps = 9"), "max_steps needs a budget_share"),
    (lambda t: t.replace("steps = 3", "max_steps = 9\nbudget_share = 1.5"), r"budget_share must be a fraction"),
    (lambda t: t + '[[stages]]\nkind = "final"\nfrom = "nothing"\nsteps = 1\n', "'from' must name an earlier"),
    (lambda t: t + '[[stages]]\nkind = "sweep"\nsteps = 1\ngrid = { lora_rank = [] }\n', "non-empty array"),
    (lambda t: t + '[[stages]]\nkind = "sweep"\nsteps = 1\ngrid = { dropout = [0.1] }\n',
     r"unknown key\(s\) \['dropout'\]"),
    (lambda t: t + '[[stages]]\nname = "train"\nkind = "train"\nsteps = 1\n', "two stages are named 'train'"),
    (lambda t: t.replace("[budget]", "[budget]\nconvention = \"approximate\""), "convention must be one of"),
    (lambda t: t + "[training]\nlora_targets = \"q_proj\"\n", "lora_targets must be an array"),
    (lambda t: t.replace("limit = 1e13", "limit = 1e13\nreserve = 1.0"), r"reserve must be a fraction .* \[0, 1\)"),
    (lambda t: t.replace("limit = 1e13", "limit = 1e13\nreserve = 0.5").replace(
        "steps = 3", "max_steps = 9\nbudget_share = 0.6"), r"budget_share \(0.6\) and \[budget\] reserve \(0.5\)"),
    (lambda t: t.replace("steps = 3", "steps = 3\n[[stages]]\nkind = \"train\"\nname = \"b\"\nmax_steps = 4\n"
                                      "budget_share = 0.7\n[[stages]]\nkind = \"train\"\nname = \"c\"\n"
                                      "max_steps = 4\nbudget_share = 0.7"), "add up to 1.4"),
])
def test_bad_plans_are_refused_naming_the_file_and_the_key(tmp_path, edit, message):
    path = write_plan(tmp_path, edit(MINIMAL))
    with pytest.raises(PlanError, match=message) as refused:
        load_plan(path)
    assert str(path) in str(refused.value)


def test_a_file_that_is_not_toml_is_refused(tmp_path):
    path = write_plan(tmp_path, "[model\nsource = ")
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plan(path)


def test_an_unknown_plan_name_lists_the_shipped_plans():
    with pytest.raises(PlanError, match="coursework, demo"):
        load_plan("no-such-plan")


def test_parse_plan_keeps_stage_overrides_and_defaults(tmp_path):
    document = tomllib.loads(MINIMAL.replace("steps = 3", "steps = 3\ncontext = 32\nlora_rank = 2"))
    plan = parse_plan(document, tmp_path / "inline.toml")
    stage = plan.stages[0]
    assert stage.name == "train" and stage.overrides == {"context": 32, "lora_rank": 2}
    assert plan.training.context == 512  # the defaults stay; the override belongs to the stage


def test_the_forecast_passes_take_the_datas_steps_and_llmtime_format(tmp_path):
    """The passes the runner runs and the planner prices: context/forecast steps and the format
    (its precision) from ``[data]``, so prompts and grammar agree with the encoded data."""
    text = MINIMAL + "[data]\nprecision = 3\nprompt_steps = 7\nforecast_steps = 4\n[forecast]\nsamples = 2\n"
    plan = parse_plan(tomllib.loads(text), tmp_path / "inline.toml")
    passes = plan.forecast_passes()
    assert [(p.constrained, p.do_sample, p.samples) for p in passes] == [(True, False, 1), (False, False, 1),
                                                                         (True, True, 2)]
    assert {(p.k, p.m, p.fmt) for p in passes} == {(7, 4, plan.data.llmtime_format())}
    assert passes[0].fmt.precision == 3
    assert plan.forecast_passes() == plan.forecast.passes(7, 4, plan.data.llmtime_format())


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("steps = 3", "steps = 3\nlora_rank = 0"),
     "stage 'train': .*lora_rank must be an integer >= 1"),
    (lambda t: t.replace("steps = 3", "steps = 3\ncontext = 1"), "stage 'train': .*context must be an integer >= 2"),
    (lambda t: t.replace("steps = 3", "steps = 3\ncheckpoint_every = 0"), "checkpoint_every must be an integer >= 1"),
    (lambda t: t.replace("steps = 3", "steps = 3\nlearning_rate = 0.0"), "learning_rate must be > 0"),
    (lambda t: t + '[[stages]]\nkind = "sweep"\nname = "g"\nsteps = 1\ngrid = { lora_rank = [2, 0] }\n',
     "stage 'g': .*lora_rank must be an integer >= 1"),
    (lambda t: t + "[forecast]\ntop_p = 0.0\n", r"\[forecast\].*top_p"),
    (lambda t: t + "[forecast]\ngreedy = false\nsamples = 0\n", "set greedy = true or samples >= 1"),
    (lambda t: t + "[data]\nforecast_steps = 0\n", r"\[data\].*forecast_steps must be >= 1"),
])
def test_values_a_run_would_refuse_are_refused_when_the_plan_loads(tmp_path, edit, message):
    """Not after the first stages have spent FLOPs: every run's config is built at load time."""
    with pytest.raises(PlanError, match=message):
        load_plan(write_plan(tmp_path, edit(MINIMAL)))


def test_the_trainer_options_parse_into_the_training_config_and_bad_values_are_refused(tmp_path):
    text = MINIMAL.replace("[budget]", '[training]\nmixed_precision = "bf16"\nlr_schedule = "cosine"\n'
                                       'warmup_steps = 2\ngrad_accum_steps = 2\n[budget]')
    plan = load_plan(write_plan(tmp_path, text))
    assert (plan.training.mixed_precision, plan.training.lr_schedule, plan.training.warmup_steps,
            plan.training.grad_accum_steps) == ("bf16", "cosine", 2, 2)
    for bad, message in (('mixed_precision = "fp8"', "mixed_precision must be one of"),
                         ('lr_schedule = "step"', "lr_schedule must be one of"),
                         ("grad_accum_steps = 0", "grad_accum_steps must be an integer >= 1"),
                         ("learning_rate = inf", "learning_rate must be a finite number")):
        with pytest.raises(PlanError, match=rf"\[training\].*{message}"):
            load_plan(write_plan(tmp_path, MINIMAL.replace("[budget]", f"[training]\n{bad}\n[budget]"), "bad.toml"))


def test_a_bad_set_value_is_reported_as_coming_from_its_set_not_only_the_toml():
    with pytest.raises(PlanError) as caught:
        load_plan("demo", ["training.learning_rate=nan", "training.lora_rank=4"])
    message = str(caught.value)
    assert "[training]" in message and "learning_rate" in message
    assert message.endswith("(from --set training.learning_rate=nan)"), message
    with pytest.raises(PlanError) as caught:  # an error the overrides did not cause names none
        load_plan("demo", ["training.lora_rank=4", "budget.limit=-1"])
    assert "limit" in str(caught.value) and "--set budget.limit=-1" in str(caught.value)
    assert "lora_rank" not in str(caught.value)


def test_stage_of_reads_back_the_stage_of_every_ledger_name_a_plan_writes():
    plan = load_plan("demo")
    for stage in (s for s in plan.stages if s.trains):
        assert {stage_of(config.experiment) for config in run_configs(plan, stage)} == {stage.name}
    assert stage_of("grid/lr=0.001,r=4") == "grid" and stage_of("evaluate/base-validation") == "evaluate"
    assert stage_of("final") == "final"


def test_a_limit_of_1e27_from_a_plan_or_a_set_is_exactly_ten_to_the_27_as_budget_reads_it():
    from flopcount import Budget

    plan = load_plan("demo", ["budget.limit=1e27"])
    assert plan.budget.limit == 10**27 == Budget(1e27, "unused.sqlite", "x", "qwen2.5-0.5b").limit


def test_a_limit_no_ledger_can_hold_is_refused_when_the_plan_loads_with_a_short_number():
    with pytest.raises(PlanError, match=r"limit must be a whole number of FLOPs from 1 to .* got 1e\+99") as caught:
        load_plan("demo", ["budget.limit=1e99"])
    assert "0" * 30 not in str(caught.value) and "(from --set budget.limit=1e99)" in str(caught.value)
