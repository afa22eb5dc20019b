"""`--help` at 80 columns, for every command: what a user reads in a narrow terminal is whole and true."""

from __future__ import annotations

import dataclasses
import re

import pytest
from typer.testing import CliRunner

from mosquito_ast.cli import COMMANDS, app
from mosquito_ast.cli_help import flag_names
from mosquito_ast.config import SweepParams
from mosquito_ast.params import field_default, flag

runner = CliRunner()


def page(command: str) -> str:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def states_a_default(spec: dataclasses.Field) -> bool:
    """Whether `--help` states the field's default: its help does (a None default) or the page adds it."""
    return "(default:" in spec.metadata["help"] or field_default(spec) not in (None, dataclasses.MISSING, [])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_at_80_columns_is_whole(command):
    text = page(command)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in text  # nothing cut off
    assert not re.search(r"--help\s+<bool>", text) and "<bool>" not in text  # switches take no value
    fields = dataclasses.fields(COMMANDS[command])
    assert text.count("(default:") == sum(map(states_a_default, fields))  # one default statement each at most
    for spec in fields:
        names = " / ".join(flag_names(spec))
        head = next(line for line in lines if line.startswith(f"│ {names}"))  # every flag whole, on one line
        if spec.metadata["choices"]:
            assert f"{names} {'|'.join(spec.metadata['choices'])}" in head, (command, spec.name)
    required = [flag(s) for s in fields if s.metadata["positional"] and s.metadata["required"]]
    usage = next(line for line in lines if "Usage:" in line)
    assert usage.split()[-len(required):] == required if required else usage.split()[-1] == "[OPTIONS]"


def test_every_default_is_stated_once():
    for command, params_type in COMMANDS.items():
        for spec in dataclasses.fields(params_type):
            shown = spec.metadata["help"].count("(default:") + (field_default(spec) not in (None, []))
            assert shown <= 1, (command, spec.name)
    assert "(default: 30)" in page("demo") and "recipe's)" not in page("demo")


def test_sweep_lists_its_backends_and_distill_has_no_patience():
    from mosquito_ast.sweep.backends import BACKENDS

    backend = next(s for s in dataclasses.fields(SweepParams) if s.name == "backend")
    assert backend.metadata["choices"] == BACKENDS and "--backend local|papermill|ray" in page("sweep")
    assert "--patience" not in page("distill") and "--patience" in page("train") and "--patience" in page("pretrain")
