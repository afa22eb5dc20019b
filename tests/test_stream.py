"""predict's streaming loop (`mosquito_ast_lite.stream`), shared by the tool and the field runtime: windows cut
while decoding, exactly where a whole-file cut puts them; rows written as they come; a file that fails after
its first windows leaves none of them behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import soxr

from mosquito_ast_lite.audio import AudioError, load_audio, stream_audio
from mosquito_ast_lite.stream import RowOptions, recording_windows, stream_predictions
from mosquito_ast_lite.tables import CollectedRows, csv_text, file_columns, prediction_files, window_columns

LABELS = ["a", "b"]


def write(path, samples: int, rate: int = 1000, seed: int = 0):
    sf.write(path, np.random.default_rng(seed).uniform(-0.5, 0.5, samples), rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("samples, starts", [
    (400, [0]),  # shorter than a window: one, padded
    (1000, [0]),
    (2500, [0, 500, 1000, 1500]),
    (2600, [0, 500, 1000, 1500, 1600]),  # the last one aligned to the end
])
@pytest.mark.parametrize("block", [64, 333, 1 << 16])
def test_windows_are_where_a_whole_file_cut_puts_them(tmp_path, samples, starts, block):
    path = write(tmp_path / "r.wav", samples)
    wave = load_audio(path, 1000)
    windows = list(recording_windows(path, 1000, 1.0, 0.5, block_frames=block))
    assert [start for start, _, _ in windows] == [s / 1000 for s in starts]
    assert [end for _, end, _ in windows] == [min(s + 1000, samples) / 1000 for s in starts]  # never past the end
    for start, _, window in windows:
        begin = int(round(start * 1000))
        expected = np.pad(wave[begin:begin + 1000], (0, max(0, 1000 - len(wave[begin:]))))
        np.testing.assert_array_equal(window, expected)


def test_resampled_in_blocks_equals_one_pass(tmp_path):
    path = write(tmp_path / "r.wav", 7777, rate=8000)
    blocks = list(stream_audio(path, 16000, block_frames=500))
    assert len(blocks) > 5
    one_pass = soxr.resample(sf.read(path, dtype="float32")[0], 8000, 16000, quality="HQ")
    np.testing.assert_array_equal(np.concatenate(blocks), one_pass)


class MeanScorer:
    """A scorer whose probabilities follow the window's mean: p(b) = 0.5 + mean."""

    labels, clip_seconds, sample_rates = LABELS, 1.0, (1000,)

    def __init__(self) -> None:
        self.blocks: list[int] = []

    def __call__(self, waves):
        block = waves[1000]
        self.blocks.append(len(block))
        b = 0.5 + block.mean(axis=1)
        return np.stack([1 - b, b], axis=1)


def test_rows_come_in_file_order_with_bounded_blocks(tmp_path):
    files = [write(tmp_path / f"{i}.wav", n, seed=i) for i, n in enumerate([2600, 300, 5000])]
    scorer, rows = MeanScorer(), CollectedRows(LABELS)
    assert stream_predictions(scorer, files, rows, RowOptions(batch_size=4, presence_db=0), warn=None) == 5 + 1 + 9
    assert max(scorer.blocks) == 4  # gathered across files, never more than --batch-size
    assert [r["path"] for r in rows.files] == list(map(str, files)) and [r["windows"] for r in rows.files] == [5, 1, 9]
    first = [w for w in rows.windows if w["path"] == str(files[0])]
    assert [w["start_s"] for w in first] == [0.0, 0.5, 1.0, 1.5, 1.6]
    wave = load_audio(files[0], 1000)
    assert first[-1]["b"] == pytest.approx(0.5 + wave[1600:].mean(), abs=1e-4)  # 4 decimals
    assert rows.files[0]["b"] == pytest.approx(np.mean([w["b"] for w in first]), abs=1e-4)


def test_a_file_failing_after_its_first_windows_leaves_only_its_error_row(tmp_path):
    good = write(tmp_path / "good.wav", 1500)
    bad = tmp_path / "bad.wav"
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, 5000)
    samples[4000] = np.nan  # found in the last block, after windows of the first were scored and written
    sf.write(bad, samples, 1000, subtype="FLOAT")
    output = tmp_path / "p.csv"
    warnings = []
    with prediction_files(output, LABELS, 3, {"labels": LABELS}) as rows:
        stream_predictions(MeanScorer(), [good, bad, good], rows, RowOptions(batch_size=2, presence_db=0), warnings.append)
    files = [r["path"] for r in json.loads(output.with_suffix(".json").read_text())["files"]]
    assert files == [str(good), str(bad), str(good)]
    windows = (tmp_path / "p_windows.csv").read_text().splitlines()
    assert windows[0] == ",".join(window_columns(LABELS)) and len(windows) == 1 + 2 + 2
    assert all(str(bad) not in line for line in windows)
    report = json.loads(output.with_suffix(".json").read_text())
    assert len(report["windows"]) == 4 and "NaN or infinite" in report["files"][1]["error"]
    assert report["files"][1]["confidence"] is None
    assert output.read_text() == csv_text(rows.files, file_columns(LABELS, 3))
    assert warnings == [f"warning: {bad}: skipped (audio contains NaN or infinite samples)"]


def test_json_is_laid_out_as_json_dumps_lays_it_out(tmp_path):
    path = write(tmp_path / "r.wav", 2600)
    header = {"models": "m", "labels": LABELS, "hop_seconds": 0.5}
    with prediction_files(tmp_path / "p.csv", LABELS, 2, header) as rows:
        stream_predictions(MeanScorer(), [path], rows, RowOptions(presence_db=0), warn=None)
    memory = CollectedRows(LABELS)
    stream_predictions(MeanScorer(), [path], memory, RowOptions(presence_db=0), warn=None)
    nulls = [{k: None if v != v else v for k, v in row.items()} for row in memory.windows]  # NaN -> null
    expected = json.dumps({**header, "files": memory.files, "windows": nulls}, indent=2) + "\n"
    assert (tmp_path / "p.json").read_text() == expected


def test_silence_is_an_error_found_at_the_end(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(3000), 1000)
    with pytest.raises(AudioError, match="all zeros"):
        list(stream_audio(path, 1000, block_frames=512))


def test_blocks_keep_to_one_file_when_asked(tmp_path):
    files = [write(tmp_path / f"{i}.wav", n, seed=i) for i, n in enumerate([2600, 300, 5000])]
    scorer = MeanScorer()
    stream_predictions(scorer, files, CollectedRows(LABELS), RowOptions(batch_size=4, gather_files=False, presence_db=0), warn=None)
    assert scorer.blocks == [4, 1, 1, 4, 4, 1]  # 5 windows, 1, 9: never two files in one block


def test_progress_counts_each_second_of_audio_once(tmp_path):
    files = [write(tmp_path / f"{i}.wav", n, seed=i) for i, n in enumerate([2600, 300, 5000])]
    seconds: list[float] = []
    stream_predictions(MeanScorer(), files, CollectedRows(LABELS), RowOptions(batch_size=4, presence_db=0), warn=None,
                       progress=seconds.append)
    assert len(seconds) == 4 and sum(seconds) == pytest.approx(2.6 + 0.3 + 5.0)  # overlapping windows count once
