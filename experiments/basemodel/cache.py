"""Where the ``llmtime-base`` model lives: a cache directory, built on first use.

    directory = ensure_base()                   # DEMO_RECIPE, built once, then reused
    model = load_model("llmtime-base")          # the same, through the model source name

The demo's base lives in ``$LLMTIME_BASE_DIR`` if set (the CLI's ``--base-dir`` flag sets it),
else in ``$XDG_CACHE_HOME/llmtime-budget/llmtime-base`` (``~/.cache/...``); other recipes in
``.../llmtime-budget/<recipe name>``. A base there is
reused while its record's recipe hash is the recipe's; a base of another recipe (or an
interrupted build of one) is deleted and rebuilt, an interrupted build of the same recipe is
resumed. Only what the builder writes is ever deleted: a directory that holds anything but a
base of ours (no ``llmtime-base.json`` of this format), or a base beside files of the user's,
is never touched: :class:`NotABaseDirectory`. A file lock beside the directory
makes concurrent users (pytest workers, two shells) wait for one build instead of racing.
"""

from __future__ import annotations

import logging
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

from filelock import FileLock

from experiments.basemodel.recipe import DEMO_RECIPE, BaseRecipe
from experiments.basemodel.compact_head import CompactVocabulary
from experiments.models.loading import BASE_MODEL, NAMED_SOURCES, tiny_config
from experiments.basemodel.pretrain import CHECKPOINTS, RECORD_FILE, build_base, read_record
from lvdata import default_tokenizer_source, load_tokenizer

logger = logging.getLogger(__name__)
ENV_VAR = "LLMTIME_BASE_DIR"
_ANNOUNCED: set[Path] = set()  # base directories this process has said it reuses


class NotABaseDirectory(FileExistsError):
    """The base directory exists and holds something that is not a base built by this tool."""


# what build_base writes: the checkpoint (save_pretrained of the model and its tokenizer), the
# record, the base's ledger and the resume checkpoints
BUILT_FILES = frozenset({
    RECORD_FILE, CHECKPOINTS, "config.json", "generation_config.json", "model.safetensors",
    "ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "ledger.sqlite-journal",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "chat_template.jinja",
})


def default_base_dir(recipe: BaseRecipe | None = None) -> Path:
    """For the demo's base (a recipe named as :data:`DEMO_RECIPE`, the default) ``$LLMTIME_BASE_DIR``
    if set; else ``$XDG_CACHE_HOME/llmtime-budget/<recipe.name>`` (``~/.cache/...``)."""
    recipe = recipe or DEMO_RECIPE
    if recipe.name == DEMO_RECIPE.name and os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "llmtime-budget" / recipe.name


@lru_cache(maxsize=4)
def _alphabet_ids(tokenizer_source: str) -> tuple[int, ...]:
    return CompactVocabulary.from_tokenizer(load_tokenizer(tokenizer_source), tiny_config().vocab_size).alphabet_ids


def expected_hash(recipe: BaseRecipe, tokenizer_source: str | os.PathLike | None = None) -> str:
    """The recipe hash a base of ``recipe`` built with this tokenizer carries."""
    return recipe.recipe_hash(_alphabet_ids(os.fspath(tokenizer_source or default_tokenizer_source())))


def base_state(directory: Path, recipe: BaseRecipe, tokenizer_source: str | os.PathLike | None = None) -> str:
    """``"absent"`` (missing or empty), ``"complete"`` (a finished base of ``recipe``),
    ``"partial"`` (an unfinished build of ``recipe``), ``"stale"`` (a base of another recipe),
    or ``"foreign"`` (anything else: not ours)."""
    if not directory.exists() or (directory.is_dir() and not any(directory.iterdir())):
        return "absent"
    record = read_record(directory) if directory.is_dir() else None
    if record is None:
        return "foreign"
    if record.get("recipe_hash") != expected_hash(recipe, tokenizer_source):
        return "stale"
    return "complete" if record.get("status") == "complete" else "partial"


def ensure_base(recipe: BaseRecipe | None = None, directory: str | os.PathLike | None = None, *,
                tokenizer_source: str | os.PathLike | None = None, progress: bool = True,
                rebuild: bool = False) -> Path:
    """The directory of a finished base of ``recipe`` (default :data:`DEMO_RECIPE`): reused,
    resumed or (re)built (see the module docstring). ``rebuild``: delete a base of ours there
    first, even a current one."""
    recipe = recipe or DEMO_RECIPE
    directory = Path(directory) if directory is not None else default_base_dir(recipe)
    file_above = next((parent for parent in directory.parents if parent.is_file()), None)
    if file_above is not None:
        raise NotABaseDirectory(f"cannot put the base in {directory}: {file_above} is a file, not a directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock"):
        state = base_state(directory, recipe, tokenizer_source)
        if state == "foreign":
            what = "is a file, not a directory" if directory.is_file() else \
                f"is not an llmtime base (no {RECORD_FILE} of this tool)"
            raise NotABaseDirectory(f"{directory} {what}: not touching it; choose another directory with "
                                    f"${ENV_VAR}, --base-dir or --out")
        if state == "complete" and not rebuild:
            if directory not in _ANNOUNCED:  # once per process, not at every load
                logger.info("base %s: reusing %s (recipe %s)", recipe.name, directory,
                            expected_hash(recipe, tokenizer_source))
                _ANNOUNCED.add(directory)
            return directory
        replacing = state == "stale" or (rebuild and state != "absent")
        if replacing:
            logger.info("base %s: %s holds %s; deleting it to rebuild", recipe.name, directory,
                        "another recipe's base" if state == "stale" else "the base to rebuild")
            _delete_base(directory)
        resuming = state == "partial" and not replacing and (directory / CHECKPOINTS).is_dir()
        action = "resuming the build" if resuming else "rebuilding it" if replacing else "building it"
        logger.info("base %s: %s in %s (%d steps; the recipe's hash is %s)", recipe.name, action, directory,
                    recipe.steps, expected_hash(recipe, tokenizer_source))
        build_base(recipe, directory, tokenizer_source=tokenizer_source, progress=progress)
    return directory


def _delete_base(directory: Path) -> None:
    """Delete the base in ``directory`` (the files :data:`BUILT_FILES`), and the directory if then empty;
    raises :class:`NotABaseDirectory`, deleting nothing, if it holds anything else."""
    others = sorted(path.name for path in directory.iterdir() if path.name not in BUILT_FILES)
    if others:
        raise NotABaseDirectory(f"{directory} holds the base to rebuild and files that are not the base's "
                                f"({', '.join(others[:5])}): not touching it; move them, or build the base in "
                                f"another directory (${ENV_VAR}, --base-dir or --out)")
    for path in directory.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    directory.rmdir()


def resolve_model_source(source: str | os.PathLike, *, progress: bool = True) -> str:
    """``"llmtime-base"`` becomes the directory of the cached base (built on first use); any
    other source is returned unchanged."""
    source = os.fspath(source)
    return str(ensure_base(progress=progress)) if source == BASE_MODEL else source


def base_summary(source: str | os.PathLike) -> dict[str, Any]:
    """For ``"llmtime-base"``: ``{"base": ...}``, what the plan's report says about the base
    (built now if it is not there yet); ``{}`` for any other source."""
    if os.fspath(source) != BASE_MODEL:
        return {}
    directory = ensure_base()
    record = read_record(directory) or {}
    keys = ("name", "recipe_hash", "seed", "steps", "tokens", "losses", "wall_seconds", "tokens_per_second")
    summary = {key: record.get(key) for key in keys}
    summary["flops"] = record.get("flops", {}).get("ledger", {}).get("total")
    summary["sequences"] = record.get("recipe", {}).get("sequences")
    summary["corpus"] = record.get("corpus", {}).get("description")
    summary["directory"] = str(directory)
    return {"base": summary}


NAMED_SOURCES[BASE_MODEL] = lambda: resolve_model_source(BASE_MODEL)  # load_model("llmtime-base")


__all__ = ["BASE_MODEL", "ENV_VAR", "NotABaseDirectory", "base_state", "base_summary", "default_base_dir",
           "ensure_base", "expected_hash", "resolve_model_source"]
