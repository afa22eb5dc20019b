"""The runtime without PyTorch (`mosquito_ast_lite`, its own distribution): it runs with torch, transformers,
lightning, pandas and the tool itself blocked, labels files below --min-confidence uncertain, and writes predict's columns."""

from __future__ import annotations

import ast
import csv
import json
import re
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mosquito_ast.features import FeatureSettings, make_extractor, normalize
from mosquito_ast_lite.__main__ import main as lite_main
from mosquito_ast_lite.runtime import load_model, predict_files
from mosquito_ast_lite.stream import RowOptions, recording_windows

LITE = Path(__file__).resolve().parents[1] / "lite"
# What the field runtime must run without: the heavy libraries and the tool itself (another distribution).
BLOCKED = ("torch", "transformers", "lightning", "pytorch_lightning", "pandas", "mosquito_ast")
LITE_DEPENDENCIES = {"numpy", "soundfile", "soxr", "onnxruntime"}
LABELS = ["Ae. aegypti", "An. gambiae", "C. pipiens"]
def test_lite_imports_only_its_declared_dependencies():
    """Statically: every module imports only the standard library, its own modules and the four libraries
    its distribution declares, so `pip install mosquito-ast-lite` is all a device needs."""
    for path in (LITE / "src" / "mosquito_ast_lite").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in LITE_DEPENDENCIES, f"{path.name} imports {name}"


def test_the_lite_distribution_declares_no_heavy_dependency():
    """As installed: the device install is the four libraries; the tool depends on the runtime at its version."""
    lite = {re.split(r"[=<>!~ ;\[]", requirement)[0] for requirement in metadata.requires("mosquito-ast-lite")}
    assert lite == LITE_DEPENDENCIES
    pinned = f"mosquito-ast-lite=={metadata.version('mosquito-ast-lite')}"
    assert pinned in metadata.requires("mosquito-ast")
    assert metadata.version("mosquito-ast-lite") == metadata.version("mosquito-ast")


# --- a tiny exported model folder ------------------------------------------------------------------------------

class TinyModel(torch.nn.Module):
    """What export's contract promises: un-normalized fbank in, normalization inside, probabilities out."""

    def __init__(self, settings: FeatureSettings, classes: int) -> None:
        super().__init__()
        self.mean, self.std = settings.norm_mean, settings.norm_std
        self.linear = torch.nn.Linear(settings.num_mel_bins, classes)
        with torch.no_grad():  # confident enough that abstaining splits the files
            self.linear.weight.mul_(20)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        x = (fbank - self.mean) / (2 * self.std)
        return torch.softmax(self.linear(x.mean(dim=1)), dim=-1)


def export_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """The TorchScript exporter (dynamo=False) works with torch alone; the dynamo one needs onnxscript."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), str(path), input_names=["fbank"], output_names=["probabilities"],
                          dynamic_axes={"fbank": {0: "batch"}, "probabilities": {0: "batch"}}, dynamo=False)


def write_model_folder(folder: Path, module: torch.nn.Module, settings: FeatureSettings, labels: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(module, torch.randn(2, settings.max_length, settings.num_mel_bins) - 5, folder / "model.onnx")
    (folder / "model.json").write_text(json.dumps({
        "format": "mosquito-ast-onnx", "labels": labels, "features": settings.to_dict(), "members": ["tiny"],
        "precision": "fp32", "onnx": "model.onnx", "tool_version": "test"}, indent=2))
    return folder


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> tuple[Path, TinyModel]:
    torch.manual_seed(0)
    module = TinyModel(FeatureSettings(), len(LABELS)).eval()
    return write_model_folder(tmp_path_factory.mktemp("onnx") / "tiny model", module, FeatureSettings(), LABELS), module


def tone(seconds: float, rate: int, frequency: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * frequency * t) + 0.05 * np.sin(2 * np.pi * 3.1 * frequency * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lite") / "new recordings"
    (folder / "night 2").mkdir(parents=True)
    sf.write(folder / "long.wav", tone(5.2, 16000, 450), 16000)
    sf.write(folder / "short.wav", tone(0.2, 16000, 600), 16000)
    sf.write(folder / "stereo.flac", tone(1.0, 16000, 350, channels=2), 16000)
    sf.write(folder / "phone 8k.wav", tone(1.5, 8000, 500), 8000)
    sf.write(folder / "night 2" / "mic.44k.wav", tone(2.0, 44100, 800), 44100)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    (folder / "notes.txt").write_text("not audio")
    return folder


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


BLOCKING_PRELUDE = """
import sys, runpy
BLOCKED = {blocked!r}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked in this test")
        return None
sys.meta_path.insert(0, Blocker())
sys.argv = ["mosquito_ast_lite"] + {argv!r}
try:
    runpy.run_module("mosquito_ast_lite", run_name="__main__", alter_sys=True)
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print("HEAVY_MODULES_LOADED:", loaded, file=sys.stderr)
"""


def run_blocked(argv: list[str]) -> subprocess.CompletedProcess:
    code = BLOCKING_PRELUDE.format(blocked=BLOCKED, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_runs_without_torch_and_writes_predict_tables(tiny_onnx, recordings, tmp_path):
    folder, module = tiny_onnx
    output = tmp_path / "out" / "preds.csv"
    done = run_blocked([str(folder), str(recordings), "--output", str(output), "--threads", "1", "--batch-size", "4",
                        "--top-k", "2"])
    assert done.returncode == 0, done.stderr
    assert "HEAVY_MODULES_LOADED: []" in done.stderr
    assert "broken.wav: skipped (unreadable audio" in done.stderr
    columns, files = read_csv(output)
    assert columns == ["path", "windows", "detections", "error", "label", "confidence", "top1_label",
                       "top1_probability", "top2_label", "top2_probability", *LABELS]
    by_name = {Path(row["path"]).name: row for row in files}
    assert {k: int(v["windows"]) for k, v in by_name.items()} == {
        "broken.wav": 0, "long.wav": 10, "mic.44k.wav": 3, "phone 8k.wav": 2, "short.wav": 1, "stereo.flac": 1}
    assert [Path(r["path"]).name for r in files] == ["broken.wav", "long.wav", "mic.44k.wav", "phone 8k.wav",
                                                     "short.wav", "stereo.flac"]  # predict's sorted order
    broken = by_name.pop("broken.wav")
    assert "unreadable" in broken["error"] and broken["label"] == broken["confidence"] == ""
    window_columns, windows = read_csv(output.with_name("preds_windows.csv"))
    assert window_columns == ["path", "start_s", "end_s", "presence_db", "label", "confidence", *LABELS]
    assert len(windows) == 17

    settings = FeatureSettings()
    for name, row in by_name.items():
        path = row["path"]
        # the same windows through the tool's own fbank and the PyTorch module: the same probabilities
        starts, _, waves = zip(*recording_windows(path, settings.sample_rate, settings.clip_seconds, hop_seconds=0.5))
        features = make_extractor(settings)(np.stack(waves))
        with torch.no_grad():
            expected = module(torch.from_numpy(features)).numpy()
        mine = [w for w in windows if w["path"] == path]
        assert [float(w["start_s"]) for w in mine] == [round(s, 4) for s in starts]
        got = np.array([[float(w[label]) for label in LABELS] for w in mine])
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert [w["label"] for w in mine] == [LABELS[i] if p.max() >= 0.5 else "uncertain"
                                              for i, p in zip(expected.argmax(axis=1), expected)]
        pooled = np.array([float(row[label]) for label in LABELS])
        np.testing.assert_allclose(pooled, got.mean(axis=0), atol=2e-4)  # each rounded to 4 decimals
        np.testing.assert_allclose(pooled.sum(), 1.0, atol=3e-4)
        assert row["error"] == "" and row["top1_label"] == LABELS[int(pooled.argmax())]
        assert row["label"] == (row["top1_label"] if float(row["confidence"]) >= 0.5 else "uncertain")
        assert float(row["confidence"]) == float(row["top1_probability"]) >= float(row["top2_probability"])
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["labels"] == LABELS and len(report["files"]) == 6 and len(report["windows"]) == 17
    assert report["files"][0]["confidence"] is None


def test_min_confidence_labels_unsure_files_and_windows_uncertain(tiny_onnx, recordings):
    model = load_model(tiny_onnx[0], threads=1)
    files = sorted(p for p in recordings.rglob("*.*") if p.suffix in (".wav", ".flac"))
    plain = predict_files(model, files, RowOptions(min_confidence=0), warn=None)
    confidences = sorted(r["confidence"] for r in plain.files if not r["error"])
    threshold = (confidences[1] + confidences[-2]) / 2
    result = predict_files(model, files, RowOptions(min_confidence=threshold), warn=None)
    abstained = [r for r in result.files if r["label"] == "uncertain"]
    assert 0 < len(abstained) < len(confidences)
    for before, after in zip(plain.files, result.files):
        if before["error"]:
            assert after["label"] == "" and after["error"] == before["error"]
            continue
        assert (after["label"] == "uncertain") == (before["confidence"] < threshold)
        assert after["label"] in ("uncertain", before["label"]) and after["top1_label"] == before["label"]
        assert [after[x] for x in LABELS] == [before[x] for x in LABELS]  # probabilities kept
    window_labels = [w["label"] for w in result.windows]
    assert window_labels == ["uncertain" if w["confidence"] < threshold else w["label"] for w in plain.windows]
    assert "uncertain" in window_labels
    everything = predict_files(model, files, RowOptions(min_confidence=1.0), warn=None)
    assert {r["label"] for r in everything.files if not r["error"]} == {"uncertain"}


def test_cli_abstain_and_bad_arguments(tiny_onnx, recordings, tmp_path, capsys):
    output = tmp_path / "abstain.csv"
    assert lite_main([str(tiny_onnx[0]), str(recordings / "long.wav"), "--output", str(output),
                      "--min-confidence", "1", "--quiet"]) == 0
    assert {r["label"] for r in read_csv(output)[1]} == {"uncertain"}
    assert {r["label"] for r in read_csv(tmp_path / "abstain_windows.csv")[1]} == {"uncertain"}
    assert lite_main([str(tiny_onnx[0]), str(recordings), "--min-confidence", "1.5"]) == 2
    broken = tmp_path / "broken.wav"  # a bad file is one row with its error, not a failed run
    broken.write_bytes(b"RIFF not audio")
    assert lite_main([str(tiny_onnx[0]), str(broken), str(recordings / "short.wav"), "--output",
                      str(tmp_path / "x.csv")]) == 0
    rows = read_csv(tmp_path / "x.csv")[1]
    assert rows[0]["path"] == str(broken) and rows[0]["error"] and rows[1]["error"] == "" and rows[1]["label"]
    capsys.readouterr()
    (tmp_path / "no audio").mkdir()
    assert lite_main([str(tiny_onnx[0]), str(tmp_path / "no audio")]) == 2
    assert "no audio files found" in capsys.readouterr().err


def _bad_folders(root: Path, good: Path) -> dict[str, tuple[Path, str]]:
    def folder(name: str, meta: dict | str | None, onnx: bytes | None = None) -> Path:
        path = root / name
        path.mkdir()
        if meta is not None:
            (path / "model.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
        if onnx is not None:
            (path / "model.onnx").write_bytes(onnx)
        return path

    meta = json.loads((good / "model.json").read_text())
    onnx = (good / "model.onnx").read_bytes()
    narrow = {**meta, "features": {**meta["features"], "num_mel_bins": 64}}
    return {
        "missing": (root / "nowhere", "no such model folder"),
        "no json": (folder("no json", None, onnx), "no model.json"),
        "bad json": (folder("bad json", "{not json", onnx), "unreadable JSON"),
        "wrong format": (folder("wrong format", {**meta, "format": "something else"}, onnx), "format is"),
        "no labels": (folder("no labels", {**meta, "labels": []}, onnx), "'labels'"),
        "no features": (folder("no features", {**meta, "features": {"sample_rate": 16000}}, onnx), "lacks"),
        "no onnx": (folder("no onnx", meta), "not in the folder"),
        "corrupt onnx": (folder("corrupt onnx", meta, b"garbage"), "cannot load the ONNX model"),
        "shape": (folder("shape", narrow, onnx), "does not fit"),
        "labels vs outputs": (folder("labels vs outputs", {**meta, "labels": [*meta["labels"], "Cx. extra"]}, onnx),
                              "expected (batch, 4)"),
    }


def test_bad_model_folders_give_one_line_errors(tiny_onnx, recordings, tmp_path, capsys):
    for name, (folder, message) in _bad_folders(tmp_path, tiny_onnx[0]).items():
        assert lite_main([str(folder), str(recordings / "long.wav"), "--output", str(tmp_path / "o.csv")]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, (name, err)


# --- the same columns as `mosquito-ast predict`, from an ONNX export of a real tiny member ----------------------

class MemberGraph(torch.nn.Module):
    """A member as export's contract has it: un-normalized fbank -> normalize -> AST -> softmax."""

    def __init__(self, member) -> None:
        super().__init__()
        self.model, self.settings = member.model.eval(), member.features

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(fbank, self.settings)).float().softmax(dim=-1)


def test_columns_and_labels_equal_predicts(tiny_member, recordings, tmp_path):
    from mosquito_ast.config import PredictParams
    from mosquito_ast.inference.members import load_members
    from mosquito_ast.commands.predict import predict

    member = load_members(tiny_member)[0]
    folder = tmp_path / "member onnx"
    try:
        write_model_folder(folder, MemberGraph(member), member.features, member.labels)
    except Exception as error:  # pragma: no cover - the exporter, not lite, is at fault
        pytest.skip(f"torch.onnx.export cannot export the tiny member here ({error})")
    for threshold in (0.0, 0.6):
        reference = tmp_path / f"predict {threshold}.csv"
        predict(PredictParams(inputs=[str(recordings)], models=str(tiny_member), output=str(reference),
                              min_confidence=threshold, precision="32", progress=False))
        lite = tmp_path / f"lite {threshold}.csv"
        done = run_blocked([str(folder), str(recordings), "--output", str(lite), "--min-confidence", str(threshold)])
        assert done.returncode == 0, done.stderr
        for suffix in ("", "_windows"):
            ours, theirs = (read_csv(p.with_name(p.stem + suffix + ".csv")) for p in (lite, reference))
            assert ours[0] == theirs[0], suffix  # the same columns in the same order
            assert [r["path"] for r in ours[1]] == [r["path"] for r in theirs[1]]
            assert [r["label"] for r in ours[1]] == [r["label"] for r in theirs[1]], suffix
            for mine, tool in zip(ours[1], theirs[1]):
                assert mine.get("error") == tool.get("error")
                if mine["confidence"]:
                    np.testing.assert_allclose([float(mine[x]) for x in member.labels],
                                               [float(tool[x]) for x in member.labels], atol=1e-4)


@pytest.mark.parametrize("external", [False, True], ids=["one file", "external data"])
def test_runs_what_export_writes(tiny_member, recordings, feature_cache_dir, tmp_path, monkeypatch, external):
    """The folder `mosquito-ast export --int8` writes: lite runs its int8 graph (and with --fp32 the fp32 one),
    and names the files as `predict` does; also when the weights lie in .data files (ensembles over 2 GB)."""
    export_module = pytest.importorskip("mosquito_ast.commands.export")
    from mosquito_ast.config import ExportParams, PredictParams
    from mosquito_ast.commands.predict import predict

    if external:
        monkeypatch.setattr(export_module, "MAX_ONNX_BYTES", 0)
    folder = tmp_path / "export"
    export_module.export(ExportParams(models=str(tiny_member), output=str(folder), int8=True, check_clips=8,
                                      cache_dir=str(feature_cache_dir), progress=False))
    info = json.loads((folder / "model.json").read_text())
    assert any(name.endswith(".data") for name in info["files"]) == external
    predict(PredictParams(inputs=[str(recordings)], models=str(tiny_member), output=str(tmp_path / "tool.csv"),
                          precision="32", progress=False))
    tool_columns, tool = read_csv(tmp_path / "tool.csv")
    for extra in ([], ["--fp32"]):
        output = tmp_path / f"lite{''.join(extra)}.csv"
        done = run_blocked([str(folder), str(recordings), "--output", str(output), *extra])
        assert done.returncode == 0, done.stderr
        columns, rows = read_csv(output)
        assert columns == tool_columns and [r["path"] for r in rows] == [r["path"] for r in tool]
        tolerance = 1e-4 if extra else 0.02  # int8 moves probabilities by ~1e-3 here
        for a, b in zip(rows, tool):
            assert a["error"] == b["error"]
            if b["error"]:
                continue
            ours, theirs = (np.array([float(r[x]) for x in info["labels"]]) for r in (a, b))
            np.testing.assert_allclose(ours, theirs, atol=tolerance)
            margin = np.diff(np.sort(theirs)[-2:])[0]
            assert a["label"] == b["label"] or margin < 2 * tolerance
    assert json.loads((tmp_path / "lite.json").read_text())["precision"] == "int8"
    assert json.loads((tmp_path / "lite--fp32.json").read_text())["precision"] == "fp32"
