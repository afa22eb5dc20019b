import numpy as np
import pytest
import soundfile as sf

from mosquito_ast.data import DatasetError, check_validation_labels, discover, group_of, label_names


def _wav(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.ones(800), 8000)
    return path


def test_folder_per_class_recursive_with_spaces_and_dots(tmp_path):
    _wav(tmp_path / "C. pipiens" / "D_16_12_06" / "a.b c.wav")
    _wav(tmp_path / "An. gambiae" / "age 5d.7d" / "D_17_01_23" / "x.wav")
    _wav(tmp_path / "Ae. aegypti" / "aeg_r01_c003.wav")
    (tmp_path / "Ae. aegypti" / "notes.txt").write_text("not audio")
    samples = discover(tmp_path)
    assert label_names(samples) == ["Ae. aegypti", "An. gambiae", "C. pipiens"]
    groups = {s.label: s.group for s in samples}
    assert groups["An. gambiae"] == "An. gambiae/age 5d.7d/D_17_01_23"
    assert groups["C. pipiens"] == "C. pipiens/D_16_12_06"
    assert groups["Ae. aegypti"] == "aeg_r01"  # file directly in the class folder: first two tokens


def test_manifest_with_group_column(tmp_path):
    _wav(tmp_path / "clips" / "one.wav")
    _wav(tmp_path / "clips" / "two.wav")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,group\nclips/one.wav,b,rec1\nclips/two.wav,a,rec2\n")
    samples = discover(manifest)
    assert [(s.label, s.group) for s in samples] == [("b", "rec1"), ("a", "rec2")]
    assert samples[0].path == str(tmp_path / "clips" / "one.wav")
    assert label_names(samples) == ["a", "b"]


def test_group_rules(tmp_path):
    path = tmp_path / "cls" / "sess" / "F170102_194222_101_G_050.wav"
    assert group_of(path, tmp_path / "cls", "parent") == "cls/sess"
    assert group_of(path, tmp_path / "cls", r"regex:^([^_]+_[^_]+)") == "F170102_194222"
    with pytest.raises(DatasetError, match="does not match"):
        group_of(path, tmp_path / "cls", "regex:^zzz")
    with pytest.raises(DatasetError, match="unknown --group-by"):
        group_of(path, tmp_path / "cls", "folder")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        discover(tmp_path / "missing")
    (tmp_path / "empty class").mkdir()
    with pytest.raises(DatasetError, match="no audio files"):
        discover(tmp_path)
    bad_manifest = tmp_path / "m.csv"
    bad_manifest.write_text("file,species\na.wav,x\n")
    with pytest.raises(DatasetError, match="'path' and 'label'"):
        discover(bad_manifest)


def test_validation_classes_missing_from_training_are_listed():
    from mosquito_ast.data import Sample

    with pytest.raises(DatasetError, match="missing from training: x, y"):
        check_validation_labels(["a"], [Sample("p", "y", "g"), Sample("q", "x", "g"), Sample("r", "a", "g")])
