"""The small-data recipe and the cross-session folds of benchmarks/quality.py."""

from collections import defaultdict

import pytest

from mosquito_ast.config import RECIPES, TrainParams
from mosquito_ast.data import Sample, discover
from mosquito_ast.splits import session_folds


def test_without_a_checkpoint_the_small_data_recipe_applies():
    params = TrainParams(train_dir="a", validation_dir="b")
    assert params.preset == "small-data" and params.encoder_size == "tiny"
    for name, value in RECIPES["small-data"].items():
        if name != "encoder":
            assert getattr(params, name) == value, name
    assert (params.norm_stats, params.metric, params.learning_rate) == ("dataset", "balanced_accuracy", 1e-3)
    assert (params.epochs, params.batch_sizes, params.class_weight) == (30, [16], "balanced")
    assert (params.augment, params.mask_fraction) == (["mask"], 0.2)


def test_explicit_values_win_over_the_recipe():
    params = TrainParams(train_dir="a", validation_dir="b", epochs=3, learning_rate=1e-4)
    assert (params.epochs, params.learning_rate, params.norm_stats) == (3, 1e-4, "dataset")
    # a stated value wins even when it equals the plain default
    stated = TrainParams(train_dir="a", validation_dir="b", learning_rate=5e-5, batch_sizes=[8], class_weight="none")
    assert (stated.learning_rate, stated.batch_sizes, stated.class_weight, stated.epochs) == (5e-5, [8], "none", 30)
    assert TrainParams(train_dir="a", validation_dir="b", augment="none").augment == []
    assert TrainParams(train_dir="a", validation_dir="b", augment=[]).augment == []


def test_with_a_checkpoint_no_recipe_is_applied():
    params = TrainParams(train_dir="a", validation_dir="b", ssl_checkpoint="pretrained/")
    assert (params.preset, params.learning_rate, params.norm_stats) == ("auto", 5e-5, "audioset")
    assert (params.epochs, params.batch_sizes, params.metric, params.class_weight) == (5, [8], "accuracy", "none")
    assert params.augment == []
    assert TrainParams(train_dir="a", validation_dir="b", preset="base").encoder_size == "base"


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
