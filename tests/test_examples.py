"""Every sweep file under examples/ works as its header says: run from the repository root, it reads its
splits from runs/splits/ (made by the `split` commands it lists) and its dry run shows every run as
runnable and writes nothing."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mosquito_ast.cli import app
from mosquito_ast.synth import generate_dataset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SKIPPED = ("pretrain",)  # minutes of training: its output is the one input a dry run may find missing
PROMPT = "#   mosquito-ast "


def header_commands(example: Path) -> list[list[str]]:
    """The `mosquito-ast ...` commands an example's header tells the user to run, as argument lists."""
    return [shlex.split(line[len(PROMPT):]) for line in example.read_text().splitlines() if line.startswith(PROMPT)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A repository root beside `../shared/data/wingbeats`, here generated: two recordings per species, as
    in the real sample."""
    root = tmp_path_factory.mktemp("workspace")
    generate_dataset(root / "shared" / "data" / "wingbeats", recordings_per_species=2, clips_per_recording=4,
                     clip_seconds=0.25, sample_rate=8000)
    (root / "repo" / "examples").mkdir(parents=True)
    return root / "repo"


def test_every_example_states_where_it_runs_from_and_reads_runs_splits():
    for example in EXAMPLES:
        text = example.read_text()
        assert "Run from the repository root" in text, example.name
        assert "../splits" not in text and "../../runs" not in text, example.name
        assert any(command[0] == "sweep" and "--dry-run" in command for command in header_commands(example)), example.name


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_example_header_commands_and_dry_run_work_from_the_repository_root(example, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    shutil.copy(example, workspace / "examples" / example.name)
    runner = CliRunner()
    dry_runs = 0
    needs_pretrain = any(command[0] == "pretrain" for command in header_commands(example))
    for command in header_commands(example):
        if command[0] in SKIPPED or (command[0] == "sweep" and "--dry-run" not in command):
            continue
        result = runner.invoke(app, [*command, "--overwrite"] if command[0] == "split" else command)
        if command[0] == "sweep":
            dry_runs += 1
            rows = [line.split() for line in result.output.splitlines()]
            runs = [row[row.index("pending") + 1:] for row in rows if row and row[0].isdigit() and "pending" in row]
            assert runs, result.output
            if needs_pretrain:  # the header's pretrain output is the one thing missing, and it is named
                assert result.exit_code == 1 and runs == [["fail", "ssl_checkpoint"]] * len(runs), result.output
            else:
                assert result.exit_code == 0 and runs == [["run"]] * len(runs), result.output
            assert not (workspace / "runs" / example.stem).exists()  # a dry run writes nothing
            assert not list((workspace / "runs").glob("deploy*"))
        else:
            assert result.exit_code == 0, f"{shlex.join(command)}: {result.output}"
    assert dry_runs == 1
