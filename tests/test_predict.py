import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mosquito_ast.cli import app
from mosquito_ast.config import ConfigError, PredictParams
from mosquito_ast.commands.predict import predict


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 880 * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.fixture
def recordings(tmp_path):
    folder = tmp_path / "new recordings"
    folder.mkdir()
    sf.write(folder / "long.wav", tone(5.2, 16000), 16000)
    sf.write(folder / "short.wav", tone(0.2, 16000), 16000)
    sf.write(folder / "stereo.flac", tone(1.0, 16000, channels=2), 16000)
    sf.write(folder / "phone 8k.wav", tone(1.5, 8000), 8000)
    sf.write(folder / "mic.44k.wav", tone(2.0, 44100), 44100)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    return folder


def test_predict_any_length_rate_and_channels(tiny_member, recordings, tmp_path):
    output = tmp_path / "out" / "preds.csv"
    result = predict(PredictParams(inputs=[str(recordings)], models=str(tiny_member), output=str(output),
                                   hop_seconds=0.5, top_k=2, min_confidence=0.99, precision="32", progress=False))
    files = pd.read_csv(output).set_index(pd.read_csv(output)["path"].map(lambda p: p.rsplit("/", 1)[1]))
    labels = result.labels
    assert len(files) == 6
    windows = files["windows"].to_dict()
    assert windows == {"broken.wav": 0, "long.wav": 10, "mic.44k.wav": 3, "phone 8k.wav": 2, "short.wav": 1,
                       "stereo.flac": 1}
    assert "unreadable" in files.loc["broken.wav", "error"]
    readable = files.drop(index="broken.wav")
    np.testing.assert_allclose(readable[labels].sum(axis=1), 1.0, atol=3e-4)  # 4 decimals each
    assert (readable["top1_probability"] >= readable["top2_probability"]).all()
    assert set(readable["top1_label"]) <= set(labels)
    assert (readable["label"] == "uncertain").all()  # nothing reaches 0.99 with a 2-epoch tiny model
    assert (readable["detections"] == readable["windows"]).all()  # tones: every window passes the gate
    per_window = pd.read_csv(output.with_name("preds_windows.csv"))
    long_windows = per_window[per_window.path.str.endswith("long.wav")]
    assert len(long_windows) == 10 and long_windows.end_s.max() == pytest.approx(5.2)
    np.testing.assert_allclose(long_windows[labels].mean().values, files.loc["long.wav", labels].values.astype(float),
                               atol=1e-4)
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["labels"] == labels and len(report["files"]) == 6


def test_predict_cli(tiny_member, recordings, tmp_path):
    output = tmp_path / "p.csv"
    result = CliRunner().invoke(app, ["predict", "--models", str(tiny_member), str(recordings / "long.wav"),
                                      str(recordings / "short.wav"), "--output", str(output), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(output)) == 2
    missing = CliRunner().invoke(app, ["predict", "--models", str(tmp_path / "nothing"), str(recordings)])
    assert missing.exit_code == 2 and "no such models folder" in missing.output


def test_predict_real_microphone_recordings(tiny_member, tmp_path):
    from conftest import HUMBUG

    if not HUMBUG.is_dir():
        pytest.skip(f"real microphone clips not found at {HUMBUG}")
    output = tmp_path / "humbug.csv"
    predict(PredictParams(inputs=[str(HUMBUG)], models=str(tiny_member), output=str(output), precision="32",
                          progress=False))
    files = pd.read_csv(output, keep_default_na=False)
    assert len(files) == 10 and (files["error"] == "").all()  # 24-bit, 8 and 44.1 kHz, 0.05 s to 19 s
    assert files["windows"].max() >= 30  # the 19 s recording, 0.5 s hop


def test_min_confidence_labels_unsure_files_and_windows_uncertain(tiny_member, recordings, tmp_path):
    output = tmp_path / "abstain.csv"
    result = predict(PredictParams(inputs=[str(recordings / "long.wav"), str(recordings / "short.wav")],
                                   models=str(tiny_member), output=str(output), min_confidence=0.99, precision="32",
                                   progress=False))
    files, windows = pd.read_csv(output), pd.read_csv(output.with_name("abstain_windows.csv"))
    # a 2-epoch tiny model is never 99% sure: everything abstains, probabilities are kept
    assert (files.label == "uncertain").all() and (windows.label == "uncertain").all()
    assert set(files.top1_label) <= set(result.labels)
    np.testing.assert_allclose(windows.confidence, windows[result.labels].max(axis=1), rtol=1e-6)
    sure = predict(PredictParams(inputs=[str(recordings / "long.wav")], models=str(tiny_member),
                                 output=str(tmp_path / "sure.csv"), min_confidence=0.0, precision="32", progress=False))
    assert (sure.files.label == sure.files.top1_label).all()
    with pytest.raises(ConfigError, match="min_confidence"):
        PredictParams(inputs=["a.wav"], models="m", min_confidence=1.5)


def test_missing_input_is_one_error_naming_it(tiny_member, recordings, tmp_path):
    absent = tmp_path / "no such recording.wav"
    result = CliRunner().invoke(app, ["predict", "--models", str(tiny_member), str(recordings / "long.wav"),
                                      str(absent), "--output", str(tmp_path / "p.csv"), "--no-progress"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.strip()]
    assert errors == [f"error: {absent}: no such file or folder"]
    assert not (tmp_path / "p.csv").exists()
