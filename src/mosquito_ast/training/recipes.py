"""Training recipes: parameter values a `train --preset` fills in for every parameter left unset.

Imported by `config.py` (the parameters), so it stays free of torch and Lightning.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    # Cross-session recipe for a few hundred clips without pretrained weights; README and
    # benchmarks/quality.py give the numbers behind each choice.
    "small-data": {"encoder": "tiny", "norm_stats": "dataset", "learning_rate": 1e-3, "epochs": 30,
                   "batch_sizes": [16], "metric": "balanced_accuracy", "class_weight": "balanced",
                   "augment": ["mask"], "select": "last"},
}
# Values of the parameters a recipe sets when neither the user nor the recipe gives one. These
# parameters default to None so that a value the user states, even this one, is never overridden.
PLAIN_DEFAULTS: dict[str, Any] = {"norm_stats": "audioset", "learning_rate": 5e-5, "epochs": 5,
                                  "batch_sizes": [8], "metric": "accuracy", "class_weight": "none", "augment": [],
                                  "select": "best"}


def recipe_defaults(preset: str) -> dict[str, Any]:
    """The value of each recipe-set parameter under `preset`: the recipe's, else the plain default
    (fresh lists, so a run may change its own)."""
    recipe = RECIPES.get(preset, {})
    values = {name: recipe.get(name, plain) for name, plain in PLAIN_DEFAULTS.items()}
    return {name: list(value) if isinstance(value, list) else value for name, value in values.items()}
