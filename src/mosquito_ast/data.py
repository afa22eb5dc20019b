"""Labeled clip discovery (folder-per-class or manifest CSV), recording groups and label maps."""

from __future__ import annotations

import csv
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from mosquito_ast_lite.audio import AUDIO_EXTENSIONS, is_audio_file
from mosquito_ast_lite.files import files_under

GROUP_RULE_HELP = (
    "How a clip's recording (group) is found: 'auto' (manifest column 'group', else the folder "
    "holding the file when it is below the class folder, else the file name's first two "
    "'_'-separated tokens), 'parent' (the folder holding the file), 'regex:PATTERN' (first "
    "capture group, or the whole match, of PATTERN on the file name) or 'column:NAME' (a manifest column)."
)


class DatasetError(ValueError):
    """A data set that cannot be used as given; the message says which path and why."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: str
    group: str


def group_of(path: Path, class_dir: Path | None, rule: str, row: dict | None = None) -> str:
    """The recording a clip belongs to, under one of the rules in GROUP_RULE_HELP."""
    if rule.startswith("column:"):
        column = rule.split(":", 1)[1]
        if row is None or column not in row:
            raise DatasetError(f"--group-by {rule}: no column '{column}' for {path}")
        return str(row[column])
    if rule.startswith("regex:"):
        match = re.search(rule.split(":", 1)[1], path.name)
        if match is None:
            raise DatasetError(f"--group-by {rule}: pattern does not match file name {path.name!r}")
        return match.group(1) if match.groups() else match.group(0)
    if rule == "parent":
        return str(path.parent.relative_to(class_dir.parent)) if class_dir else path.parent.name
    if rule == "auto":
        if row is not None and row.get("group"):
            return str(row["group"])
        if class_dir is not None and path.parent != class_dir:
            return str(path.parent.relative_to(class_dir.parent))
        return "_".join(path.stem.split("_")[:2])
    raise DatasetError(f"unknown --group-by rule {rule!r}. {GROUP_RULE_HELP}")


UNLABELLED = ""  # the label of a manifest row left empty, where a command takes unlabelled clips (distill)


def discover(source: str | Path, group_by: str = "auto", unlabelled: bool = False) -> list[Sample]:
    """Labeled clips under a folder-per-class tree (class = first folder level) or in a manifest CSV;
    with `unlabelled`, manifest rows with an empty label are clips labelled UNLABELLED, not an error."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or directory")
    if source.is_file():
        return _from_manifest(source, group_by, unlabelled)
    samples = []
    empty = []
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = [Sample(str(path), class_dir.name, group_of(path, class_dir, group_by))
                 for path in sorted(p for p in files_under(class_dir) if is_audio_file(p))]
        samples += found
        empty += [] if found else [class_dir.name]
    if not samples:
        raise DatasetError(f"{source}: no audio files found in class sub-folders (<class>/**/<file>)")
    check_one_class_per_file(samples)
    if empty:
        print(f"warning: {source}: class folder(s) {', '.join(empty)} hold no audio files ({', '.join(AUDIO_EXTENSIONS)}) "
              "and are not classes of this data set", file=sys.stderr)
    return samples


def check_one_class_per_file(samples: Sequence[Sample]) -> None:
    """Refuse a file reached under two classes (a link from one class folder into another's): its clips
    would train and score under both labels, one of them wrong."""
    classes: dict[str, Sample] = {}
    for sample in samples:
        first = classes.setdefault(os.path.realpath(sample.path), sample)
        if first.label != sample.label:
            raise DatasetError(f"{first.path} (class {first.label}) and {sample.path} (class {sample.label}) are one "
                               f"file, reached through a link; a clip belongs to one class")


def _from_manifest(manifest: Path, group_by: str, unlabelled: bool = False) -> list[Sample]:
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise DatasetError(f"{manifest}: a manifest needs a header with at least 'path' and 'label' columns")
    samples = []
    for line, row in enumerate(rows, start=2):
        path = Path(row["path"])
        path = path if path.is_absolute() else manifest.parent / path
        if not row["label"] and not unlabelled:
            raise DatasetError(f"{manifest}:{line}: empty label for {row['path']}")
        samples.append(Sample(str(path), row["label"], group_of(path, None, group_by, row)))
    return samples


def label_names(samples: Iterable[Sample]) -> list[str]:
    """The label map: class names sorted, so ids never depend on directory listing order."""
    return sorted({s.label for s in samples})


def check_validation_labels(train_labels: Sequence[str], validation: Iterable[Sample]) -> None:
    unknown = sorted({s.label for s in validation} - set(train_labels))
    if unknown:
        raise DatasetError(f"validation classes missing from training: {', '.join(unknown)}")


def discover_unlabelled(source: str | Path) -> list[str]:
    """Audio files under a folder (any depth, any layout) or listed in a manifest CSV's 'path' column."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or directory")
    if source.is_file():
        with open(source, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or "path" not in rows[0]:
            raise DatasetError(f"{source}: a manifest needs a header with a 'path' column")
        paths = [Path(row["path"]) for row in rows]
        return [str(p if p.is_absolute() else source.parent / p) for p in paths]
    paths = sorted(str(p) for p in files_under(source) if is_audio_file(p))
    if not paths:
        raise DatasetError(f"{source}: no audio files found (searched all sub-folders)")
    return paths
