"""Model loading: the tiny model through save_pretrained -> from_pretrained, the real tokenizer,
frozen parameters, LoRA injection, and clear errors for sources that cannot be loaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from experiments.models.loading import (
    BASE_MODEL,
    TINY_MODEL,
    build_tiny_model,
    default_tokenizer_source,
    load_model,
    load_model_and_tokenizer,
    save_tiny_model,
    tiny_config,
    tokenizer_source_for,
)
from lora import LoRAConfig, LoRALinear, trainable_parameters


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_tiny_config_keeps_the_real_architecture_and_vocabulary(qwen_assets, qwen_tokenizer):
    real = json.loads((qwen_assets / "config.json").read_text())
    tiny = tiny_config()
    for key in ("vocab_size", "tie_word_embeddings", "rms_norm_eps", "hidden_act", "model_type"):
        assert getattr(tiny, key) == real[key], key
    rope = getattr(tiny, "rope_parameters", None) or {"rope_theta": tiny.rope_theta}  # transformers 5 / 4.x
    assert rope["rope_theta"] == real["rope_theta"]
    assert len(qwen_tokenizer) <= tiny.vocab_size
    assert tiny.num_attention_heads * tiny.head_dim == tiny.hidden_size
    assert tiny.num_key_value_heads < tiny.num_attention_heads  # grouped-query attention
    assert tiny.num_attention_heads % tiny.num_key_value_heads == 0


def test_tiny_model_is_deterministic_per_seed_and_leaves_the_global_rng_alone():
    rng_state = torch.get_rng_state()
    first = build_tiny_model(seed=0)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert same_weights(first, build_tiny_model(seed=0))
    assert not same_weights(first, build_tiny_model(seed=1))
    assert first.lm_head.weight is first.model.embed_tokens.weight


def test_load_model_from_a_saved_directory(tiny_model_dir, tiny_model):
    model = load_model(tiny_model_dir)
    assert isinstance(model, Qwen2ForCausalLM)
    assert same_weights(model, tiny_model)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # re-tied on load
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and model.dtype == torch.float32


def test_load_model_dtype(tiny_model_dir):
    assert load_model(tiny_model_dir, dtype=torch.bfloat16).dtype == torch.bfloat16
    assert load_model(tiny_model_dir, dtype="bfloat16").dtype == torch.bfloat16
    assert load_model(TINY_MODEL, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="unknown dtype 'float99'"):
        load_model(tiny_model_dir, dtype="float99")


def test_load_model_and_tokenizer_with_lora(tiny_model_dir):
    loaded = load_model_and_tokenizer(tiny_model_dir, lora=LoRAConfig(r=4))
    model, tokenizer = loaded.model, loaded.tokenizer
    assert tokenizer("1.23")["input_ids"] == [16, 13, 17, 18]  # the real tokenizer, saved with the model
    assert loaded.tokenizer_source == loaded.source == str(tiny_model_dir)

    config = tiny_config()
    q_out, v_out = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    expected = config.num_hidden_layers * 4 * ((config.hidden_size + q_out) + (config.hidden_size + v_out))
    assert loaded.injection.trainable_count == expected
    assert all(name.endswith(("lora_A", "lora_B")) for name in trainable_parameters(model))
    assert isinstance(model.model.layers[0].self_attn.v_proj, LoRALinear)

    ids = tokenizer("0.25,1.50;0.27,1.47;0.31,1.42", return_tensors="pt")["input_ids"]
    output = model(ids, labels=ids)
    assert output.logits.shape == (1, ids.shape[1], config.vocab_size)
    output.loss.backward()
    assert all(p.grad is None for name, p in model.named_parameters() if not name.endswith(("lora_A", "lora_B")))
    assert model.model.layers[1].self_attn.q_proj.lora_B.grad.abs().sum() > 0


def test_the_named_models_take_the_shared_tokenizer_and_others_their_own(qwen_assets, tmp_path):
    """One rule for the planner's workspace and load_model_and_tokenizer; the named base is
    not built to find its tokenizer."""
    assert Path(tokenizer_source_for(TINY_MODEL)) == Path(tokenizer_source_for(BASE_MODEL)) == qwen_assets
    assert tokenizer_source_for(tmp_path) == tmp_path
    assert tokenizer_source_for("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    assert tokenizer_source_for(BASE_MODEL, tmp_path) == tokenizer_source_for(TINY_MODEL, tmp_path) == tmp_path
    assert Path(tokenizer_source_for(TINY_MODEL, "")) == qwen_assets  # a plan's empty string is unset


def test_the_tiny_name_builds_the_model_with_the_shared_tokenizer(qwen_assets, tiny_model):
    assert Path(default_tokenizer_source()) == qwen_assets
    loaded = load_model_and_tokenizer(TINY_MODEL)
    assert loaded.tokenizer_source == str(qwen_assets)
    assert loaded.injection is None
    assert same_weights(loaded.model, tiny_model)
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.tokenizer.pad_token_id == 151643 and loaded.tokenizer.eos_token_id == 151645


def test_a_directory_without_weights_is_refused_clearly(qwen_assets, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no model weights .*found \['config.json', 'tokenizer.json'"):
        load_model(qwen_assets)  # the shared assets: config and tokenizer, no weights
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing")


def test_an_unreachable_or_unknown_hub_id_fails_with_the_id_in_the_message():
    with pytest.raises(OSError, match="cannot load model 'no-such-org/no-such-model-llmtime'"):
        load_model("no-such-org/no-such-model-llmtime")


LOAD_CACHED = """
import sys, torch
from experiments.models.loading import load_model
model = load_model(sys.argv[1])
torch.save(model.state_dict(), sys.argv[2])
print(model.config.name_or_path)
"""


def test_a_hub_id_in_the_cache_loads_from_the_cache_alone(tiny_model_dir, tiny_model, tmp_path):
    """The cache-first path, in the Hugging Face cache layout (refs/main -> snapshots/<commit>),
    with the hub endpoint on a closed port: it loads, keeps the hub id as its name, and (with peft
    installed) does not trip over transformers' own adapter_config.json lookup."""
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--llmtime-test--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": "http://127.0.0.1:9",
           "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run([sys.executable, "-c", LOAD_CACHED, "llmtime-test/tiny", str(tmp_path / "state.pt")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "llmtime-test/tiny"
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    assert state.keys() == tiny_model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in tiny_model.state_dict().items())


def test_tokenizer_with_more_ids_than_the_model_embeds_is_refused(qwen_assets, tmp_path):
    Qwen2ForCausalLM(Qwen2Config(**{**tiny_config().to_dict(), "vocab_size": 1000})).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="151665 entries but model .* embeds only 1000 ids"):
        load_model_and_tokenizer(tmp_path, tokenizer_source=qwen_assets)


def test_save_tiny_model_does_not_overwrite_a_model(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_tiny_model(tmp_path)
    assert (tmp_path / "config.json").read_text() == "{}"


def test_build_random_model_follows_the_config_and_casts_only_at_the_end(qwen_assets):
    from transformers import AutoConfig

    from experiments.models.loading import build_random_model

    config = AutoConfig.from_pretrained(qwen_assets)  # the shipped config says torch_dtype bfloat16
    config.num_hidden_layers, config.vocab_size = 1, 1000  # the real widths, small enough to build here
    rng_state = torch.get_rng_state()
    model = build_random_model(config, seed=3)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert model.dtype == torch.float32 and not model.training
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (2 * 64, 896)  # 2 KV heads of 64
    assert model.model.layers[0].self_attn.q_proj.bias is not None
    half = build_random_model(config, seed=3, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert same_weights(half, model.to(torch.bfloat16))  # the float32 initialisation, cast


def _drop_into_a_traceback_cycle(model: torch.nn.Module) -> None:
    """Leave ``model`` reachable only from a reference cycle, as matplotlib's pyparsing leaves the
    callers of a plot: a caught exception kept in a local holds its traceback, whose frame holds
    the exception and every local of that frame, the model among them."""
    try:
        raise ValueError("parse failed")
    except ValueError as error:
        kept = error  # noqa: F841  frame -> kept -> traceback -> frame, and the frame holds ``model``


def test_a_dropped_model_held_by_a_reference_cycle_is_freed_before_the_next_loads(tiny_model_dir):
    import gc
    import weakref

    previous = load_model(tiny_model_dir)
    alive = weakref.ref(previous)
    _drop_into_a_traceback_cycle(previous)
    del previous
    gc.disable()  # no automatic collection: as when the next one would come only after the weights
    try:
        assert alive() is not None  # the cycle holds it
        model = load_model(tiny_model_dir)
        assert alive() is None  # freed before the new copy was allocated: one copy alive at a time
    finally:
        gc.enable()
    assert model.config.vocab_size == 151936


def test_the_identity_of_a_model_is_the_digest_of_its_config_and_weights(tmp_path, qwen_assets):
    from experiments.models.loading import model_identity

    first = save_tiny_model(tmp_path / "a", qwen_assets, seed=0)
    copy = save_tiny_model(tmp_path / "b", qwen_assets, seed=0)
    assert model_identity(first)["sha256"] == model_identity(copy)["sha256"]  # the same weights, wherever they are
    assert model_identity(first)["source"] == str(first)
    save_tiny_model(copy, qwen_assets, seed=1, overwrite=True)
    assert model_identity(first)["sha256"] != model_identity(copy)["sha256"]
    assert model_identity("tiny") == model_identity("tiny") != model_identity("Qwen/not-cached-anywhere")
