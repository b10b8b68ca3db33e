"""peft interop of the adapter files, both ways, on a small real Qwen2: ``PeftModel.from_pretrained``
loads ``save_adapter``'s directory into the same logits, ``load_adapter`` reads what peft's
``save_pretrained`` wrote, and the earlier format (``adapter.safetensors``) still loads."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file

from lora import (
    ADAPTER_CONFIG,
    ADAPTER_METADATA,
    ADAPTER_WEIGHTS,
    COUNTABLE_TARGETS,
    LEGACY_WEIGHTS,
    LoRAConfig,
    inject,
    injected_config,
    load_adapter,
    lora_config_from_peft,
    lora_state_dict,
    read_adapter_config,
    save_adapter,
)
from lora.adapter import same_adapter
from lora.adapter_files import base_model_info

pytestmark = [pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
              pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`:UserWarning")]
SEED = 3


def perturbed(tensors, seed=5):
    """Give every adapter tensor (B included) random values, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in tensors:
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)


def trained(make_qwen2, **config):
    model = make_qwen2(seed=SEED)
    inject(model, LoRAConfig(**config))
    perturbed(lora_state_dict(model).values())
    return model


def peft_trained(make_qwen2, config: LoraConfig):
    model = get_peft_model(make_qwen2(seed=SEED), config).eval()
    perturbed([p for name, p in model.named_parameters() if "lora_" in name])
    return model


def assert_same_logits(ours, theirs, tokens):
    with torch.no_grad():
        ours_logits, theirs_logits = ours(tokens).logits, theirs(input_ids=tokens).logits
    torch.testing.assert_close(ours_logits, theirs_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", [
    {"r": 4},
    {"r": 2, "alpha": 8, "targets": COUNTABLE_TARGETS},
    {"r": 3, "alpha": 1.5, "dropout": 0.1, "targets": ("k_proj", "o_proj", "down_proj")},
], ids=["defaults", "all-projections", "odd"])  # fmt: skip
def test_peft_from_pretrained_loads_a_saved_adapter_with_the_same_logits(make_qwen2, token_batch, tmp_path, config):
    ours = trained(make_qwen2, **config).eval()
    save_adapter(ours, tmp_path / "adapter")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(missing|unexpected).*")  # every key used, none left out
        theirs = PeftModel.from_pretrained(make_qwen2(seed=SEED), tmp_path / "adapter").eval()
    assert_same_logits(ours, theirs, token_batch)
    with torch.no_grad():  # the adapter does change the logits: the comparison is not of two base models
        assert (make_qwen2(seed=SEED)(token_batch).logits - ours(token_batch).logits).abs().max() > 1e-2
    adapted = {name.rsplit(".", 1)[-1] for name, m in theirs.named_modules() if hasattr(m, "lora_A")}
    assert adapted == set(injected_config(ours).targets)


@pytest.mark.parametrize("peft_config", [
    dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    dict(r=2, lora_alpha=2, target_modules=r"model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj"),
    dict(r=4, lora_alpha=16, target_modules="all-linear"),
    dict(r=4, lora_alpha=8, target_modules=["v_proj", "up_proj"], use_rslora=True),
    dict(r=2, lora_alpha=4, target_modules=["q_proj", "gate_proj"], layers_to_transform=[0, 1]),
], ids=["list", "regex", "all-linear", "rslora", "every-layer-listed"])  # fmt: skip
def test_an_adapter_saved_by_peft_loads_into_lora_with_the_same_logits(make_qwen2, token_batch, tmp_path, peft_config):
    theirs = peft_trained(make_qwen2, LoraConfig(task_type="CAUSAL_LM", **peft_config))
    theirs.save_pretrained(tmp_path / "peft")
    ours = make_qwen2(seed=SEED)
    report = load_adapter(ours, tmp_path / "peft")
    assert_same_logits(ours.eval(), theirs, token_batch)
    assert report.trainable_count == theirs.get_nb_trainable_parameters()[0]

    # ... and back: what lora saves from it, peft loads into the same logits again.
    save_adapter(ours, tmp_path / "ours")
    again = PeftModel.from_pretrained(make_qwen2(seed=SEED), tmp_path / "ours").eval()
    assert_same_logits(ours, again, token_batch)


def test_an_adapter_with_an_lm_head_bias_is_refused_by_peft_and_loaded_whole_by_lora(make_qwen2, token_batch,
                                                                                      tmp_path):
    ours = trained(make_qwen2, r=2, lm_head_bias=True).eval()
    save_adapter(ours, tmp_path)
    with pytest.raises(ValueError, match=ADAPTER_CONFIG):  # peft finds no config, rather than drop the bias
        PeftModel.from_pretrained(make_qwen2(seed=SEED), tmp_path)
    fresh = make_qwen2(seed=SEED)
    load_adapter(fresh, tmp_path)
    assert torch.equal(fresh(token_batch).logits, ours(token_batch).logits)
    assert not json.loads((tmp_path / ADAPTER_METADATA).read_text())["peft"]["loadable"]


def save_v1_adapter(model, directory):
    """The format before peft's, written the way lora.save_adapter wrote it then."""
    config = injected_config(model)
    tensors = {name: t.detach().contiguous() for name, t in lora_state_dict(model).items()}
    directory.mkdir()
    save_file(tensors, directory / "adapter.safetensors",
              metadata={"format": "pt", "lora_config": json.dumps(config.to_dict(), sort_keys=True)})
    document = {"format": "llmtime-lora-adapter/1", "lora": config.to_dict(), "base_model": base_model_info(model),
                "tensors": {name: list(t.shape) for name, t in tensors.items()}}
    (directory / "adapter_config.json").write_text(json.dumps(document, indent=2) + "\n")


@pytest.mark.parametrize("config", [{"r": 4}, {"r": 2, "alpha": 8, "lm_head_bias": True}])
def test_an_adapter_in_the_earlier_format_still_loads_and_converts_by_a_save(make_qwen2, token_batch, tmp_path,
                                                                             config):
    ours = trained(make_qwen2, **config).eval()
    save_v1_adapter(ours, tmp_path / "v1")
    assert read_adapter_config(tmp_path / "v1")[0] == injected_config(ours)
    fresh = make_qwen2(seed=SEED)
    assert load_adapter(fresh, tmp_path / "v1").config == injected_config(ours)
    assert torch.equal(fresh(token_batch).logits, ours(token_batch).logits)

    save_adapter(fresh, tmp_path / "v2")  # converted
    converted = make_qwen2(seed=SEED)
    load_adapter(converted, tmp_path / "v2")
    assert torch.equal(converted(token_batch).logits, ours(token_batch).logits)


def test_an_earlier_format_adapter_with_mixed_files_is_still_refused(make_qwen2, tmp_path):
    save_v1_adapter(trained(make_qwen2, r=4), tmp_path / "r4")
    save_v1_adapter(trained(make_qwen2, r=2), tmp_path / "r2")
    (tmp_path / "r2" / LEGACY_WEIGHTS).replace(tmp_path / "r4" / LEGACY_WEIGHTS)
    with pytest.raises(ValueError, match="come from different saves"):
        load_adapter(make_qwen2(seed=SEED), tmp_path / "r4")


def test_saving_over_an_earlier_save_needs_overwrite_and_leaves_no_file_of_it(make_qwen2, token_batch, tmp_path):
    plain, biased = trained(make_qwen2, r=4).eval(), trained(make_qwen2, r=2, lm_head_bias=True).eval()
    save_v1_adapter(plain, tmp_path / "adapter")
    with pytest.raises(FileExistsError, match=LEGACY_WEIGHTS):
        save_adapter(plain, tmp_path / "adapter")
    save_adapter(plain, tmp_path / "adapter", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [ADAPTER_CONFIG, ADAPTER_WEIGHTS,
                                                                         ADAPTER_METADATA]
    save_adapter(biased, tmp_path / "adapter", overwrite=True)  # the earlier peft config must go
    assert not (tmp_path / "adapter" / ADAPTER_CONFIG).exists()
    fresh = make_qwen2(seed=SEED)
    load_adapter(fresh, tmp_path / "adapter")
    assert torch.equal(fresh(token_batch).logits, biased(token_batch).logits)


def test_an_adapter_peft_saved_over_is_refused_with_the_way_out(make_qwen2, token_batch, tmp_path):
    save_adapter(trained(make_qwen2, r=4), tmp_path)
    theirs = PeftModel.from_pretrained(make_qwen2(seed=SEED), tmp_path, is_trainable=True)
    perturbed([p for name, p in theirs.named_parameters() if "lora_" in name], seed=9)  # trained further
    theirs.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"different saves.*delete {ADAPTER_METADATA}"):
        load_adapter(make_qwen2(seed=SEED), tmp_path)
    (tmp_path / ADAPTER_METADATA).unlink()
    ours = make_qwen2(seed=SEED)
    load_adapter(ours, tmp_path)
    assert_same_logits(ours, theirs.eval(), token_batch)


def test_a_peft_config_beside_the_metadata_must_describe_the_same_adapter(make_qwen2, tmp_path):
    save_adapter(trained(make_qwen2, r=4), tmp_path / "r4")
    save_adapter(trained(make_qwen2, r=4, targets=("q_proj", "k_proj")), tmp_path / "qk")
    (tmp_path / "qk" / ADAPTER_CONFIG).replace(tmp_path / "r4" / ADAPTER_CONFIG)
    with pytest.raises(ValueError, match=f"{ADAPTER_CONFIG} describes .*come from different saves"):
        load_adapter(make_qwen2(seed=SEED), tmp_path / "r4")


@pytest.mark.parametrize("peft_config, problem", [
    (dict(target_modules=["q_proj"], use_dora=True), r"use_dora=True \(DoRA"),
    (dict(target_modules=["q_proj", "v_proj"], rank_pattern={"v_proj": 8}), "different ranks per module"),
    (dict(target_modules=["q_proj"], layers_to_transform=[0]), "q_proj in some layers only"),
    (dict(target_modules=["q_proj"], modules_to_save=["lm_head"]), "modules_to_save"),
], ids=["dora", "rank_pattern", "one-layer", "modules_to_save"])  # fmt: skip
def test_a_peft_adapter_lora_cannot_represent_is_refused_before_the_model_changes(make_qwen2, tmp_path, peft_config,
                                                                                    problem):
    peft_trained(make_qwen2, LoraConfig(task_type="CAUSAL_LM", **peft_config)).save_pretrained(tmp_path)
    model = make_qwen2(seed=SEED)
    with pytest.raises(ValueError, match=f"peft adapter .*{problem}"):
        load_adapter(model, tmp_path)
    assert injected_config(model) is None and all(p.requires_grad for p in model.parameters())  # not even frozen


def test_a_peft_adapter_saved_as_pickle_is_refused_with_how_to_convert(make_qwen2, tmp_path):
    peft_trained(make_qwen2, LoraConfig(target_modules=["q_proj"])).save_pretrained(tmp_path,
                                                                                   safe_serialization=False)
    with pytest.raises(ValueError, match="safe_serialization=True"):
        load_adapter(make_qwen2(seed=SEED), tmp_path)


def test_targets_in_another_order_are_the_same_adapter(make_qwen2, token_batch, tmp_path):
    ours = trained(make_qwen2, r=4, targets=("v_proj", "q_proj")).eval()
    save_adapter(ours, tmp_path / "ours")
    peft_trained(make_qwen2, LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"])).save_pretrained(
        tmp_path / "peft")
    for directory in ("ours", "peft"):
        for injected in (None, ("v_proj", "q_proj"), ("q_proj", "v_proj")):
            model = make_qwen2(seed=SEED)
            if injected:
                inject(model, r=4, targets=injected)
            assert set(load_adapter(model, tmp_path / directory).config.targets) == {"q_proj", "v_proj"}
    fresh = make_qwen2(seed=SEED)
    load_adapter(fresh, tmp_path / "ours")
    assert torch.equal(fresh(token_batch).logits, ours(token_batch).logits)


def test_transformers_own_peft_integration_loads_a_saved_adapter_too(make_qwen2, token_batch, tmp_path):
    ours = trained(make_qwen2, r=2, alpha=4, targets=("q_proj", "o_proj", "up_proj")).eval()
    save_adapter(ours, tmp_path)
    theirs = make_qwen2(seed=SEED)
    theirs.load_adapter(str(tmp_path))  # transformers.integrations.peft
    assert_same_logits(ours, theirs.eval(), token_batch)
    assert same_adapter(lora_config_from_peft(theirs), injected_config(ours))
