"""Every command is a parameter dataclass registered alike, and one error mapping reports user errors."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from mosquito_ast.cli import COMMANDS, USER_ERRORS, app
from mosquito_ast.config import (SPLIT_MODES, TAILS, CheckSplitParams, ConfigError, LoopParams, PretrainParams,
                                 SplitParams, SweepParams, TrainParams)
from mosquito_ast.params import GROUPS

runner = CliRunner()
WIDE = {"COLUMNS": "2000"}  # no wrapped help lines


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def test_every_command_gets_its_flags_and_help_from_its_dataclass():
    commands = get_command(app).commands
    assert set(commands) == set(COMMANDS) == {"train", "pretrain", "evaluate", "predict", "demo", "split",
                                              "check-split", "sweep", "distill", "export"}
    for name, params_type in COMMANDS.items():
        fields = dataclasses.fields(params_type)
        given = {parameter.name: parameter for parameter in commands[name].params}
        assert set(given) == {spec.name for spec in fields} | {"config"}, name
        result = runner.invoke(app, [name, "--help"], env=WIDE)
        assert result.exit_code == 0, result.output
        assert "--config" in result.output and params_type.__doc__.splitlines()[0] in result.output, name
        for spec in fields:
            flag = "--" + spec.name.replace("_", "-")
            if spec.metadata["positional"]:
                assert given[spec.name].param_type_name == "argument" and spec.name.upper() in result.output, (name, spec.name)
            else:
                assert flag in given[spec.name].opts and flag in result.output, (name, flag)
            assert spec.metadata["help"] in result.output, (name, spec.name)
            for choice in spec.metadata["choices"] or ():
                assert choice in result.output, (name, spec.name, choice)


def test_train_and_pretrain_share_the_loop_with_their_own_defaults():
    assert issubclass(TrainParams, LoopParams) and issubclass(PretrainParams, LoopParams)
    train = TrainParams(train_dir="t", validation_dir="v", ssl_checkpoint="c")
    pretrain = PretrainParams(data="d")
    assert (train.seed, train.epochs, train.batch_sizes, train.learning_rate) == (42, 5, [8], 5e-5)
    assert (train.scheduler, train.grad_accumulation, train.patience, train.norm_stats) == ("cosine", 1, 0, "audioset")
    assert (pretrain.seed, pretrain.epochs, pretrain.batch_sizes, pretrain.learning_rate) == (42, 150, [8], 1e-4)
    assert (pretrain.scheduler, pretrain.grad_accumulation, pretrain.patience) == ("linear", 2, 10)


def test_bad_weights_in_evaluate_is_a_one_line_error(tiny_member, synth_split, tmp_path):
    result = runner.invoke(app, ["evaluate", "--models", str(tiny_member), "--data", str(synth_split[1]),
                                 "--output", str(tmp_path / "eval"), "--weights", "1,2", "--no-progress"])
    assert one_line_error(result).startswith("error: --weights: 2 values for 1 members")
    assert not (tmp_path / "eval").exists()


def test_parameter_and_yaml_errors_are_one_line(tmp_path):
    both = runner.invoke(app, ["split", str(tmp_path), "--output", str(tmp_path / "o"), "--copy", "--symlink"])
    assert one_line_error(both) == "error: choose one of --copy and --symlink"
    assert "--output" in one_line_error(runner.invoke(app, ["split", str(tmp_path)]))
    assert "kfold" in one_line_error(runner.invoke(app, ["split", str(tmp_path), "--output", "o", "--mode", "k"]))
    assert "HELD_OUT_DIR" in one_line_error(runner.invoke(app, ["check-split", str(tmp_path)]))
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1\n")
    error = one_line_error(runner.invoke(app, ["train", "--config", str(broken)]))
    assert error.startswith(f"error: {broken}: not valid YAML") and "line 2" in error
    config = tmp_path / "sweep.yaml"
    config.write_text("dry_run: true\nbackend: local\n")
    assert "SWEEP_FILE" in one_line_error(runner.invoke(app, ["sweep", "--config", str(config)]))


def test_split_sweep_and_check_split_params_from_yaml(tmp_path):
    config = tmp_path / "split.yaml"
    config.write_text("data: clips\noutput: out\nmode: kfold\nfolds: 3\ncopy: true\nclip-seconds: 0.5\n")
    params = SplitParams.from_sources(config, seed=7)
    assert (params.mode, params.folds, params.link, params.clip_seconds, params.seed) == ("kfold", 3, "copy", 0.5, 7)
    assert CheckSplitParams.from_sources(None, train_dir="a", held_out_dir="b").progress is True
    assert SweepParams.from_sources(None, sweep_file="s.yaml", parallel="2").parallel == 2


def test_user_errors_name_real_exception_classes():
    for module, name in USER_ERRORS:
        assert issubclass(getattr(importlib.import_module(module), name), Exception), (module, name)


def test_choices_match_the_modules_that_use_them():
    from mosquito_ast.segment import TAILS as SEGMENT_TAILS
    from mosquito_ast.splits import MODES

    assert SPLIT_MODES == MODES and TAILS == SEGMENT_TAILS


def test_the_command_line_starts_without_torch_or_lightning():
    code = ("import sys, mosquito_ast.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'numpy', 'pandas'}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_help_groups_flags_by_purpose_and_lists_commands_in_workflow_order():
    result = runner.invoke(app, ["train", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    titles = [line.strip("╭─ ").split(" ─")[0] for line in result.output.splitlines() if line.startswith("╭─")]
    assert titles == ["Options", *GROUPS]
    optimizer = next(line for line in result.output.splitlines() if "--optimizer" in line)
    assert "adamw|rmsprop|sgd" in optimizer
    train_dir = next(line for line in result.output.splitlines() if "--train-dir" in line)
    assert "[required]" in train_dir
    listing = runner.invoke(app, ["--help"], env=WIDE).output
    order = ["split", "check-split", "pretrain", "train", "sweep", "evaluate", "predict", "distill", "export", "demo"]
    rows = [line[1:].split()[0] for line in listing.splitlines() if line.startswith("│ ") and line[1:].split()]
    assert [name for name in rows if name in order] == order
    for name, params_type in COMMANDS.items():
        for spec in dataclasses.fields(params_type):
            assert spec.metadata["group"] in GROUPS, (name, spec.name)


def test_required_parameters_are_named_when_missing():
    error = one_line_error(runner.invoke(app, ["evaluate"]))
    assert error == "error: missing required parameter(s): --models, --data"
    assert "SWEEP_FILE" in one_line_error(runner.invoke(app, ["sweep"]))


@pytest.mark.parametrize("text, name", [("epochs: true\n", "epochs"), ("dropout: true\n", "dropout"),
                                        ("batch_sizes: [true]\n", "batch_sizes"), ("seed: false\n", "seed")])
def test_a_yaml_bool_is_no_number(tmp_path, text, name):
    config = tmp_path / "run.yaml"
    config.write_text("train_dir: a\n" + text)
    with pytest.raises(ConfigError, match=f"^{name}: "):
        TrainParams.from_sources(config)
    error = one_line_error(runner.invoke(app, ["train", "--config", str(config)]))
    assert error.startswith(f"error: {name}: ")
