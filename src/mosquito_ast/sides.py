"""Choosing each clip's side (train, validation, test) for `split`: whole recordings per class, clips at
random, or grouped folds; `splits.make_split` writes the trees this chooses."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from .data import DatasetError, Sample

SIDES = ("train", "validation", "test")
GREEDY_TRIES = 64


@dataclass
class Tree:
    """One folder tree of a split: `prefix` ("." or "fold<k>"), the samples it holds (by index), their
    sides and the manifest columns after the side (the fold)."""

    prefix: str
    indices: list[int]
    sides: list[str]
    extra: list[str] = field(default_factory=list)


@dataclass
class SidePlan:
    """What `choose_sides` decided: the trees to write, the report's fields about them, and the notes on
    what could not be met."""

    trees: list[Tree]
    report: dict
    notes: list[str]


def choose_sides(samples: list[Sample], mode: str, validation_fraction: float, test_fraction: float, seed: int,
                 folds: int) -> SidePlan:
    """With `test_fraction`, whole recording groups per class first go to the test side, in every mode; the
    mode then splits the rest, validation keeping its share of all clips (none with a `validation_fraction`
    of 0: the recipe keeps the last epoch and needs no validation side)."""
    held_out, notes = test_sides(samples, test_fraction, seed)
    if test_fraction:
        achieved_test = held_out.count("test") / len(samples)
        if abs(achieved_test - test_fraction) > 0.05:
            notes.append(f"test fraction {achieved_test:.3f} (target {test_fraction}): whole recording groups "
                         f"allow no closer split")
    if mode == "kfold":
        return kfold_plan(samples, held_out, folds, seed, notes, with_test_side=bool(test_fraction))
    rest = [s for s, side in zip(samples, held_out) if side != "test"]
    rest_sides, rest_notes = validation_sides(rest, mode, rest_fraction(validation_fraction, len(samples), len(rest)),
                                              seed, bool(test_fraction))
    sides = with_test(held_out, rest_sides)
    report = {"validation_fraction_target": validation_fraction, **summary(samples, sides)}
    achieved = report["validation_fraction"]
    if validation_fraction and "validation" not in sides:
        rest_notes = [no_validation_note(bool(test_fraction))]
    elif abs(achieved - validation_fraction) > 0.05:
        rest_notes.append(f"validation fraction {achieved:.3f} (target {validation_fraction}): "
                          f"{sides.count('validation')} of {len(samples)} clips; whole recording groups "
                          f"allow no closer split")
    return SidePlan([Tree(".", list(range(len(samples))), sides)], report, notes + rest_notes)


def validation_sides(rest: list[Sample], mode: str, share: float, seed: int, after_test: bool
                     ) -> tuple[list[str], list[str]]:
    """(train or validation for each clip off the test side, notes); all train when `share` is 0."""
    if not share:
        return ["train"] * len(rest), []
    if mode == "random":
        return random_sides(rest, share, seed), []
    rest_sides, class_notes = independent_sides(rest, share, seed)
    return rest_sides, [f"besides the test recordings, {note}" if after_test else note for note in class_notes]


def no_validation_note(after_test: bool) -> str:
    """The one warning of an independent split whose classes each have one recording left for train."""
    where = "after the test side " if after_test else ""
    then = "score the members on test/" if after_test else "score the members on other recordings"
    return (f"no validation side: {where}every class has one recording group left, all in train; the recipe "
            f"keeps the last epoch (train --select last) and needs none: {then} (README, \"With two sessions "
            f"per species\")")


def kfold_plan(samples: list[Sample], held_out: list[str], folds: int, seed: int, notes: list[str],
               with_test_side: bool) -> SidePlan:
    """A tree per fold of the clips off the test side, then the test side's own tree (if any)."""
    rest = [i for i, side in enumerate(held_out) if side != "test"]
    rest_samples = [samples[i] for i in rest]
    trees, report = [], {"folds": []}
    for k, rest_sides in enumerate(kfold_sides(rest_samples, folds, seed)):
        trees.append(Tree(f"fold{k}", rest, rest_sides, [str(k)]))
        fold = summary(rest_samples, rest_sides)
        report["folds"].append({"fold": k, **fold})
        missing = [c for c, n in fold["classes"].items() if n["validation"]["clips"] == 0]
        if missing:
            notes.append(f"fold {k}: no validation clips of {', '.join(missing)}")
    test = [i for i, side in enumerate(held_out) if side == "test"]
    if with_test_side:
        trees.append(Tree(".", test, ["test"] * len(test), [""]))
        report["test"] = {"clips": len(test), "groups": len({samples[i].group for i in test}),
                          "test_fraction": len(test) / len(samples)}
    return SidePlan(trees, report, notes)


def group_classes(samples: list[Sample]) -> dict[str, str]:
    """Each group's class: its most frequent label (a group spanning classes still moves whole)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for sample in samples:
        counts[sample.group][sample.label] += 1
    return {group: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for group, c in counts.items()}


def _greedy(order: list[str], sizes: dict[str, int], target: float) -> set[str]:
    chosen, total = set(), 0
    for group in order:
        if abs(total + sizes[group] - target) < abs(total - target):
            chosen.add(group)
            total += sizes[group]
    return chosen


def choose_held_out_groups(sizes: dict[str, int], fraction: float, rng: np.random.Generator) -> set[str]:
    """Held-out (validation or test) groups of one class, whole groups only, with a clip share close
    to `fraction`.

    Greedy subset-sum: walk the groups in an order and take a group when it brings the held-out
    clip count closer to fraction x clips. This runs on GREEDY_TRIES seeded random orders and on
    the largest-first order; the closest result wins (ties go to the earliest random order, so the
    seed changes which of several equally good splits is made). With two or more groups, both sides
    keep at least one group: an empty side gets the group that moves the share least from the target.
    """
    groups = sorted(sizes)
    total, target = sum(sizes.values()), fraction * sum(sizes.values())
    orders = [[groups[i] for i in rng.permutation(len(groups))] for _ in range(GREEDY_TRIES)]
    orders.append(sorted(groups, key=lambda g: -sizes[g]))
    best = min((_greedy(order, sizes, target) for order in orders),
               key=lambda chosen: abs(sum(sizes[g] for g in chosen) - target))
    if len(groups) < 2:
        return set()
    if not best:
        best = {min(groups, key=lambda g: (abs(sizes[g] - target), g))}
    if len(best) == len(groups):
        best = best - {min(groups, key=lambda g: (abs(total - sizes[g] - target), g))}
    return best


def independent_sides(samples: list[Sample], fraction: float, seed: int,
                      held_out: str = "validation") -> tuple[list[str], list[str]]:
    """(side of each sample, notes): no group on both sides (train and `held_out`), each class as close
    to `fraction` as its groups allow; a class with one group stays in train and gets a note."""
    rng = np.random.default_rng(seed)
    owner = group_classes(samples)
    sizes: dict[str, dict[str, int]] = defaultdict(dict)
    for group, count in Counter(s.group for s in samples).items():
        sizes[owner[group]][group] = count
    chosen_groups: set[str] = set()
    notes = []
    for label in sorted(sizes):
        chosen = choose_held_out_groups(sizes[label], fraction, rng)
        chosen_groups |= chosen
        if not chosen:
            clips = sum(sizes[label].values())
            notes.append(f"class {label!r} has {len(sizes[label])} recording group ({clips} clips): all in train, "
                         f"none in {held_out}")
    return [held_out if s.group in chosen_groups else "train" for s in samples], notes


def random_sides(samples: list[Sample], fraction: float, seed: int) -> list[str]:
    """Stratified random split of clips, ignoring groups (scikit-learn's train_test_split)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(samples))
    labels = [s.label for s in samples]
    try:
        _, validation = train_test_split(index, test_size=fraction, stratify=labels, random_state=seed)
    except ValueError as error:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(Counter(labels).items()))
        raise DatasetError(f"cannot make a stratified random split of {len(samples)} clips ({counts}) "
                           f"with validation fraction {fraction}: {error}") from None
    chosen = set(validation.tolist())
    return ["validation" if i in chosen else "train" for i in index]


def kfold_sides(samples: list[Sample], folds: int, seed: int) -> list[list[str]]:
    """Sides per fold of scikit-learn's StratifiedGroupKFold (shuffled, seeded)."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = sorted({s.group for s in samples})
    if folds < 2 or folds > len(groups):
        raise DatasetError(f"--folds {folds}: need 2 to {len(groups)} folds for {len(groups)} recording groups")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    result = []
    for _, validation in splitter.split(np.zeros(len(samples)), [s.label for s in samples], [s.group for s in samples]):
        chosen = set(validation.tolist())
        result.append(["validation" if i in chosen else "train" for i in range(len(samples))])
    return result


def session_folds(samples: list[Sample], folds: int, seed: int) -> list[list[str]]:
    """Sides per fold where each class's recordings are dealt round-robin (seeded order) to the folds.

    Unlike StratifiedGroupKFold, which balances clip counts and can leave a class out of a fold's
    validation side, every class with at least `folds` recordings is on both sides of every fold;
    with two recordings per class and two folds, each fold trains on one and selects on the other.
    """
    if folds < 2:
        raise DatasetError(f"--folds {folds}: need at least 2 folds")
    rng = np.random.default_rng(seed)
    owner = group_classes(samples)
    fold_of: dict[str, int] = {}
    for label in sorted(set(owner.values())):
        groups = sorted(g for g, c in owner.items() if c == label)
        for position, index in enumerate(rng.permutation(len(groups))):
            fold_of[groups[index]] = position % folds
    return [["validation" if fold_of[s.group] == k else "train" for s in samples] for k in range(folds)]


def shown_sides(sides: list[str]) -> tuple[str, ...]:
    """Train always, validation and test where the split has them."""
    return tuple(side for side in SIDES if side == "train" or side in sides)


def class_counts(samples: list[Sample], sides: list[str]) -> dict:
    """Clips and recordings of each class on each side."""
    table: dict = {}
    for label in sorted({s.label for s in samples}):
        table[label] = {}
        for side in shown_sides(sides):
            members = [s for s, d in zip(samples, sides) if s.label == label and d == side]
            table[label][side] = {"clips": len(members), "groups": len({s.group for s in members})}
    return table


def summary(samples: list[Sample], sides: list[str]) -> dict:
    """Clips and recordings per side and per class, and the held-out shares."""
    shown = shown_sides(sides)
    table = {"clips": {side: sum(d == side for d in sides) for side in shown},
               "groups": {side: len({s.group for s, d in zip(samples, sides) if d == side}) for side in shown},
               "validation_fraction": sides.count("validation") / len(samples),
               "classes": class_counts(samples, sides)}
    if "test" in shown:
        table["test_fraction"] = sides.count("test") / len(samples)
    return table


def test_sides(samples: list[Sample], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(side of each sample: test or train, notes): whole recordings per class, as for `independent`,
    in every mode; no test side when `fraction` is 0."""
    if not fraction:
        return ["train"] * len(samples), []
    return independent_sides(samples, fraction, seed, held_out="test")


def with_test(sides: list[str], rest_sides: list[str]) -> list[str]:
    """The sides of all samples: test where `sides` says so, the next of `rest_sides` elsewhere."""
    rest = iter(rest_sides)
    return [side if side == "test" else next(rest) for side in sides]


def rest_fraction(fraction: float, total: int, rest: int) -> float:
    """The validation share of the clips left after the test side, so validation keeps `fraction` of all."""
    share = fraction * total / rest
    if share >= 1:
        raise DatasetError(f"the test side leaves {rest} of {total} clips, too few for a validation fraction of "
                           f"{fraction}; lower --test-fraction or --validation-fraction")
    return share
