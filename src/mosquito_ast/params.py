"""The parameter engine of every command: a dataclass whose fields carry their help text, filled from
defaults, a YAML file and CLI flags (flags win), converted to each field's type and checked.

`config.py` declares the commands' parameters with it; `cli.py` turns each field into a flag.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A parameter that cannot be used; the message names it and says what is allowed."""


# What a parameter is about: `--help` lists each command's flags under these headings, in this order.
DATA, MODEL, LOOP, OUTPUT, SYSTEM = "Data", "Model", "Training loop", "Output", "System"
GROUPS = (DATA, MODEL, LOOP, OUTPUT, SYSTEM)


def option(default: Any, help: str, choices: tuple[str, ...] | None = None, positional: bool = False,
           group: str | None = None, required: bool = False) -> Any:
    """A parameter with its help text, its `--help` heading (one of GROUPS) and whether a run needs it
    (a required one still defaults to None, as a YAML file may give it); `positional` makes it a
    command-line argument instead of a flag."""
    metadata = {"help": help, "choices": choices, "positional": positional, "group": group, "required": required}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


_SAME = object()


def field_default(spec: dataclasses.Field) -> Any:
    """A field's default value (a fresh one for lists), or dataclasses.MISSING."""
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def restate(shared: type, name: str, default: Any = _SAME, help: str | None = None) -> Any:
    """Field `name` of the `shared` parameters, declared once there, with this command's own default or help."""
    spec = next(s for s in dataclasses.fields(shared) if s.name == name)
    return option(field_default(spec) if default is _SAME else default, spec.metadata["help"] if help is None else help,
                  spec.metadata["choices"], spec.metadata["positional"], spec.metadata["group"],
                  spec.metadata["required"])


def flag(spec: dataclasses.Field) -> str:
    """How the command line names a parameter: --flag-name, or NAME for a positional argument."""
    return spec.name.upper() if spec.metadata.get("positional") else "--" + spec.name.replace("_", "-")


def base_type(annotation: Any) -> Any:
    """The type of a field, without its `| None`."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"list": list, "str": str, "int": int, "float": float, "bool": bool})
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert a YAML or CLI value to the field's type, with an error that names the parameter."""
    kind = base_type(annotation)
    if value is None:
        return None
    try:
        if typing.get_origin(kind) is list:
            item = typing.get_args(kind)[0]
            items = value.split(",") if isinstance(value, str) else value
            items = items if isinstance(items, (list, tuple)) else [items]
            return [item(str(v).strip()) if item is not str else str(v).strip() for v in items]
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if kind in (int, float) and isinstance(value, bool):  # YAML `epochs: true` is no number
            raise ValueError(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {value!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a missing file or invalid YAML is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None


@dataclass
class Params:
    """Base of every command's parameters."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = coerce(spec.name, getattr(self, spec.name), spec.type)
            choices = spec.metadata.get("choices")
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{spec.name}: {value!r} is not one of {', '.join(choices)}")
            setattr(self, spec.name, value)
        missing = [flag(spec) for spec in dataclasses.fields(self)
                   if spec.metadata.get("required") and getattr(self, spec.name) in (None, "", [])]
        if missing:
            raise ConfigError(f"missing required parameter(s): {', '.join(missing)}")
        self.resolve()
        self.validate()

    def resolve(self) -> None:
        """Fill in values that depend on others (presets) before validation."""

    def validate(self) -> None:
        """Cross-field checks of a subclass."""

    @classmethod
    def from_sources(cls, config_file: str | Path | None = None, **overrides: Any):
        values: dict[str, Any] = {}
        if config_file:
            loaded = read_yaml(config_file) or {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"{config_file}: a config file must be a mapping of parameter: value")
            values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {spec.name for spec in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
