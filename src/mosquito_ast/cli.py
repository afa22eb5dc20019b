"""The `mosquito-ast` command line: one thin function per command.

Options are generated from the parameter dataclasses in `config.py`, so every parameter is a flag and
a YAML key with the same name and help text, and flags override the YAML file given with --config.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from .config import ConfigError, Params, TrainParams, _base_type

app = typer.Typer(help="Classify mosquito species from flight-tone clips with AST ensembles.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _root() -> None:
    """Pretrain, fine-tune, sweep and evaluate AST ensembles for mosquito flight tones."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def params_command(params_type: type[Params], run: Callable[[Any], Any], name: str) -> None:
    """Register a command whose flags are the fields of `params_type`, plus --config."""

    def command(**kwargs: Any) -> None:
        config = kwargs.pop("config")
        try:
            params = params_type.from_sources(config, **kwargs)
        except ConfigError as error:
            raise typer.BadParameter(str(error)) from None
        run(params)

    parameters = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                    default=typer.Option(None, "--config", help="YAML file of parameters; flags override it."))]
    for spec in dataclasses.fields(params_type):
        kind = _base_type(spec.type)
        annotation = Optional[str] if getattr(kind, "__origin__", None) is list else Optional[kind]
        help_text = spec.metadata.get("help", "")
        choices = spec.metadata.get("choices")
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        if choices:
            help_text += f" [{'|'.join(choices)}]"
        if default not in (None, dataclasses.MISSING):
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            help_text += f" (default: {shown})"
        flag = _flag(spec.name)
        if kind is bool:
            negative = spec.name[3:] if spec.name.startswith("no_") else f"no_{spec.name}"
            flag = f"{flag}/{_flag(negative)}"
        parameters.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                            default=typer.Option(None, flag, help=help_text, show_default=False)))
    command.__signature__ = inspect.Signature(parameters)
    command.__doc__ = params_type.__doc__
    app.command(name)(command)


def _train(params: TrainParams) -> None:
    from .training.finetune import train

    train(params)


params_command(TrainParams, _train, "train")


def main() -> None:
    app()
