"""A full disk, a file where a folder is expected, and what a killed run leaves behind: one line where one
line is promised, no work lost that a rerun cannot finish, and orphans cleaned on the next run."""

from __future__ import annotations

import dataclasses
import errno
import subprocess
import tempfile

import pytest
from typer.testing import CliRunner

import mosquito_ast.commands.export as export_module
import mosquito_ast.commands.train as train_module
import mosquito_ast.evaluation.report as report_module
from mosquito_ast.cli import app
from mosquito_ast.commands.train import run_paths, train
from test_faults import EpochsRun, cli_arguments


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/mnt/runs/out")


def one_error_line(result, code: int = 1) -> str:
    assert result.exit_code == code and not isinstance(result.exception, OSError), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def _ended() -> int:
    """The id of a process that has ended (its reuse within a test is improbable)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_full_disk_while_writing_the_member_loses_no_epoch(tiny_params, monkeypatch):
    params = tiny_params(epochs=2)
    monkeypatch.setattr(train_module, "promote_member", full_disk)
    line = one_error_line(CliRunner().invoke(app, cli_arguments(params)))
    assert line.startswith("error: /mnt/runs/out: No space left on device;") and "--resume" in line
    member_dir, run_dir = run_paths(params)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file() and not member_dir.exists()  # the final epoch's checkpoint survives
    monkeypatch.undo()

    pid = _ended()
    orphans = [last.parent / f".last.ckpt.{pid}-x1.tmp.ckpt", member_dir.parent / f".{member_dir.name}.{pid}-x2.tmp"]
    orphans[0].write_bytes(b"half a checkpoint")
    orphans[1].mkdir(parents=True)
    alive = last.parent / ".last.ckpt.1-x3.tmp.ckpt"  # pid 1 runs: another process's file stays
    alive.write_bytes(b"")
    seen = EpochsRun()
    train(dataclasses.replace(params, resume=True), callbacks=[seen])
    assert seen.epochs == [] and (member_dir / "model.safetensors").is_file() and not last.exists()
    assert not any(path.exists() for path in orphans) and alive.exists()


def test_full_disk_while_writing_an_evaluation_or_an_export(tiny_member, synth_split, tmp_path, monkeypatch):
    monkeypatch.setattr(report_module, "draw_figures", full_disk)
    result = CliRunner().invoke(app, ["evaluate", "--models", str(tiny_member), "--data", str(synth_split[1]),
                                      "--output", str(tmp_path / "evaluation"), "--precision", "32", "--bootstrap",
                                      "0", "--no-baseline", "--no-progress"])
    assert "No space left on device" in one_error_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no staging folder, no half evaluation

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-temp"))
    (tmp_path / "system-temp" / f"mosquito-ast-export-{_ended()}-x4").mkdir(parents=True)  # left by a killed export
    monkeypatch.setattr(export_module, "write_onnx", full_disk)
    result = CliRunner().invoke(app, ["export", "--models", str(tiny_member), "--output", str(tmp_path / "onnx"),
                                      "--no-progress"])
    assert "No space left on device" in one_error_line(result)
    assert not (tmp_path / "onnx").exists() and list((tmp_path / "system-temp").iterdir()) == []


def test_distill_output_that_is_a_file_is_one_line(tiny_member, synth_split, tmp_path):
    output = tmp_path / "student.txt"
    output.write_text("notes")
    result = CliRunner().invoke(app, ["distill", "--models", str(tiny_member), "--data", str(synth_split[0]),
                                      "--output", str(output), "--overwrite", "--no-progress"])
    assert "student.txt" in one_error_line(result, code=2)
    assert output.read_text() == "notes" and sorted(p.name for p in tmp_path.iterdir()) == ["student.txt"]


def test_export_into_a_folder_of_other_files_is_refused_before_any_work(tiny_member, tmp_path):
    output = tmp_path / "deploy"
    output.mkdir()
    (output / "notes.txt").write_text("field notes")  # the export replaces its whole folder: never this one
    result = CliRunner().invoke(app, ["export", "--models", str(tiny_member), "--output", str(output), "--no-progress"])
    line = one_error_line(result, code=2)
    assert "deploy: not an export written by mosquito-ast" in line and "notes.txt" in line
    assert sorted(p.name for p in output.iterdir()) == ["notes.txt"] and "self-check" not in result.output
