"""The defaults of each start (from scratch, from our pretrain, from an AudioSet AST) and the
cross-session folds of benchmarks/quality.py."""

import json
from collections import defaultdict

import pytest

from mosquito_ast.config import ConfigError, DistillParams, TrainParams
from mosquito_ast.data import Sample, discover
from mosquito_ast.sides import session_folds
from mosquito_ast.recipes import (AUDIOSET_AST, FUNCTION_MATCHING, PRETRAINED, RECIPE_PARAMETERS, SCRATCH, SOURCES,
                                           distill_defaults, start_defaults, values_in_effect)

# The README's "Defaults by start" table, value by value.
DOCUMENTED = {
    SCRATCH: {"epochs": 30, "batch_sizes": [16], "learning_rate": 1e-3, "norm_stats": "dataset"},
    PRETRAINED: {"epochs": 30, "batch_sizes": [16], "learning_rate": 1e-3, "norm_stats": "checkpoint"},
    AUDIOSET_AST: {"epochs": 5, "batch_sizes": [8], "learning_rate": 5e-5, "norm_stats": "audioset"},
}
EVERY_START = {"class_weight": "balanced", "augment": ["mask"], "metric": "balanced_accuracy", "select": "last"}


def checkpoint_folder(folder, config: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.fixture
def starts(tmp_path) -> dict[str, str | None]:
    """An --ssl-checkpoint of each start: none, a `pretrain` output, a Hugging Face AST folder."""
    features = {"norm_mean": -6.5, "norm_std": 3.25}
    return {SCRATCH: None,
            PRETRAINED: checkpoint_folder(tmp_path / "pretrained", {"format": "mosquito-ast-pretrained",
                                                                    "features": features}),
            AUDIOSET_AST: checkpoint_folder(tmp_path / "hf", {"model_type": "audio-spectrogram-transformer"})}


@pytest.mark.parametrize("start", [SCRATCH, PRETRAINED, AUDIOSET_AST])
def test_each_start_gets_its_documented_defaults(starts, start):
    params = TrainParams(train_dir="a", ssl_checkpoint=starts[start])
    assert params.start == start
    assert {name: getattr(params, name) for name in RECIPE_PARAMETERS} == {**DOCUMENTED[start], **EVERY_START}
    assert params.mask_fraction == 0.2 and params.validation_dir is None  # select last needs none


def test_a_hub_id_or_an_old_notebook_folder_starts_as_an_audioset_ast(tmp_path):
    old_notebook = tmp_path / "ssl"
    old_notebook.mkdir()
    (old_notebook / "model.safetensors").write_bytes(b"")
    for source in ("MIT/ast-finetuned-audioset-10-10-0.4593", str(old_notebook)):
        assert TrainParams(train_dir="a", ssl_checkpoint=source).start == AUDIOSET_AST


def test_every_preset_from_scratch_gets_the_recipe():
    for preset, encoder in [("auto", "tiny"), ("small-data", "tiny"), ("tiny", "tiny"), ("small", "small"),
                            ("base", "base")]:
        params = TrainParams(train_dir="a", preset=preset)
        assert params.encoder_size == encoder
        assert {name: getattr(params, name) for name in RECIPE_PARAMETERS} == {**DOCUMENTED[SCRATCH], **EVERY_START}


@pytest.mark.parametrize("start", [SCRATCH, PRETRAINED, AUDIOSET_AST])
def test_a_value_the_user_states_is_never_overridden(starts, start):
    stated = {"epochs": 3, "batch_sizes": [4], "learning_rate": 2e-4, "norm_stats": "audioset",
              "class_weight": "none", "augment": ["roll"], "metric": "accuracy", "select": "best"}
    params = TrainParams(train_dir="a", validation_dir="b", ssl_checkpoint=starts[start], **stated)
    assert {name: getattr(params, name) for name in RECIPE_PARAMETERS} == stated
    # a stated value wins even when it equals another start's default
    ast_values = {name: value for name, (value, _) in start_defaults(AUDIOSET_AST).items()}
    equal = TrainParams(train_dir="a", ssl_checkpoint=starts[start], **ast_values)
    assert {name: getattr(equal, name) for name in RECIPE_PARAMETERS} == ast_values
    assert TrainParams(train_dir="a", augment="none").augment == []
    assert TrainParams(train_dir="a", augment=[]).augment == []


def test_checkpoint_normalization_needs_a_checkpoint():
    with pytest.raises(ConfigError, match="norm_stats: checkpoint"):
        TrainParams(train_dir="a", norm_stats="checkpoint")


def test_the_first_lines_of_a_run_name_each_value_and_its_source(starts):
    params = TrainParams(train_dir="a", ssl_checkpoint=starts[PRETRAINED], epochs=3)
    lines = values_in_effect(params, start_defaults(params.start), {"norm_stats": "mean -6.5, std 3.25"}).splitlines()
    assert [line.split()[0] for line in lines] == ["recipe", "checkpoint", "user"]
    assert "learning_rate 0.001" in lines[0] and "augment mask" in lines[0] and "select last" in lines[0]
    assert lines[1].split(None, 1)[1] == "norm_stats checkpoint (mean -6.5, std 3.25)"
    assert lines[2].split(None, 1)[1] == "epochs 3"
    shown = " ".join(lines)
    assert all(f"{name} " in shown for name in RECIPE_PARAMETERS)


def test_distill_defaults_are_the_scratch_loop_normalized_as_the_teachers_and_function_matching():
    params = DistillParams(models="m", data="d", output="o")
    for name, (value, source) in distill_defaults().items():
        assert getattr(params, name) == value, name
        expected = "teachers" if name == "norm_stats" else "function matching" if name in FUNCTION_MATCHING else "recipe"
        assert source == expected, name
    assert (params.teaching, params.alpha, params.temperature, params.augment) == ("consistent", 1.0, 1.0, ["mask", "mixup"])
    lines = values_in_effect(params, distill_defaults()).splitlines()
    assert [next(s for s in SOURCES if line.strip().startswith(s)) for line in lines] == \
        ["recipe", "function matching", "teachers"]
    assert lines[1].endswith("augment mask,mixup, teaching consistent, alpha 1, temperature 1")


def _samples(groups_per_class: int) -> list[Sample]:
    return [Sample(f"{c}/{g}/{i}.wav", c, f"{c}-{g}") for c in "abc" for g in range(groups_per_class) for i in range(3)]


@pytest.mark.parametrize("groups_per_class,folds", [(2, 2), (3, 2), (5, 3)])
def test_session_folds_never_put_a_session_on_both_sides(groups_per_class, folds):
    samples = _samples(groups_per_class)
    all_folds = session_folds(samples, folds, seed=1)
    assert len(all_folds) == folds
    scored_in = defaultdict(int)
    for sides in all_folds:
        train = {s.group for s, side in zip(samples, sides) if side == "train"}
        scored = {s.group for s, side in zip(samples, sides) if side == "validation"}
        assert not train & scored
        assert {s.label for s, side in zip(samples, sides) if side == "validation"} == {"a", "b", "c"}
        for group in scored:
            scored_in[group] += 1
    assert set(scored_in.values()) == {1} and len(scored_in) == 3 * groups_per_class  # each session scored once


def test_wingbeats_folds_train_on_one_session_and_score_the_other(wingbeats):
    samples = discover(wingbeats)
    for sides in session_folds(samples, 2, seed=0):
        per_class = defaultdict(lambda: defaultdict(set))
        for sample, side in zip(samples, sides):
            per_class[sample.label][side].add(sample.group)
        assert all(len(s["train"]) == 1 and len(s["validation"]) == 1 for s in per_class.values())


def test_every_unseen_session_candidate_is_a_valid_train_recipe(tmp_path):
    """benchmarks/unseen_candidates.yaml goes to the team's unseen sessions in one long run: a typo there
    would fail it after the recipe's members, so each candidate is built here as `quality.py` builds it."""
    import yaml
    from pathlib import Path

    candidates = yaml.safe_load((Path(__file__).parents[1] / "benchmarks" / "unseen_candidates.yaml").read_text())
    assert 5 <= len(candidates) <= 12  # issue 25: at most 12, each within 8 minutes for 6 members
    for name, values in candidates.items():
        params = TrainParams(**{"train_dir": str(tmp_path), "preset": "auto", "select": "last", **values})
        for key, value in values.items():
            assert getattr(params, key) == value, (name, key)
