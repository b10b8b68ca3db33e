"""The base's recipe: checked literal hyperparameters and a hash that names exactly one build."""

from __future__ import annotations

from dataclasses import replace

import pytest

from experiments.basemodel.recipe import DEMO_RECIPE, RECIPES, TEST_RECIPE, BaseRecipe


def test_the_recipe_hash_is_stable_and_covers_every_field(vocabulary):
    ids = vocabulary.alphabet_ids
    assert DEMO_RECIPE.recipe_hash(ids) == DEMO_RECIPE.recipe_hash(tuple(ids))
    assert len(DEMO_RECIPE.recipe_hash(ids)) == 16
    changed = [replace(DEMO_RECIPE, steps=1), replace(DEMO_RECIPE, seed=1), replace(DEMO_RECIPE, learning_rate=1e-3),
               replace(DEMO_RECIPE, context_alpha_fraction=0.25), TEST_RECIPE]
    hashes = {recipe.recipe_hash(ids) for recipe in changed}
    assert len(hashes) == len(changed) and DEMO_RECIPE.recipe_hash(ids) not in hashes
    assert DEMO_RECIPE.recipe_hash(ids) != DEMO_RECIPE.recipe_hash(tuple(reversed(ids)))
    assert BaseRecipe.from_dict(DEMO_RECIPE.to_dict()) == DEMO_RECIPE
    with pytest.raises(ValueError, match="steps"):
        BaseRecipe(steps=0)


def test_validation_runs_every_eval_every_steps_and_after_the_last():
    assert replace(DEMO_RECIPE, steps=10, eval_every=4).evaluation_steps() == [4, 8, 10]
    assert replace(DEMO_RECIPE, steps=8, eval_every=4).evaluation_steps() == [4, 8]
    assert DEMO_RECIPE.with_steps(3).steps == 3 and RECIPES == {"demo": DEMO_RECIPE, "test": TEST_RECIPE}
