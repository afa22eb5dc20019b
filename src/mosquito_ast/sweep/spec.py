"""Sweep files: `base` parameters, a `grid` of lists, named `datasets` and a `postfix` template,
expanded into validated runs before any of them starts (a typo fails the sweep, not run 17).

A dataset is either a `train` side with an optional `validation` side (the recipe keeps the last epoch and
needs none) and an optional `test` side that only `--evaluate` reads, or a cross-fit:
`{data: DIR, session_folds: K}` deals each species' recording sessions to K folds (`sides.session_folds`)
and becomes K datasets `<name>-fold<k>`, each training on the other folds' recordings and scored on its own. With
`select: last` every member uses every labelled session but its own fold, nothing is chosen on the
scored fold, and together the members are the ensemble to deploy: all labelled recordings, an honest
out-of-fold estimate for free."""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..checkpoints import run_folders
from ..config import ConfigError, TrainParams
from .cross_fit import check_cross_fit, cross_fit_datasets

TOP_LEVEL = ("base", "grid", "datasets", "postfix", "output", "notebook")
SET_BY_SWEEP = ("output", "postfix")
PATH_KEYS = ("train_dir", "validation_dir", "test_dir", "cache_dir", "ssl_checkpoint")
DATASET_ALIASES = {"train": "train_dir", "validation": "validation_dir"}
TEST_KEY = "test"  # a dataset's test side: scored by --evaluate, read by no run
SWEEP_DEFAULTS = {"progress": False}
MAP_KEY = "by"
DEFAULT_MAP_BY = "optimizer"


@dataclass(frozen=True)
class Run:
    """One training run of a sweep: its dataset, member name and complete parameters; `test_dir` is the
    dataset's test side, and `made_by_sweep` the input files the sweep writes itself (a cross-fit's fold
    manifests), which need not exist before it starts."""

    dataset: str
    postfix: str
    params: TrainParams
    varied: dict[str, Any]
    test_dir: str | None = None
    made_by_sweep: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.postfix

    @property
    def member_dir(self) -> Path:
        return run_folders(self.params.output, self.postfix)[0]

    @property
    def scored_side(self) -> tuple[str, str] | None:
        """(side, folder) that --evaluate scores the dataset's ensemble on: its test side, else its validation
        side, else None."""
        if self.test_dir:
            return "test", self.test_dir
        return ("validation", self.params.validation_dir) if self.params.validation_dir else None

    @property
    def log_path(self) -> Path:
        return Path(self.params.output) / "logs" / f"{self.postfix}.log"

    @property
    def notebook_path(self) -> Path:
        return Path(self.params.output) / "logs" / f"{self.postfix}.ipynb"


@dataclass
class SweepSpec:
    """A parsed sweep file; `folder` is where its relative paths start."""

    base: dict[str, Any]
    grid: dict[str, Any]
    datasets: dict[str, dict[str, Any]]
    postfix: str | None = None
    output: str | None = None
    notebook: str | None = None
    folder: Path = Path(".")
    source: str = "sweep"

    @classmethod
    def from_dict(cls, data: dict[str, Any], folder: str | Path = ".", source: str = "sweep") -> "SweepSpec":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a sweep file must be a mapping with {', '.join(TOP_LEVEL)}")
        unknown = sorted(set(data) - set(TOP_LEVEL))
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}; valid: {', '.join(TOP_LEVEL)}")
        sections = {}
        for name in ("base", "grid", "datasets"):
            section = data.get(name) or {}
            if not isinstance(section, dict):
                raise ConfigError(f"{source}: {name}: expected a mapping of name: value")
            sections[name] = section
        datasets = {name: _snake(entry) if isinstance(entry, dict) else entry
                    for name, entry in sections["datasets"].items()}
        spec = cls(base=_snake(sections["base"]), grid=_snake(sections["grid"]), datasets=datasets,
                   postfix=data.get("postfix"), output=data.get("output"), notebook=data.get("notebook"),
                   folder=Path(folder).resolve(), source=source)
        spec.check()
        return spec

    def check(self) -> None:
        """Reject unknown or sweep-controlled keys, naming the section they are in."""
        known = {spec.name for spec in dataclasses.fields(TrainParams)}
        if not self.datasets:
            raise ConfigError(f"{self.source}: `datasets` is empty; name at least one split with its train (and validation or test) dirs")
        sections = {"base": self.base, "grid": self.grid}
        for name, entry in self.datasets.items():
            if not isinstance(entry, dict):
                raise ConfigError(f"{self.source}: datasets: {name}: expected a mapping with train (and validation or test)")
            if not str(name) or "/" in str(name) or str(name) in (".", ".."):
                raise ConfigError(f"{self.source}: datasets: {name!r} is not a usable folder name")
            if "data" in entry or "session_folds" in entry:
                check_cross_fit(name, entry, self.source)
                continue
            sections[f"datasets: {name}"] = {DATASET_ALIASES.get(k, k): v for k, v in entry.items() if k != TEST_KEY}
        for section, values in sections.items():
            keys = set(values)
            unknown = sorted(keys - known)
            if unknown:
                raise ConfigError(f"{self.source}: {section}: unknown parameter(s) {', '.join(unknown)}; "
                                  f"valid: {', '.join(sorted(known))}")
            reserved = sorted(keys & set(SET_BY_SWEEP))
            if reserved:
                raise ConfigError(f"{self.source}: {section}: {', '.join(reserved)} is set by the sweep "
                                  "(use --output and the `postfix` template)")
        both = sorted(set(self.base) & set(self.grid))
        if both:
            raise ConfigError(f"{self.source}: {', '.join(both)} in both base and grid; keep each in one place")
        empty = [key for key, value in self.grid.items() if value == [] or value == {}]
        if empty:
            raise ConfigError(f"{self.source}: grid: {', '.join(empty)} has no values")
        order = list(self.grid)
        for key, value in {**self.base, **self.grid}.items():
            if isinstance(value, dict):
                by = _map_by(key, value, self.source)
                if key in self.grid and by in self.grid and order.index(by) > order.index(key):
                    raise ConfigError(f"{self.source}: grid: {key} is chosen by {by}; list {by} before {key}")


def _snake(values: dict) -> dict[str, Any]:
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def load_sweep(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: sweep file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return SweepSpec.from_dict(data, path.resolve().parent, str(path))


def _map_by(key: str, mapping: dict, source: str) -> str:
    by = mapping.get(MAP_KEY, DEFAULT_MAP_BY)
    if by not in {spec.name for spec in dataclasses.fields(TrainParams)} or by == key:
        raise ConfigError(f"{source}: {key}: `by: {by}` must name another parameter")
    return by


def _choices(key: str, value: Any, values: dict[str, Any], source: str, expand: bool) -> list[Any]:
    """The options of one key; a mapping picks by the value of another parameter (`by`, default optimizer)."""
    if isinstance(value, dict):
        by = _map_by(key, value, source)
        chosen = values.get(by, _default(by))
        options = {str(k): v for k, v in value.items() if k != MAP_KEY}
        if str(chosen) not in options:
            allowed = _field(by).metadata.get("choices")
            if allowed and chosen not in allowed:
                raise ConfigError(f"{source}: {by}: {chosen!r} is not one of {', '.join(allowed)}")
            raise ConfigError(f"{source}: {key}: no value for {by} {chosen!r} (given for {', '.join(options)})")
        value = options[str(chosen)]
    if expand:
        return list(value) if isinstance(value, (list, tuple)) else [value]
    return [value]


def _field(name: str) -> dataclasses.Field:
    return next(s for s in dataclasses.fields(TrainParams) if s.name == name)


def _default(name: str) -> Any:
    spec = _field(name)
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def _resolve_paths(values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Relative paths in a sweep file start at its folder (an SSL checkpoint only if it exists there or
    is written ./ or ../, since it may also be a Hugging Face id)."""
    resolved = dict(values)
    for key in PATH_KEYS:
        value = resolved.get(key)
        if not value or Path(str(value)).expanduser().is_absolute():
            continue
        candidate = folder / str(value)
        if key != "ssl_checkpoint" or candidate.exists() or str(value).startswith("."):
            resolved[key] = str(candidate)
    return resolved


def naming_value(value: Any) -> Any:
    """How a parameter reads in a folder name: lists as 8-16, everything else as itself."""
    return "-".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def default_postfix(spec: SweepSpec) -> str:
    return "_".join(f"{key}{{{key}}}" for key in spec.grid) or "member"


def _postfix(template: str, dataset: str, params: TrainParams, source: str) -> str:
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    names = {"dataset": dataset, **{k: naming_value(v) for k, v in params.to_dict().items()}}
    unknown = sorted(fields - set(names))
    if unknown:
        raise ConfigError(f"{source}: postfix {template!r}: unknown field(s) {', '.join(unknown)}; "
                          "use grid keys, other train parameters or `dataset`")
    try:
        postfix = template.format(**names)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{source}: postfix {template!r}: {error}") from None
    if not postfix or "/" in postfix or "\\" in postfix or postfix in (".", ".."):
        raise ConfigError(f"{source}: postfix {template!r} gives {postfix!r}, not a usable folder name")
    return postfix


def expand(spec: SweepSpec, output: str | Path, write: bool = True) -> list[Run]:
    """Every run of the sweep, dataset by dataset in file order, grid keys varying like nested loops
    (the first key outermost); all parameters validated and member names checked to be unique. A
    cross-fit's fold manifests are written only with `write` (a dry run writes nothing)."""
    output = Path(output).resolve()
    template = spec.postfix or default_postfix(spec)
    runs: list[Run] = []
    datasets: dict[str, dict[str, Any]] = {}
    made: dict[str, tuple[str, ...]] = {}
    for name, entry in spec.datasets.items():
        if "session_folds" in entry:
            group_by = spec.base.get("group_by", _default("group_by"))
            folds = cross_fit_datasets(name, entry, spec.folder, output, group_by, seed=0, write=write)
            datasets.update(folds)
            made.update({fold: tuple(paths.values()) for fold, paths in folds.items()})
        else:
            datasets[name] = entry
    for dataset, entry in datasets.items():
        test = _resolve_paths({"test_dir": entry.get(TEST_KEY)}, spec.folder)["test_dir"]
        fixed = {**SWEEP_DEFAULTS, **spec.base,
                 **{DATASET_ALIASES.get(k, k): v for k, v in entry.items() if k != TEST_KEY}}
        combos = [_resolve_paths(fixed, spec.folder)]
        for key, value in spec.grid.items():
            combos = [{**values, key: option} for values in combos
                      for option in _choices(key, value, values, spec.source, True)]
        for values in combos:
            for key, value in values.items():
                if isinstance(value, dict):
                    values[key] = _choices(key, value, values, spec.source, False)[0]
            run = _make_run(spec, dataset, values, output / dataset, template)
            runs.append(dataclasses.replace(run, test_dir=test, made_by_sweep=made.get(dataset, ())))
    _check_unique(runs, spec.source)
    return runs


def _make_run(spec: SweepSpec, dataset: str, values: dict[str, Any], output: Path, template: str) -> Run:
    label = f"{spec.source}: dataset {dataset}, " + ", ".join(f"{k}={values[k]}" for k in spec.grid)
    try:
        params = TrainParams.from_sources(None, **values, output=str(output))
    except ConfigError as error:
        raise ConfigError(f"{label}: {error}") from None
    postfix = _postfix(template, dataset, params, spec.source)
    params = dataclasses.replace(params, postfix=postfix)
    varied = {k: getattr(params, k) for k in spec.grid}
    varied.update({k: getattr(params, k) for k, v in spec.base.items() if isinstance(v, dict)})
    return Run(dataset, postfix, params, varied)


def _check_unique(runs: list[Run], source: str) -> None:
    seen: dict[tuple[str, str], Run] = {}
    for run in runs:
        if run.key in seen:
            raise ConfigError(f"{source}: two runs are both named {run.dataset}/{run.postfix} "
                              f"({seen[run.key].varied} and {run.varied}); add the keys that differ to `postfix`")
        seen[run.key] = run
