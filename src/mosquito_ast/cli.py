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

from .config import ConfigError, DemoParams, EvaluateParams, Params, PredictParams, PretrainParams, TrainParams, _base_type

app = typer.Typer(help="Classify mosquito species from flight-tone clips with AST ensembles.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _root() -> None:
    """Pretrain, fine-tune, sweep and evaluate AST ensembles for mosquito flight tones."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors about the user's input: printed as one line, exit code 2, no traceback."""
    from .audio import AudioError
    from .data import DatasetError
    from .models.encoder import CheckpointError
    from .training.loop import DivergedError

    return ConfigError, DatasetError, CheckpointError, AudioError, DivergedError, FileExistsError, FileNotFoundError


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
        try:
            run(params)
        except Exception as error:
            if not isinstance(error, user_errors()):
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None

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
        if default not in (None, dataclasses.MISSING, []):
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            help_text += f" (default: {shown})"
        flag = _flag(spec.name)
        if kind is bool:
            negative = spec.name[3:] if spec.name.startswith("no_") else f"no_{spec.name}"
            flag = f"{flag}/{_flag(negative)}"
        if spec.metadata.get("positional"):
            annotation = Optional[list[str]] if annotation is Optional[str] and kind is not str else annotation
            default = typer.Argument(None, help=help_text, show_default=False)
        else:
            default = typer.Option(None, flag, help=help_text, show_default=False)
        parameters.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                            default=default))
    command.__signature__ = inspect.Signature(parameters)
    command.__doc__ = params_type.__doc__
    app.command(name)(command)


def _train(params: TrainParams) -> None:
    from .training.train import train

    train(params)


params_command(TrainParams, _train, "train")


def _evaluate(params) -> None:
    from .ensemble.evaluate import evaluate

    evaluate(params)

params_command(EvaluateParams, _evaluate, "evaluate")


def _pretrain(params: PretrainParams) -> None:
    from .training.pretrain import pretrain

    pretrain(params)


params_command(PretrainParams, _pretrain, "pretrain")


def _predict(params: PredictParams) -> None:
    from .predict import predict

    predict(params)


params_command(PredictParams, _predict, "predict")


def _demo(params: DemoParams) -> None:
    from .demo import run_demo

    run_demo(params)


params_command(DemoParams, _demo, "demo")


@app.command("split")
def split_command(
    data: Path = typer.Argument(..., help="Labeled audio: <class>/**/<file> folder or manifest CSV (path,label[,group])."),
    output: Path = typer.Option(..., "--output", help="Output folder; the split lands in <output>/<mode>/."),
    mode: str = typer.Option("independent", "--mode", help="independent (no recording on both sides), random (groups ignored) or kfold."),
    group_by: str = typer.Option("auto", "--group-by", help="Recording (group) of each file: auto, parent, regex:PATTERN or column:NAME."),
    validation_fraction: float = typer.Option(0.2, "--validation-fraction", help="Target share of clips in validation (independent, random)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same split."),
    folds: int = typer.Option(5, "--folds", help="Number of folds for --mode kfold."),
    copy: bool = typer.Option(False, "--copy", help="Copy files instead of hard-linking them."),
    symlink: bool = typer.Option(False, "--symlink", help="Symlink files instead of hard-linking them."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing, non-empty split folder."),
    clip_seconds: Optional[float] = typer.Option(None, "--clip-seconds", help="Cut recordings into clips of this length first (16 kHz wav under <output>/clips/)."),
    hop_seconds: Optional[float] = typer.Option(None, "--hop-seconds", help="Step between clip starts (default: the clip length)."),
    tail: str = typer.Option("drop", "--tail", help="A last clip shorter than --clip-seconds: drop or pad."),
    min_rms_db: Optional[float] = typer.Option(None, "--min-rms-db", help="Drop clips quieter than this RMS level in dBFS (e.g. -50)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Build train/validation folder trees (independent, random or k-fold) with a manifest and a report."""
    import warnings

    from .data import DatasetError
    from .segment import SegmentSettings
    from .splits import SplitWarning, make_split

    if copy and symlink:
        raise typer.BadParameter("choose one of --copy and --symlink")
    try:
        segment = None if clip_seconds is None else SegmentSettings(clip_seconds, hop_seconds, tail, min_rms_db)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SplitWarning)
            report = make_split(data, output, mode, group_by, validation_fraction, seed, folds,
                                "copy" if copy else "symlink" if symlink else "hard", overwrite, segment, progress)
    except (DatasetError, FileExistsError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    for note in report["warnings"]:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"{mode} split of {report['files']} files in {report['recording_groups']} recording groups -> {output / mode}")


@app.command("check-split")
def check_split_command(
    train_dir: Path = typer.Argument(..., help="Training clips: folder-per-class tree or manifest CSV."),
    validation_dir: Path = typer.Argument(..., help="Validation clips, same layouts."),
    group_by: str = typer.Option("auto", "--group-by", help="Recording (group) of each file: auto, parent, regex:PATTERN or column:NAME."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars while hashing audio."),
) -> None:
    """List recordings and identical audio found on both sides; exit 1 on leakage (2 on unusable input)."""
    from .data import DatasetError
    from .splits import check_split

    try:
        report = check_split(train_dir, validation_dir, group_by, progress)
    except DatasetError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(report.summary())
    if report.leaks:
        raise typer.Exit(1)


@app.command("sweep")
def sweep_command(
    sweep_file: Path = typer.Argument(..., help="Sweep YAML: base, grid, datasets, postfix (see examples/)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Sweep folder (default: the file's `output`, else runs/<file name>)."),
    backend: str = typer.Option("local", "--backend", help="local (train in process or worker processes), papermill (the training notebook per run) or ray."),
    parallel: int = typer.Option(1, "--parallel", help="Runs at once: worker processes with cores // N threads and one GPU each (local, papermill); Ray tasks at once on a local Ray."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the expanded runs and what would happen to each; train nothing."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run again the runs whose last attempt failed."),
    evaluate: bool = typer.Option(False, "--evaluate", help="Afterwards evaluate each dataset's ensemble on its validation set; compare them side by side."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join this Ray cluster (e.g. auto or ray://host:10001) instead of starting a local Ray."),
    notebook: Optional[Path] = typer.Option(None, "--notebook", help="Training notebook for --backend papermill (default: notebooks/train.ipynb)."),
) -> None:
    """Train many members from one sweep file; finished runs are skipped when the command is repeated."""
    from .sweep import load_sweep, report, run_sweep

    try:
        outcome = run_sweep(load_sweep(sweep_file), output, backend, parallel, dry_run, retry_failed, evaluate,
                            ray_address, notebook)
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished members are kept; run the same command again to continue", err=True)
        raise typer.Exit(130) from None
    report(outcome, dry_run)
    if outcome.failed:
        raise typer.Exit(1)
