"""``llmtime-base``: the demo's small *pretrained* base model, built here on general numeric
sequences (the way Qwen is pretrained, on other text, before the plan adapts it).

recipe (literal hyperparameters, a stable hash) -> families and corpus (general sequences as text) ->
compact_head (the exact 14-row LLMTIME output vocabulary) -> pretrain (the loop: progress bar,
resume, deterministic, FLOPs in the base's own ledger) -> cache (built on first use, reused while
the recipe is unchanged) -> cli (``python -m experiments pretrain-base``). Importing this package
registers the ``llmtime-base`` model source with ``experiments.models.load_model``.
"""

from experiments.basemodel.cache import base_summary, default_base_dir, ensure_base, resolve_model_source
from experiments.basemodel.recipe import DEMO_RECIPE, RECIPES, BaseRecipe

__all__ = ["DEMO_RECIPE", "RECIPES", "BaseRecipe", "base_summary", "default_base_dir", "ensure_base",
           "resolve_model_source"]
