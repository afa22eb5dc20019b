"""Train/validation(/test) splits that keep recordings (groups) whole or mix them.

Clips cut from one recording resemble each other more than clips of another recording of the same
species, so a split that puts one recording on both sides overstates accuracy. `make_split` builds
the honest (`independent`) split, the optimistic (`random`) one and grouped k-fold splits as
folder-per-class trees; `leakage.check_split` proves which is which. A held-out test side, always
whole recordings whatever the mode, scores an ensemble on clips none of its members chose anything on.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm.auto import tqdm

from mosquito_ast_lite.io import FolderKind, atomic_directory, check_replaceable

from .data import DatasetError, Sample, discover
from .segment import SegmentSettings, relative_location, segment_recordings

MODES = ("independent", "random", "kfold")
LINKS = ("hard", "copy", "symlink")
SIDES = ("train", "validation", "test")
REPORT_NAME = "split_report.json"
MANIFEST_NAME = "manifest.csv"
SPLIT_FOLDER = FolderKind("a split", (REPORT_NAME, MANIFEST_NAME), ("train", "validation", "test", "fold*", MANIFEST_NAME, REPORT_NAME))
GREEDY_TRIES = 64


class SplitWarning(UserWarning):
    """A split that could not meet a request (a class on one side only, a fraction far off)."""


# ---------------------------------------------------------------- assigning clips to sides


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


# ---------------------------------------------------------------- writing the trees


@dataclass
class _Linker:
    """Places files by hard link, copy or symlink; hard links fall back to copies (with one notice)."""

    how: str
    fell_back: bool = False

    def place(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.how == "symlink":
            os.symlink(source.resolve(), target)
            return
        if self.how == "hard" and not self.fell_back:
            try:
                os.link(source, target)
                return
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                    raise
                self.fell_back = True
                print(f"notice: hard links failed ({error.strerror}: {source} -> {target}); copying files instead")
        shutil.copy2(source, target)

    @property
    def used(self) -> str:
        return "copy" if self.fell_back else self.how


def _shown_sides(sides: list[str]) -> tuple[str, ...]:
    """Train and validation always, test where the split has one."""
    return SIDES if "test" in sides else SIDES[:2]


def _counts(samples: list[Sample], sides: list[str]) -> dict:
    table: dict = {}
    for label in sorted({s.label for s in samples}):
        table[label] = {}
        for side in _shown_sides(sides):
            members = [s for s, d in zip(samples, sides) if s.label == label and d == side]
            table[label][side] = {"clips": len(members), "groups": len({s.group for s in members})}
    return table


def _summary(samples: list[Sample], sides: list[str]) -> dict:
    shown = _shown_sides(sides)
    summary = {"clips": {side: sum(d == side for d in sides) for side in shown},
               "groups": {side: len({s.group for s, d in zip(samples, sides) if d == side}) for side in shown},
               "validation_fraction": sides.count("validation") / len(samples),
               "classes": _counts(samples, sides)}
    if "test" in shown:
        summary["test_fraction"] = sides.count("test") / len(samples)
    return summary


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


def _write_tree(root: Path, prefix: PurePosixPath, samples: list[Sample], locations: list[PurePosixPath],
                sides: list[str], linker: _Linker, rows: list[list[str]], extra: list[str], progress: bool) -> None:
    for sample, location, side in tqdm(list(zip(samples, locations, sides)), desc=f"write {prefix}" if prefix.name else "write",
                                       unit="file", disable=not progress):
        relative = prefix / side / sample.label / location
        linker.place(Path(sample.path), root / relative)
        rows.append([relative.as_posix(), sample.label, sample.group, side, *extra])


def _locations(samples: list[Sample], source: Path) -> list[PurePosixPath]:
    locations = [PurePosixPath(s.label) / relative_location(s, source) for s in samples]
    seen: dict[PurePosixPath, str] = {}
    for sample, location in zip(samples, locations):
        if location in seen:
            raise DatasetError(f"{sample.path} and {seen[location]} would both be written as {location}")
        seen[location] = sample.path
    return [PurePosixPath(*loc.parts[1:]) for loc in locations]


def make_split(data: str | Path, output: str | Path, mode: str, group_by: str = "auto",
               validation_fraction: float = 0.2, seed: int = 0, folds: int = 5, link: str = "hard",
               overwrite: bool = False, segment: SegmentSettings | None = None, progress: bool = True,
               test_fraction: float = 0.0) -> dict:
    """Write `<output>/<mode>/train|validation|test/<class>/...` (kfold: `<output>/kfold/fold<k>/...` and
    `<output>/kfold/test/...`), a manifest (path, label, group, side[, fold]) and `split_report.json`;
    return the report.

    With `test_fraction`, whole recording groups per class (as `independent` chooses them) first go to
    the test side, in every mode; the mode then splits the rest, validation keeping its share of all
    clips. Modes: `independent` assigns whole recording groups per class with a seeded greedy search for
    the validation share closest to `validation_fraction` (see `choose_held_out_groups`), keeping
    every class with two or more groups on both sides; `random` is scikit-learn's stratified
    `train_test_split` of clips, groups ignored; `kfold` is scikit-learn's `StratifiedGroupKFold`.
    What could not be met (a class on one side only, a share far from the target, a fold missing
    classes) is listed under "warnings" in the report and raised as `SplitWarning`.

    Files keep their path below the class folder (session folders, names with spaces and dots), so
    the same `--group-by` rule finds the same groups in the output. With `segment`, recordings are
    first cut into clips under `<output>/clips/` (reused by later splits with the same settings) and
    clips inherit their recording's group. The split folder is built beside its final place and
    moved in at the end; an existing non-empty one is refused unless `overwrite`.
    """
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    if link not in LINKS:
        raise ValueError(f"link: {link!r} is not one of {', '.join(LINKS)}")
    if mode != "kfold" and not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction: must be between 0 and 1, got {validation_fraction}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction: must be at least 0 and below 1, got {test_fraction}")
    data, output = Path(data), Path(output)
    final = output / mode
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(f"{final}: split folder exists and is not empty (use --overwrite to replace it)")
    check_replaceable(final, SPLIT_FOLDER)

    if segment is not None:
        clips_root = output / "clips"
        samples = segment_recordings(data, clips_root, segment, group_by, overwrite, progress)
        source = clips_root
        locations = [PurePosixPath(Path(s.path).relative_to(clips_root / s.label).as_posix()) for s in samples]
    else:
        samples = discover(data, group_by)
        source = data
        locations = _locations(samples, data)

    report: dict = {"mode": mode, "data": str(data), "group_by": group_by, "seed": seed,
                    "test_fraction_target": test_fraction,
                    "files": len(samples), "recording_groups": len({s.group for s in samples}),
                    "segmentation": None if segment is None else {**asdict(segment), "clips": str(source)}}
    output.mkdir(parents=True, exist_ok=True)
    linker = _Linker(link)
    rows: list[list[str]] = []
    held_out, notes = test_sides(samples, test_fraction, seed)
    rest = [s for s, side in zip(samples, held_out) if side != "test"]
    if test_fraction:
        achieved_test = held_out.count("test") / len(samples)
        if abs(achieved_test - test_fraction) > 0.05:
            notes.append(f"test fraction {achieved_test:.3f} (target {test_fraction}): whole recording groups "
                         f"allow no closer split")
    with atomic_directory(final, SPLIT_FOLDER) as building:
        if mode == "kfold":
            rest_locations = [loc for loc, side in zip(locations, held_out) if side != "test"]
            report["folds"] = []
            for k, rest_sides in enumerate(kfold_sides(rest, folds, seed)):
                _write_tree(building, PurePosixPath(f"fold{k}"), rest, rest_locations, rest_sides, linker, rows,
                            [str(k)], progress)
                summary = _summary(rest, rest_sides)
                report["folds"].append({"fold": k, **summary})
                missing = [c for c, n in summary["classes"].items() if n["validation"]["clips"] == 0]
                if missing:
                    notes.append(f"fold {k}: no validation clips of {', '.join(missing)}")
            if test_fraction:
                test = [s for s, side in zip(samples, held_out) if side == "test"]
                test_locations = [loc for loc, side in zip(locations, held_out) if side == "test"]
                _write_tree(building, PurePosixPath("."), test, test_locations, ["test"] * len(test), linker, rows,
                            [""], progress)
                report["test"] = {"clips": len(test), "groups": len({s.group for s in test}),
                                  "test_fraction": len(test) / len(samples)}
        else:
            report["validation_fraction_target"] = validation_fraction
            share = rest_fraction(validation_fraction, len(samples), len(rest))
            if mode == "independent":
                rest_sides, class_notes = independent_sides(rest, share, seed)
                notes += [f"besides the test recordings, {note}" if test_fraction else note for note in class_notes]
            else:
                rest_sides = random_sides(rest, share, seed)
            sides = with_test(held_out, rest_sides)
            _write_tree(building, PurePosixPath("."), samples, locations, sides, linker, rows, [], progress)
            report.update(_summary(samples, sides))
            achieved = report["validation_fraction"]
            if abs(achieved - validation_fraction) > 0.05:
                notes.append(f"validation fraction {achieved:.3f} (target {validation_fraction}): "
                             f"{report['clips']['validation']} of {len(samples)} clips; whole recording groups "
                             f"allow no closer split")
        report["link"] = linker.used
        report["warnings"] = notes
        with open(building / MANIFEST_NAME, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["path", "label", "group", "side"] + (["fold"] if mode == "kfold" else []))
            writer.writerows(rows)
        (building / REPORT_NAME).write_text(json.dumps(report, indent=2, default=str) + "\n")
    for note in notes:
        warnings.warn(note, SplitWarning, stacklevel=2)
    return report
