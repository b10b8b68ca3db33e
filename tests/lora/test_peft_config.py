"""``lora_config_from_peft``: rank, alpha and targets from peft configs and models, checked
against what peft itself adapts, and a clear refusal of what lora cannot represent."""

from __future__ import annotations

import json
import math

import pytest
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from flopcount.count.components import PROJECTIONS
from lora import COUNTABLE_TARGETS, LoRAConfig, inject, lora_config_from_peft, peft_adapter_config

pytestmark = [pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
              pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`:UserWarning")]

# Configs peft accepts on the 2-layer test model; each either adapts whole projections (then
# lora must give exactly those) or some layers only (then lora must refuse).
PEFT_CONFIGS = {
    "list": dict(target_modules=["q_proj", "v_proj"]),
    "full names": dict(target_modules=["model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj"]),
    "regex": dict(target_modules=r".*\.(gate|up|down)_proj"),
    "regex one layer": dict(target_modules=r"model\.layers\.1\.self_attn\.k_proj"),
    "all-linear": dict(target_modules="all-linear"),
    "ALL-LINEAR": dict(target_modules="ALL-LINEAR"),
    "exclude list": dict(target_modules="all-linear", exclude_modules=["o_proj", "down_proj"]),
    "exclude regex": dict(target_modules=["q_proj", "k_proj"], exclude_modules=r".*layers\.0\.self_attn\.k_proj"),
    "layers all": dict(target_modules=["o_proj"], layers_to_transform=[0, 1]),
    "layers one": dict(target_modules=["o_proj"], layers_to_transform=1),
    "layers pattern": dict(target_modules=["v_proj"], layers_to_transform=[0, 1], layers_pattern="layers"),
}


@pytest.mark.parametrize("name", list(PEFT_CONFIGS))
def test_the_targets_are_those_peft_adapts_or_the_config_is_refused(make_qwen2, name):
    model = make_qwen2()
    peft_model = get_peft_model(make_qwen2(), LoraConfig(r=4, lora_alpha=8, **PEFT_CONFIGS[name]))
    adapted = [n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)]
    linear = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in COUNTABLE_TARGETS]
    suffixes = {n.rsplit(".", 1)[-1] for n in adapted}
    whole = sorted(adapted) == sorted(n for n in linear if n.rsplit(".", 1)[-1] in suffixes)
    config = LoraConfig(r=4, lora_alpha=8, **PEFT_CONFIGS[name])
    if whole:
        resolved = lora_config_from_peft(config, model)
        assert resolved.targets == tuple(t for t in COUNTABLE_TARGETS if t in suffixes)
        assert lora_config_from_peft(peft_model) == resolved  # the peft model itself, its own base model
        assert lora_config_from_peft(peft_model.peft_config["default"].to_dict(), model) == resolved
    else:
        with pytest.raises(ValueError, match="in some layers only"):
            lora_config_from_peft(config, model)


def test_rank_alpha_dropout_and_the_rslora_scale(make_qwen2):
    config = lora_config_from_peft(LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj"]))
    assert (config.r, config.alpha, config.dropout, config.targets, config.scaling) == (8, 32.0, 0.05, ("q_proj",), 4)
    rs = lora_config_from_peft(LoraConfig(r=8, lora_alpha=32, use_rslora=True, target_modules=["q_proj"]))
    assert math.isclose(rs.scaling, 32 / math.sqrt(8), rel_tol=1e-15)  # peft's rsLoRA scale, as alpha / r
    assert lora_config_from_peft({"peft_type": "LORA", "target_modules": ["v_proj"]}) == LoRAConfig(8, 8, 0.0,
                                                                                                   ("v_proj",))


def test_without_a_model_the_targets_resolve_on_the_qwen2_layout_and_need_the_model_for_layers(make_qwen2):
    assert lora_config_from_peft(LoraConfig(target_modules="all-linear")).targets == COUNTABLE_TARGETS
    assert lora_config_from_peft(LoraConfig(target_modules=r".*self_attn\.(q|v)_proj")).targets == ("q_proj", "v_proj")
    config = LoraConfig(target_modules=["q_proj"], layers_to_transform=[0, 1])
    with pytest.raises(ValueError, match=r"in some layers only .*Qwen2 module layout \(pass model=\.\.\.\)"):
        lora_config_from_peft(config)
    assert lora_config_from_peft(config, make_qwen2()).targets == ("q_proj",)  # the 2-layer model: every layer


def test_a_path_to_an_adapter_config_or_its_directory_is_read(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "k_proj"]}))
    expected = LoRAConfig(r=2, alpha=4, targets=("q_proj", "k_proj"))
    assert lora_config_from_peft(tmp_path) == lora_config_from_peft(tmp_path / "adapter_config.json") == expected
    with pytest.raises(FileNotFoundError, match="no peft adapter config"):
        lora_config_from_peft(tmp_path / "missing")


def test_a_model_injected_by_lora_resolves_like_a_plain_one(make_qwen2):
    model = make_qwen2()
    inject(model, r=2)  # LoRALinear wrappers and their .base must read as the projections they are
    assert lora_config_from_peft(LoraConfig(target_modules="all-linear"), model).targets == COUNTABLE_TARGETS


@pytest.mark.parametrize("fields, problem", [
    (dict(target_modules=["q_proj"], rank_pattern={"q_proj": 8}), r"rank_pattern=.*different ranks per module"),
    (dict(target_modules=["q_proj"], alpha_pattern={"q_proj": 8}), "different alphas per module"),
    (dict(target_modules=["q_proj"], use_dora=True), r"use_dora=True \(DoRA"),
    (dict(target_modules=["q_proj"], bias="lora_only"), "bias='lora_only' trains the base layers' biases"),
    (dict(target_modules=["q_proj"], lora_bias=True), "a bias on lora_B"),
    (dict(target_modules=["q_proj"], modules_to_save=["lm_head"]), "modules_to_save"),
    (dict(target_modules=["q_proj"], init_lora_weights="pissa"), "init_lora_weights='pissa' also rewrites"),
    (dict(target_modules=["q_proj", "lm_head"]), r"select \['lm_head'\], outside the projections"),
    (dict(target_modules=["embed_tokens"]), "match no linear layer"),
    (dict(target_modules=None), "target_modules is None"),
    (dict(target_modules=["q_proj"], lora_alpha=0), "lora_alpha=0.*alpha must be a positive number"),
], ids=["rank_pattern", "alpha_pattern", "dora", "bias", "lora_bias", "modules_to_save", "pissa", "lm_head",
        "embedding", "no targets", "alpha 0"])  # fmt: skip
def test_what_lora_cannot_represent_is_refused_naming_the_field(make_qwen2, fields, problem):
    with pytest.raises(ValueError, match=problem):
        lora_config_from_peft(LoraConfig(r=4, **fields), make_qwen2())


def test_every_problem_is_named_at_once_and_unknown_fields_too():
    fields = {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "use_dora": True, "rank_pattern": {"q": 2},
              "some_future_option": {"on": True}, "task_type": "CAUSAL_LM", "inference_mode": True}
    with pytest.raises(ValueError) as refused:
        lora_config_from_peft(fields)
    message = str(refused.value)
    assert "use_dora" in message and "rank_pattern" in message and "some_future_option" in message
    assert "task_type" not in message and "inference_mode" not in message
    with pytest.raises(ValueError, match="peft_type='IA3' is not LORA"):
        lora_config_from_peft({"peft_type": "IA3", "target_modules": ["q_proj"]})
    with pytest.raises(TypeError, match="got int"):
        lora_config_from_peft(5)


def test_the_peft_config_written_reads_back_as_the_same_lora_config():
    for config in (LoRAConfig(4), LoRAConfig(3, alpha=1.5, dropout=0.1, targets=COUNTABLE_TARGETS)):
        written = peft_adapter_config(config, "tiny")
        assert lora_config_from_peft(written) == config
        assert LoraConfig(**{k: v for k, v in written.items() if k != "peft_type"}).r == config.r  # peft takes it
    with pytest.raises(ValueError, match="lm_head_bias has no peft equivalent"):
        peft_adapter_config(LoRAConfig(4, lm_head_bias=True))


def test_the_countable_targets_are_the_flop_counts_projections():
    assert COUNTABLE_TARGETS == PROJECTIONS


def test_a_count_setup_is_built_from_a_peft_lora_config():
    from peft import LoraConfig

    from flopcount import CountSetup, training_step_flops

    peft_config = LoraConfig(r=8, lora_alpha=16, target_modules=["v_proj", "q_proj"], task_type="CAUSAL_LM")
    setup = CountSetup.from_lora("qwen2.5-0.5b", lora_config_from_peft(peft_config), "exact")
    assert setup == CountSetup.of("qwen2.5-0.5b", "exact", lora_rank=8, lora_targets=("q_proj", "v_proj"))
    everything = CountSetup.from_lora("qwen2.5-0.5b", lora_config_from_peft(
        LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")))
    assert len(everything.lora_targets) == 7
    assert training_step_flops(everything, 1, 64) > training_step_flops(setup, 1, 64) > 0


@pytest.mark.parametrize("targets", [["embed_tokens", "q_proj"], r".*(embed_tokens|q_proj)"])
def test_lora_on_the_embedding_is_refused_by_name_not_dropped(make_qwen2, targets):
    config = LoraConfig(r=4, target_modules=targets)
    with pytest.raises(ValueError, match="embed_tokens.*not linear projections"):
        lora_config_from_peft(config)
    with pytest.raises(ValueError, match="embed_tokens.*not linear projections"):
        lora_config_from_peft(get_peft_model(make_qwen2(), config))


def test_several_active_adapters_are_refused_by_name(make_qwen2):
    peft_model = get_peft_model(make_qwen2(), LoraConfig(r=4, target_modules=["q_proj"]))
    peft_model.add_adapter("other", LoraConfig(r=4, target_modules=["v_proj"]))
    assert lora_config_from_peft(peft_model).targets == ("q_proj",)  # one active: counted
    peft_model.base_model.set_adapter(["default", "other"])
    with pytest.raises(ValueError, match="several peft adapters are active \\('default', 'other'\\)"):
        lora_config_from_peft(peft_model)
