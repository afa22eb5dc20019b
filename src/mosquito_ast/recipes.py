"""The values `train` fills in for every recipe-set parameter left unset, by how the run starts: from
scratch, from a checkpoint that stores its normalization (a `pretrain` output or a member), or from a
Hugging Face AST or old-notebook checkpoint (trained on AudioSet's normalization). A value the user
states is never replaced; the README's "Defaults by start" table documents each start.

Imported by `config.py` (the parameters), so it stays free of torch and Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .checkpoints import MEMBER_FORMAT, PRETRAINED_FORMAT, checkpoint_format, read_config

SCRATCH = "scratch"
PRETRAINED = "pretrained"
AUDIOSET_AST = "audioset-ast"
START_NAMES = {SCRATCH: "scratch", PRETRAINED: "a `pretrain` output or member",
               AUDIOSET_AST: "a Hugging Face AST or old-notebook checkpoint"}
SOURCES = ("recipe", "function matching", "checkpoint", "teachers", "user")  # the order of a run's first lines


def _recipe(epochs: int, batch_size: int, learning_rate: float, norm_stats: str) -> dict[str, Any]:
    """One start's values. Every start shares the rest: classes weigh alike, in the loss as in the metric;
    masks against over-fitting a few recordings; the last epoch kept, so nothing is chosen on the clips
    that later score the member."""
    return {"epochs": epochs, "batch_sizes": [batch_size], "learning_rate": learning_rate, "norm_stats": norm_stats,
            "class_weight": "balanced", "augment": ["mask"], "metric": "balanced_accuracy", "select": "last"}


RECIPES: dict[str, dict[str, Any]] = {
    # the small-data recipe: README and benchmarks/quality.py give the numbers behind each choice
    SCRATCH: _recipe(30, 16, 1e-3, "dataset"),
    # our encoders are small and pretrained on the same few recordings: the same budget as from scratch
    PRETRAINED: _recipe(30, 16, 1e-3, "checkpoint"),
    # AST-base on AudioSet: the AST paper's fine-tuning rate on the input statistics its weights expect
    AUDIOSET_AST: _recipe(5, 8, 5e-5, "audioset"),
}
RECIPE_PARAMETERS = tuple(RECIPES[SCRATCH])
# How `distill` teaches by default: function matching (Beyer et al. 2022, "a good teacher is patient and
# consistent"): the teachers score every augmented, mixed batch the student sees and the student learns their
# vote alone (KL at T = 1, no cross-entropy with the labels); benchmarks/README.md has the figures.
FUNCTION_MATCHING: dict[str, Any] = {"augment": ["mask", "mixup"], "teaching": "consistent", "alpha": 1.0,
                                     "temperature": 1.0}
# Parameters whose start value the checkpoint defines rather than the recipe.
FROM_CHECKPOINT = {PRETRAINED: ("norm_stats",), AUDIOSET_AST: ("norm_stats",)}
# From scratch, --preset names the encoder; small-data (the recipe's old name) and auto build the tiny one.
SCRATCH_ENCODERS = {"auto": "tiny", "small-data": "tiny"}


def checkpoint_config(source: str | Path | None) -> dict[str, Any]:
    """The config.json of a local checkpoint folder (or of the folder of a weights file); {} for a hub id,
    a path that does not exist (loading reports it) or a folder without one (old notebooks)."""
    if not source:
        return {}
    path = Path(source)
    folder = path.parent if path.is_file() else path
    return read_config(folder) if folder.is_dir() else {}


def start_of(source: str | Path | None, config: Mapping[str, Any]) -> str:
    """How a run with this --ssl-checkpoint, whose config.json holds `config` (`checkpoint_config`), starts:
    SCRATCH, PRETRAINED (a checkpoint of ours, which stores the normalization its encoder learned on) or
    AUDIOSET_AST (anything else)."""
    if not source:
        return SCRATCH
    if checkpoint_format(config) in (MEMBER_FORMAT, PRETRAINED_FORMAT):
        return PRETRAINED
    return AUDIOSET_AST


def start_defaults(start: str) -> dict[str, tuple[Any, str]]:
    """Each recipe-set parameter's value at this start and where it comes from (recipe or checkpoint);
    lists are fresh, so a run may change its own."""
    defined = FROM_CHECKPOINT.get(start, ())
    return {name: (list(value) if isinstance(value, list) else value, "checkpoint" if name in defined else "recipe")
            for name, value in RECIPES[start].items()}


def distill_defaults() -> dict[str, tuple[Any, str]]:
    """`distill`'s recipe-set values: its student starts from scratch, normalized as its teachers, and learns
    by function matching."""
    scratch = start_defaults(SCRATCH)
    return {"epochs": scratch["epochs"], "batch_sizes": scratch["batch_sizes"],
            "learning_rate": scratch["learning_rate"], "norm_stats": ("teachers", "teachers"),
            "class_weight": scratch["class_weight"],
            **{name: (list(value) if isinstance(value, list) else value, "function matching")
               for name, value in FUNCTION_MATCHING.items()}}


def shown(value: Any) -> str:
    """A parameter value as a flag would take it: lists comma-separated, none for an empty one."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def values_in_effect(params: Any, defaults: Mapping[str, tuple[Any, str]],
                     details: Mapping[str, str] | None = None) -> str:
    """The block a run prints first: every recipe-set value, one line per source. A value equal to its
    default is shown under the default's source, as no record of what was typed survives a sweep or a
    notebook; any other value is the user's. `details` adds a note after a value (e.g. the stats)."""
    details = details or {}
    lines: dict[str, list[str]] = {}
    for name, (default, source) in defaults.items():
        value = getattr(params, name)
        origin = source if value == default else "user"
        note = f" ({details[name]})" if name in details else ""
        lines.setdefault(origin, []).append(f"{name} {shown(value)}{note}")
    width = max(map(len, lines))
    return "\n".join(f"  {origin.ljust(width)}  {', '.join(lines[origin])}" for origin in SOURCES if origin in lines)
