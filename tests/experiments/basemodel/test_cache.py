"""The base cache: where it lives, reuse for an unchanged recipe, rebuild for a changed one,
resume of an interrupted build, one build for concurrent users, and hands off other directories."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from experiments.basemodel import cache as base_cache, pretrain
from experiments.basemodel.cache import (
    ENV_VAR,
    NotABaseDirectory,
    base_state,
    default_base_dir,
    ensure_base,
    resolve_model_source,
)
from experiments.basemodel.recipe import DEMO_RECIPE, BaseRecipe
from experiments.models.loading import BASE_MODEL, load_model
from experiments.basemodel.pretrain import CHECKPOINTS, RECORD_FILE, read_record

SMALL = BaseRecipe(name="llmtime-base", sequences=16, validation_sequences=4, context=128,
                   batch_size=2, steps=2, warmup_steps=1, eval_every=0, eval_rows=2, checkpoint_every=1)


@pytest.fixture
def builds(monkeypatch):
    """Counts the builds ``ensure_base`` starts (the real builder runs)."""
    calls: list[int] = []
    build = pretrain.build_base

    def counted(recipe, directory, **kwargs):
        calls.append(recipe.steps)
        return build(recipe, directory, **kwargs)

    monkeypatch.setattr(base_cache, "build_base", counted)
    return calls


def test_the_default_directory_is_the_cache_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_base_dir() == tmp_path / "cache" / "llmtime-budget" / "llmtime-base"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_base_dir() == Path.home() / ".cache" / "llmtime-budget" / "llmtime-base"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "mine"))
    assert default_base_dir() == tmp_path / "mine" == default_base_dir(DEMO_RECIPE)
    assert default_base_dir(replace(DEMO_RECIPE, name="other")).name == "other"  # only the demo's base moves


def test_a_base_is_built_once_then_reused(tmp_path, qwen_assets, builds):
    directory = tmp_path / "base"
    assert base_state(directory, SMALL, qwen_assets) == "absent"
    assert ensure_base(SMALL, directory, tokenizer_source=qwen_assets, progress=False) == directory
    created = read_record(directory)["created"]
    assert base_state(directory, SMALL, qwen_assets) == "complete"
    ensure_base(SMALL, directory, tokenizer_source=qwen_assets, progress=False)
    assert builds == [2] and read_record(directory)["created"] == created


def test_a_changed_recipe_rebuilds_and_an_interrupted_build_resumes(tmp_path, qwen_assets, builds):
    directory = tmp_path / "base"
    ensure_base(SMALL, directory, tokenizer_source=qwen_assets, progress=False)
    longer = replace(SMALL, steps=3)
    assert base_state(directory, longer, qwen_assets) == "stale"
    ensure_base(longer, directory, tokenizer_source=qwen_assets, progress=False)
    assert read_record(directory)["steps"] == 3 and builds == [2, 3]

    pretrain.build_base(SMALL, directory.with_name("partial"), tokenizer_source=qwen_assets, progress=False,
                        stop_after=1)
    assert base_state(directory.with_name("partial"), SMALL, qwen_assets) == "partial"
    record = read_record(ensure_base(SMALL, directory.with_name("partial"), tokenizer_source=qwen_assets,
                                     progress=False))
    assert record["status"] == "complete" and record["flops"]["ledger"]["sessions"] == 2
    assert not (directory.with_name("partial") / CHECKPOINTS).exists()


@pytest.mark.parametrize("content", ["a file", "a foreign record", "not a directory"])
def test_a_directory_that_is_not_ours_is_never_touched(tmp_path, qwen_assets, builds, content):
    directory = tmp_path / "precious"
    if content == "not a directory":
        directory.write_text("keep me")
    else:
        directory.mkdir()
        name = "notes.txt" if content == "a file" else RECORD_FILE
        (directory / name).write_text('{"format": "something else"}')
    with pytest.raises(NotABaseDirectory, match="not touching it"):
        ensure_base(SMALL, directory, tokenizer_source=qwen_assets, progress=False)
    with pytest.raises(NotABaseDirectory):
        ensure_base(SMALL, directory, tokenizer_source=qwen_assets, progress=False, rebuild=True)
    assert builds == [] and (directory.read_text() if directory.is_file() else
                             next(directory.iterdir()).read_text()) in ("keep me", '{"format": "something else"}')


def test_a_stale_base_beside_the_users_files_is_not_deleted(tmp_path, qwen_assets, builds):
    directory = tmp_path / "base"
    ensure_base(SMALL, directory, tokenizer_source=qwen_assets, progress=False)
    (directory / "NOTES.txt").write_text("mine")
    built = sorted(path.name for path in directory.iterdir())
    with pytest.raises(NotABaseDirectory, match=r"files that are not the base's \(NOTES.txt\): not touching it"):
        ensure_base(replace(SMALL, steps=3), directory, tokenizer_source=qwen_assets, progress=False)
    assert sorted(path.name for path in directory.iterdir()) == built and builds == [2]
    assert (directory / "NOTES.txt").read_text() == "mine" and read_record(directory)["steps"] == 2


def test_a_base_directory_under_or_at_a_file_is_refused_naming_the_file(tmp_path, qwen_assets, builds):
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(NotABaseDirectory, match=r"file is a file, not a directory$"):
        ensure_base(SMALL, tmp_path / "file" / "base", tokenizer_source=qwen_assets, progress=False)
    with pytest.raises(NotABaseDirectory, match=r"file is a file, not a directory: not touching it"):
        ensure_base(SMALL, tmp_path / "file", tokenizer_source=qwen_assets, progress=False)
    assert (tmp_path / "file").read_text() == "keep me" and builds == []


def test_concurrent_users_wait_for_one_build(tmp_path, qwen_assets, builds):
    directory, errors = tmp_path / "shared", []

    def use() -> None:
        try:
            ensure_base(SMALL, directory, tokenizer_source=qwen_assets, progress=False)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and builds == [2] and base_state(directory, SMALL, qwen_assets) == "complete"


def test_the_model_source_name_resolves_to_the_cached_base(tmp_path, qwen_assets, monkeypatch, builds):
    monkeypatch.setattr(base_cache, "DEMO_RECIPE", SMALL)  # the demo's name, a recipe of seconds
    monkeypatch.setattr(base_cache, "default_tokenizer_source", lambda: qwen_assets)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    assert resolve_model_source("tiny") == "tiny" and resolve_model_source("/some/dir") == "/some/dir"
    assert resolve_model_source(BASE_MODEL, progress=False) == str(tmp_path / "from-env")
    model = load_model(BASE_MODEL)
    assert model.config.vocab_size == 151_936 and not any(p.requires_grad for p in model.parameters())
    assert builds == [2]  # built on first use, then reused
