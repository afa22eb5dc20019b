"""The `mosquito-ast` command line: every command is a parameter dataclass from `config.py` and a thin
function that runs it, registered alike by `command`.

A command's flags are its dataclass's fields, so every parameter is a flag and a YAML key with the same
name and help text, and flags override the YAML file given with --config. `reported_errors` is the one
place that turns an error about the user's input into a one-line message and exit code 2.
"""

from __future__ import annotations

import dataclasses
import errno
import inspect
import sys
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from typer.core import TyperCommand

from .cli_help import CONFIG_HELP, flag_names, print_help, usage_arguments
from .config import (CheckSplitParams, DemoParams, DistillParams, EvaluateParams, ExportParams, PredictParams, PretrainParams, SplitParams,
                     SweepParams, TrainParams)
from .params import Params, base_type, flag

app = typer.Typer(help="Classify mosquito species from flight-tone clips with AST ensembles.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

# Every registered command: name -> its parameter dataclass, in workflow order (as `--help` lists them).
COMMANDS: dict[str, type[Params]] = {}

# Errors about the user's input, as (module, class): printed as one line, exit code 2, no traceback.
USER_ERRORS = (("mosquito_ast.params", "ConfigError"), ("mosquito_ast.data", "DatasetError"),
               ("mosquito_ast_lite.audio", "AudioError"), ("mosquito_ast.inference.votes", "WeightsError"),
               ("mosquito_ast.checkpoints", "CheckpointError"), ("mosquito_ast_lite.io", "OutputFolderError"), ("mosquito_ast.training.callbacks", "DivergedError"),
               ("yaml", "YAMLError"), ("builtins", "FileExistsError"), ("builtins", "FileNotFoundError"))
# A full disk (or quota) mid-write: one line and exit 1, since atomic writes leave the old output whole.
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@app.callback()
def _root() -> None:
    """Pretrain, fine-tune, sweep and evaluate AST ensembles for mosquito flight tones."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The classes of USER_ERRORS whose module is loaded: an error of a module never imported cannot have
    been raised, and importing the training loop only to print an error of `split` would take seconds."""
    return tuple(getattr(sys.modules[module], name) for module, name in USER_ERRORS if module in sys.modules)


@contextmanager
def reported_errors() -> Iterator[None]:
    """The one error mapping of every command: a user error becomes `error: ...` and exit code 2; Ctrl+C
    prints what to do next (a run says how to resume) and exits 130, as shells expect; a full disk is one
    line and exit 1."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        typer.echo(str(interrupt) or "interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as error:
        if isinstance(error, OSError) and error.errno in FULL_DISK:
            typer.echo(f"error: {error.filename or 'writing the output'}: {error.strerror or 'no space left'}; "
                       f"nothing half-written was kept: free space and run the command again (train, distill and "
                       f"pretrain with --resume keep their epochs)", err=True)
            raise typer.Exit(1) from None
        if not isinstance(error, user_errors()):
            raise
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def cli_parameter(spec: dataclasses.Field) -> inspect.Parameter:
    """The Typer argument or option of one dataclass field: its flags (--name, --no-name for booleans) and
    no default of its own (None = not given: a YAML file or the dataclass fills it in). Its help is the
    dataclass's, drawn by `cli_help`."""
    kind = base_type(spec.type)
    is_list = typing.get_origin(kind) is list
    if spec.metadata.get("positional"):
        annotation = Optional[list[str]] if is_list else Optional[kind]
        given = typer.Argument(None, metavar=flag(spec), show_default=False)
    else:
        annotation = Optional[str] if is_list else Optional[kind]  # a list flag is comma-separated
        given = typer.Option(None, "/".join(flag_names(spec)), show_default=False)
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=given)


class ParamsCommand(TyperCommand):
    """A registered command, whose usage line and `--help` page come from its parameter dataclass."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        return [self.options_metavar, *usage_arguments(COMMANDS[self.name])]

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        print_help(self.get_usage(ctx), COMMANDS[self.name])


def command(name: str, params_type: type[Params]) -> Callable[[Callable[[Any], int | None]], Callable]:
    """Register `run(params)` as command `name`, its flags the fields of `params_type` plus --config.
    `run` returns the exit code (None = 0); user errors from the parameters or the run are reported."""

    def register(run: Callable[[Any], int | None]) -> Callable[[Any], int | None]:
        def cli_command(**kwargs: Any) -> None:
            config = kwargs.pop("config")
            with reported_errors():
                code = run(params_type.from_sources(config, **kwargs))
            if code:
                raise typer.Exit(code)

        config_option = typer.Option(None, "--config", help=CONFIG_HELP)
        parameters = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                        default=config_option)]
        parameters += [cli_parameter(spec) for spec in dataclasses.fields(params_type)]
        cli_command.__signature__ = inspect.Signature(parameters)
        cli_command.__doc__ = params_type.__doc__
        app.command(name, cls=ParamsCommand)(cli_command)
        COMMANDS[name] = params_type
        return run

    return register


@command("split", SplitParams)
def _split(params: SplitParams) -> None:
    import warnings

    from .segment import SegmentSettings
    from .splits import SplitWarning, make_split

    segment = (None if params.clip_seconds is None else
               SegmentSettings(params.clip_seconds, params.hop_seconds, params.tail, params.min_rms_db))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        report = make_split(params.data, params.output, params.mode, group_by=params.group_by,
                            validation_fraction=params.validation_fraction, seed=params.seed, folds=params.folds,
                            link=params.link, overwrite=params.overwrite, segment=segment, progress=params.progress,
                            test_fraction=params.test_fraction)
    for note in report["warnings"]:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"{params.mode} split of {report['files']} files in {report['recording_groups']} recording groups"
               f" -> {Path(params.output) / params.mode}")
    for side, clips in sides_summary(report).items():
        typer.echo(f"  {side}: {clips}")


def sides_summary(report: dict) -> dict[str, str]:
    """Clips and recordings of each side of a split report (kfold: of its test side only)."""
    sides = {"test": report["test"]} if "test" in report else {}
    if "clips" in report:
        sides = {side: {"clips": report["clips"][side], "groups": report["groups"][side]} for side in report["clips"]}
    return {side: f"{counts['clips']} clips, {counts['groups']} recordings" for side, counts in sides.items()}


@command("check-split", CheckSplitParams)
def _check_split(params: CheckSplitParams) -> int:
    from .leakage import check_split

    report = check_split(params.train_dir, params.held_out_dir, params.group_by, params.progress)
    typer.echo(report.summary())
    return 1 if report.leaks else 0


@command("pretrain", PretrainParams)
def _pretrain(params: PretrainParams) -> None:
    from .commands.pretrain import pretrain

    pretrain(params)


@command("train", TrainParams)
def _train(params: TrainParams) -> None:
    from .commands.train import train

    train(params)


@command("sweep", SweepParams)
def _sweep(params: SweepParams) -> int:
    from .sweep import load_sweep, report, run_sweep

    try:
        outcome = run_sweep(load_sweep(params.sweep_file), params.output, params.backend, params.parallel,
                            params.dry_run, params.retry_failed, params.evaluate, params.ray_address, params.notebook)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished members are kept; run the same command again to continue", err=True)
        return 130
    report(outcome, params.dry_run)
    return 1 if outcome.failed else 0


@command("evaluate", EvaluateParams)
def _evaluate(params: EvaluateParams) -> None:
    from .commands.evaluate import evaluate
    from .evaluation.report import write_outputs
    from mosquito_ast_lite.io import check_writable

    check_writable(params.output)
    write_outputs(evaluate(params))


@command("predict", PredictParams)
def _predict(params: PredictParams) -> None:
    from .commands.predict import predict

    predict(params)


@command("distill", DistillParams)
def _distill(params: DistillParams) -> None:
    from .commands.distill import distill

    distill(params)


@command("export", ExportParams)
def _export(params: ExportParams) -> None:
    from .commands.export import export

    export(params)


@command("demo", DemoParams)
def _demo(params: DemoParams) -> None:
    from .demo import run_demo

    run_demo(params)
