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
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from mosquito_ast_lite.io import FolderKind, atomic_directory, check_replaceable

from .data import DatasetError, Sample, discover
from .segment import SegmentSettings, relative_location, segment_recordings
from .sides import choose_sides

MODES = ("independent", "random", "kfold")
LINKS = ("hard", "copy", "symlink")
REPORT_NAME = "split_report.json"
MANIFEST_NAME = "manifest.csv"
SPLIT_FOLDER = FolderKind("a split", (REPORT_NAME, MANIFEST_NAME), ("train", "validation", "test", "fold*", MANIFEST_NAME, REPORT_NAME))


class SplitWarning(UserWarning):
    """A split that could not meet a request (a class on one side only, a fraction far off)."""


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

    Sides are chosen by `sides.choose_sides`: a test side of whole recordings first (`test_fraction`),
    then the mode: `independent` assigns whole recording groups per class with a seeded greedy search for
    the validation share closest to `validation_fraction` (see `sides.choose_held_out_groups`), keeping
    every class with two or more groups on both sides (a `validation_fraction` of 0 writes no validation side); `random` is scikit-learn's stratified
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
    if mode != "kfold" and not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction: must be at least 0 and below 1, got {validation_fraction}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction: must be at least 0 and below 1, got {test_fraction}")
    data, output = Path(data), Path(output)
    final = output / mode
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise FileExistsError(f"{final}: split folder exists and is not empty (use --overwrite to replace it)")
    check_replaceable(final, SPLIT_FOLDER)

    samples, source, locations = split_input(data, output, segment, group_by, overwrite, progress)
    report: dict = {"mode": mode, "data": str(data), "group_by": group_by, "seed": seed,
                    "test_fraction_target": test_fraction,
                    "files": len(samples), "recording_groups": len({s.group for s in samples}),
                    "segmentation": None if segment is None else {**asdict(segment), "clips": str(source)}}
    output.mkdir(parents=True, exist_ok=True)
    plan = choose_sides(samples, mode, validation_fraction, test_fraction, seed, folds)
    report.update(plan.report)
    linker = _Linker(link)
    rows: list[list[str]] = []
    with atomic_directory(final, SPLIT_FOLDER) as building:
        for tree in plan.trees:
            _write_tree(building, PurePosixPath(tree.prefix), [samples[i] for i in tree.indices],
                        [locations[i] for i in tree.indices], tree.sides, linker, rows, tree.extra, progress)
        report["link"] = linker.used
        report["warnings"] = plan.notes
        with open(building / MANIFEST_NAME, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["path", "label", "group", "side"] + (["fold"] if mode == "kfold" else []))
            writer.writerows(rows)
        (building / REPORT_NAME).write_text(json.dumps(report, indent=2, default=str) + "\n")
    for note in plan.notes:
        warnings.warn(note, SplitWarning, stacklevel=2)
    return report


def split_input(data: Path, output: Path, segment: SegmentSettings | None, group_by: str, overwrite: bool,
                progress: bool) -> tuple[list[Sample], Path, list[PurePosixPath]]:
    """(samples, the folder they are under, each one's path below its class folder): the files of `data`,
    or with `segment` the clips cut from its recordings under `<output>/clips/`."""
    if segment is None:
        samples = discover(data, group_by)
        return samples, data, _locations(samples, data)
    clips_root = output / "clips"
    samples = segment_recordings(data, clips_root, segment, group_by, overwrite, progress)
    return samples, clips_root, [PurePosixPath(Path(s.path).relative_to(clips_root / s.label).as_posix())
                                 for s in samples]
