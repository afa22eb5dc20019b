import csv
import errno
import json
import os
import shutil
import warnings
from collections import Counter, defaultdict

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mosquito_ast_lite.io import OutputFolderError

from mosquito_ast.cli import app
from mosquito_ast.data import DatasetError, discover
from mosquito_ast.segment import SegmentSettings, clip_starts, segment_recordings
from mosquito_ast.leakage import check_split
from mosquito_ast.splits import SplitWarning, make_split
from mosquito_ast.synth import generate_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """4 species x 4 recordings x 5 clips, files directly in the class folders (group = 2 tokens)."""
    root = tmp_path_factory.mktemp("split-data")
    generate_dataset(root, recordings_per_species=4, clips_per_recording=5, clip_seconds=0.25, sample_rate=8000)
    return root


def quiet_split(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)
        return make_split(*args, progress=False, **kwargs)


def read_manifest(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def groups_by_side(split_dir, group_by="auto"):
    return {side: {s.group for s in discover(split_dir / side, group_by)} for side in ("train", "validation")}


def test_independent_split_keeps_recordings_whole(synth, tmp_path):
    report = quiet_split(synth, tmp_path, "independent", seed=3)
    groups = groups_by_side(tmp_path / "independent")
    assert groups["train"].isdisjoint(groups["validation"])
    assert len(groups["train"] | groups["validation"]) == 16
    for label, sides in report["classes"].items():  # 4 recordings of 5 clips: 1 of 4 is closest to 20 %
        assert sides["validation"] == {"clips": 5, "groups": 1}, label
        assert sides["train"] == {"clips": 15, "groups": 3}, label
    assert report["validation_fraction"] == 0.25
    assert json.loads((tmp_path / "independent" / "split_report.json").read_text()) == report
    rows = read_manifest(tmp_path / "independent" / "manifest.csv")
    assert len(rows) == 80 and {r["side"] for r in rows} == {"train", "validation"}
    for row in rows:  # manifest paths are relative to the split folder, groups as found in the source
        assert (tmp_path / "independent" / row["path"]).is_file()
        assert row["path"].split("/")[0] == row["side"]
    assert report["link"] == "hard"
    first = tmp_path / "independent" / rows[0]["path"]
    assert os.stat(first).st_nlink == 2


def test_random_split_mixes_recordings_and_check_split_tells_them_apart(synth, tmp_path):
    quiet_split(synth, tmp_path, "independent", seed=0)
    report = quiet_split(synth, tmp_path, "random", seed=0)
    assert report["clips"] == {"train": 64, "validation": 16}
    assert all(sides["validation"]["clips"] == 4 for sides in report["classes"].values())  # stratified

    honest = check_split(tmp_path / "independent" / "train", tmp_path / "independent" / "validation")
    leaky = check_split(tmp_path / "random" / "train", tmp_path / "random" / "validation")
    assert not honest.leaks and honest.shared_groups == {} and honest.duplicates == []
    # 4 validation clips per class, 5 clips per recording: every validation clip's recording is shared
    assert leaky.leaks and len(leaky.shared_groups) >= 4
    assert sum(n["validation"] for n in leaky.shared_groups.values()) == 16

    ok = runner.invoke(app, ["check-split", str(tmp_path / "independent" / "train"),
                             str(tmp_path / "independent" / "validation"), "--no-progress"])
    bad = runner.invoke(app, ["check-split", str(tmp_path / "random" / "train"),
                              str(tmp_path / "random" / "validation"), "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert "no leakage found" in ok.output
    assert bad.exit_code == 1, bad.output
    assert "LEAKAGE FOUND" in bad.output and "recording groups on both sides: " in bad.output


def test_duplicate_audio_under_another_name_is_caught(synth, tmp_path):
    quiet_split(synth, tmp_path, "independent", seed=0)
    train, validation = tmp_path / "independent" / "train", tmp_path / "independent" / "validation"
    source = sorted((train / "C. pipiens").glob("*.wav"))[0]
    renamed = validation / "C. pipiens" / "cpipiens_r99_c000.wav"
    shutil.copyfile(source, renamed)
    wave, rate = sf.read(sorted((train / "Ae. aegypti").glob("*.wav"))[0], dtype="int16")
    sf.write(validation / "Ae. aegypti" / "aeaegypti_r98_c001.flac", wave, rate)  # same audio, re-encoded

    report = check_split(train, validation)
    assert report.shared_groups == {}
    assert sorted(os.path.basename(v) for _, v in report.duplicates) == ["aeaegypti_r98_c001.flac",
                                                                        "cpipiens_r99_c000.wav"]
    result = runner.invoke(app, ["check-split", str(train), str(validation), "--no-progress"])
    assert result.exit_code == 1 and "identical audio on both sides: 2" in result.output


def test_seeded_splits_are_reproducible(synth, tmp_path):
    manifests = {}
    for name, mode, seed in [("a", "random", 5), ("b", "random", 5), ("c", "random", 6),
                             ("d", "independent", 5), ("e", "independent", 5)]:
        quiet_split(synth, tmp_path / name, mode, seed=seed)
        manifests[name] = (tmp_path / name / mode / "manifest.csv").read_text()
    assert manifests["a"] == manifests["b"] and manifests["d"] == manifests["e"]
    assert manifests["a"] != manifests["c"]


def test_independent_seed_chooses_among_equally_good_splits(synth, tmp_path):
    chosen = set()
    for seed in range(4):
        quiet_split(synth, tmp_path / str(seed), "independent", seed=seed)
        chosen.add(frozenset(groups_by_side(tmp_path / str(seed) / "independent")["validation"]))
    assert len(chosen) > 1


@pytest.mark.parametrize("mode", ["independent", "random"])
def test_test_side_holds_whole_recordings_seen_on_no_other_side(synth, tmp_path, mode):
    report = quiet_split(synth, tmp_path, mode, seed=2, test_fraction=0.25)
    split = tmp_path / mode
    groups = {side: {s.group for s in discover(split / side)} for side in ("train", "validation", "test")}
    assert groups["test"] and groups["validation"]
    assert groups["test"].isdisjoint(groups["validation"]) and groups["test"].isdisjoint(groups["train"])
    assert len(set().union(*groups.values())) == 16
    assert report["clips"]["test"] == 20 and report["groups"]["test"] == 4  # one recording of each class
    assert report["test_fraction"] == 0.25 and report["test_fraction_target"] == 0.25
    assert report["clips"]["validation"] + report["clips"]["train"] == 60
    assert {r["side"] for r in read_manifest(split / "manifest.csv")} == {"train", "validation", "test"}


def test_kfold_holds_the_test_side_out_of_every_fold(synth, tmp_path):
    report = quiet_split(synth, tmp_path, "kfold", seed=0, folds=3, test_fraction=0.25)
    test_groups = {s.group for s in discover(tmp_path / "kfold" / "test")}
    assert len(test_groups) == 4 and report["test"]["clips"] == 20
    for k in range(3):
        for side in ("train", "validation"):
            assert test_groups.isdisjoint({s.group for s in discover(tmp_path / "kfold" / f"fold{k}" / side)})
    assert sum(fold["clips"]["validation"] for fold in report["folds"]) == 60


def test_cli_split_reports_every_side(synth, tmp_path):
    result = runner.invoke(app, ["split", str(synth), "--output", str(tmp_path), "--test-fraction", "0.25",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "test: 20 clips, 4 recordings" in result.output and "validation: " in result.output
    too_much = runner.invoke(app, ["split", str(synth), "--output", str(tmp_path / "x"), "--test-fraction", "0.9"])
    assert too_much.exit_code == 2 and "leave no clips to train on" in too_much.output


def test_kfold_folds_are_group_disjoint_and_cover_every_file(synth, tmp_path):
    report = quiet_split(synth, tmp_path, "kfold", folds=4, seed=1)
    assert len(report["folds"]) == 4
    validation_files = Counter()
    for k in range(4):
        fold = tmp_path / "kfold" / f"fold{k}"
        groups = groups_by_side(fold)
        assert groups["train"].isdisjoint(groups["validation"])
        assert len(list(fold.rglob("*.wav"))) == 80
        validation_files.update(p.relative_to(fold / "validation").as_posix()
                                for p in (fold / "validation").rglob("*.wav"))
    assert len(validation_files) == 80 and set(validation_files.values()) == {1}
    rows = read_manifest(tmp_path / "kfold" / "manifest.csv")
    assert len(rows) == 4 * 80 and {r["fold"] for r in rows} == {"0", "1", "2", "3"}


def test_refuses_non_empty_split_folder_unless_overwrite(synth, tmp_path):
    quiet_split(synth, tmp_path, "random")
    with pytest.raises(FileExistsError, match="--overwrite"):
        quiet_split(synth, tmp_path, "random")
    result = runner.invoke(app, ["split", str(synth), "--output", str(tmp_path), "--mode", "random", "--no-progress"])
    assert result.exit_code == 2 and "not empty" in result.output
    quiet_split(synth, tmp_path, "random", overwrite=True, seed=2)
    assert json.loads((tmp_path / "random" / "split_report.json").read_text())["seed"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftover build folder
    (tmp_path / "random" / "notes.txt").write_text("mine")  # a file the tool never wrote: never deleted
    with pytest.raises(OutputFolderError, match="not a split written by mosquito-ast.*notes.txt"):
        quiet_split(synth, tmp_path, "random", overwrite=True, seed=3)
    assert (tmp_path / "random" / "notes.txt").read_text() == "mine"


def test_cli_split_with_copy_and_warning_for_single_recording_class(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, recordings_per_species=2, clips_per_recording=3, clip_seconds=0.25, sample_rate=8000)
    for extra in sorted((data / "C. pipiens").glob("cpipiens_r01_*")):  # C. pipiens: one recording only
        extra.unlink()
    result = runner.invoke(app, ["split", str(data), "--output", str(tmp_path / "out"), "--mode", "independent",
                                 "--copy", "--seed", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "class 'C. pipiens' has 1 recording group (3 clips): all in train" in result.output
    report = json.loads((tmp_path / "out" / "independent" / "split_report.json").read_text())
    assert report["link"] == "copy" and report["classes"]["C. pipiens"]["validation"]["clips"] == 0
    copied = next((tmp_path / "out" / "independent" / "train").rglob("*.wav"))
    assert os.stat(copied).st_nlink == 1


def test_hard_links_fall_back_to_copies_across_devices(synth, tmp_path, monkeypatch, capsys):
    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    report = quiet_split(synth, tmp_path, "random")
    assert report["link"] == "copy"
    assert "copying files instead" in capsys.readouterr().out
    assert len(list((tmp_path / "random").rglob("*.wav"))) == 80


def test_manifest_input_and_symlinks(synth, tmp_path):
    manifest = tmp_path / "list.csv"
    samples = discover(synth)
    manifest.write_text("path,label,session\n" + "".join(f"{s.path},{s.label},{s.group}\n" for s in samples))
    report = quiet_split(manifest, tmp_path / "out", "independent", group_by="column:session", link="symlink")
    assert report["link"] == "symlink"
    split = tmp_path / "out" / "independent"
    linked = next((split / "validation").rglob("*.wav"))
    assert linked.is_symlink() and linked.resolve().parent == synth / linked.parent.parent.name
    # manifest input: files land in <class>/<group>/, so the folder names the recording
    groups = groups_by_side(split, "regex:^([^_]+_[^_]+)")
    assert groups["train"].isdisjoint(groups["validation"])
    assert {s.group for s in discover(split / "train")} == {f"{s.label}/{s.group}" for s in samples
                                                            if s.group in groups["train"]}


def test_unknown_mode_and_bad_fraction(synth, tmp_path):
    with pytest.raises(ValueError, match="mode"):
        make_split(synth, tmp_path, "sideways")
    with pytest.raises(ValueError, match="validation_fraction"):
        make_split(synth, tmp_path, "random", validation_fraction=1.5)
    with pytest.raises(DatasetError, match="--folds 17"):
        make_split(synth, tmp_path, "kfold", folds=17, progress=False)


# ---------------------------------------------------------------- segmentation


@pytest.mark.parametrize("seconds, hop, tail, expected", [
    (10.0, None, "drop", 10), (10.5, None, "drop", 10), (10.5, None, "pad", 11), (10.0, None, "pad", 10),
    (10.0, 0.5, "drop", 19), (0.4, None, "drop", 0), (0.4, None, "pad", 1),
])
def test_clip_counts(seconds, hop, tail, expected):
    rate = 1000
    assert len(clip_starts(int(seconds * rate), rate, int((hop or 1.0) * rate), tail)) == expected


def long_recordings(root):
    """Two recordings per class, 10.5 s at 8 kHz; the second of each has 3.5 s of silence at the end."""
    rng = np.random.default_rng(0)
    rate = 8000
    for label, freq in [("Ae. aegypti", 480.0), ("C. pipiens", 400.0)]:
        for index in range(2):
            folder = root / label / f"cage {index}.v2"
            folder.mkdir(parents=True)
            t = np.arange(int(10.5 * rate)) / rate
            wave = 0.3 * np.sin(2 * np.pi * freq * (1 + 0.05 * index) * t) + 0.01 * rng.standard_normal(len(t))
            if index == 1:
                wave[7 * rate:] = 0.0
            sf.write(folder / f"long rec.{index}.wav", wave, rate)


def test_segmentation_of_long_recordings(tmp_path):
    long_recordings(tmp_path / "data")
    clips = segment_recordings(tmp_path / "data", tmp_path / "clips", SegmentSettings(1.0), progress=False)
    assert len(clips) == 4 * 10
    written = os.stat(clips[0].path).st_mtime_ns
    again = segment_recordings(tmp_path / "data", tmp_path / "clips", SegmentSettings(1.0), progress=False)
    assert again == clips and os.stat(clips[0].path).st_mtime_ns == written  # same settings: reused, not re-cut
    with pytest.raises(FileExistsError):
        segment_recordings(tmp_path / "data", tmp_path / "clips", SegmentSettings(1.0, tail="pad"), progress=False)

    padded = segment_recordings(tmp_path / "data", tmp_path / "padded",
                                SegmentSettings(1.0, hop_seconds=0.5, tail="pad", min_rms_db=-40), progress=False)
    per_recording = Counter(s.group for s in padded)
    assert per_recording["Ae. aegypti/cage 0.v2"] == 20  # starts 0, 0.5, ..., 9.5
    assert per_recording["Ae. aegypti/cage 1.v2"] == 14  # clips starting before 7 s hold sound
    clip = tmp_path / "padded" / "Ae. aegypti" / "cage 0.v2" / "long rec.0_s0019.wav"
    info = sf.info(clip)
    assert info.samplerate == 16000 and info.frames == 16000
    assert [s.group for s in discover(tmp_path / "padded")] == [s.group for s in padded]


def test_split_with_segmentation_keeps_clips_of_a_recording_together(tmp_path):
    long_recordings(tmp_path / "data")
    result = runner.invoke(app, ["split", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
                                 "--mode", "independent", "--validation-fraction", "0.5", "--clip-seconds", "1",
                                 "--min-rms-db", "-40", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "independent" / "split_report.json").read_text())
    assert report["files"] == 2 * (10 + 7) and report["segmentation"]["clip_seconds"] == 1.0
    split = tmp_path / "out" / "independent"
    groups = groups_by_side(split)
    assert groups["train"].isdisjoint(groups["validation"]) and len(groups["validation"]) == 2
    assert not check_split(split / "train", split / "validation").leaks
    rows = read_manifest(split / "manifest.csv")
    by_group = defaultdict(set)
    for row in rows:
        by_group[row["group"]].add(row["side"])
    assert all(len(sides) == 1 for sides in by_group.values())
    random = runner.invoke(app, ["split", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
                                 "--mode", "random", "--clip-seconds", "1", "--min-rms-db", "-40", "--no-progress"])
    assert random.exit_code == 0, random.output  # the clips are reused, not refused


# ---------------------------------------------------------------- real recordings


def test_wingbeats_independent_versus_random(wingbeats, tmp_path):
    independent = quiet_split(wingbeats, tmp_path, "independent", seed=0)
    quiet_split(wingbeats, tmp_path, "random", seed=0)
    assert independent["files"] == 206 and independent["recording_groups"] == 12
    for label, sides in independent["classes"].items():  # two sessions per species: one each side
        assert sides["train"]["groups"] == 1 and sides["validation"]["groups"] == 1, label
    honest = groups_by_side(tmp_path / "independent")
    assert honest["train"].isdisjoint(honest["validation"])
    assert "An. gambiae/Anopheles gambiae_ 5d-7d/D_17_01_23_15_30_14" in honest["train"] | honest["validation"]
    leaky = groups_by_side(tmp_path / "random")
    assert len(leaky["train"] & leaky["validation"]) >= 10

    outputs = {}
    for mode in ("independent", "random"):
        outputs[mode] = runner.invoke(app, ["check-split", str(tmp_path / mode / "train"),
                                            str(tmp_path / mode / "validation"), "--group-by", "parent",
                                            "--no-progress"])
    assert outputs["independent"].exit_code == 0, outputs["independent"].output
    assert outputs["random"].exit_code == 1
    assert "D_17_01_09_15_48_09" in outputs["random"].output
