"""Symbolic links to folders and files are followed when clips and members are discovered, and a link
cycle neither hangs nor repeats anything."""

import shutil

import pytest

from mosquito_ast.data import DatasetError, discover
from mosquito_ast_lite.files import files_under
from mosquito_ast.inference.members import find_member_folders, load_members
from mosquito_ast.commands.predict import expand_inputs
from mosquito_ast.data import discover_unlabelled


def _tree(tmp_path):
    """data/aedes/s1 (real), data/aedes/s2 -> elsewhere/s2 (linked session), a linked file, a broken
    link, and a cycle data/aedes/s1/back -> data/aedes."""
    elsewhere = tmp_path / "elsewhere"
    for folder, names in {tmp_path / "data" / "aedes" / "s1": ["a.wav", "b.wav"],
                          elsewhere / "s2": ["c.wav", "d.wav"], tmp_path / "data" / "culex" / "s3": ["e.wav"],
                          elsewhere / "loose": ["f.wav"]}.items():
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_bytes(b"RIFF")  # discovery never decodes
    data = tmp_path / "data"
    (data / "aedes" / "s2").symlink_to(elsewhere / "s2", target_is_directory=True)
    (data / "culex" / "s3" / "f.wav").symlink_to(elsewhere / "loose" / "f.wav")
    (data / "culex" / "s3" / "gone.wav").symlink_to(tmp_path / "missing.wav")
    (data / "aedes" / "s1" / "back").symlink_to(data / "aedes", target_is_directory=True)
    return data


def test_linked_session_folders_and_files_are_discovered_once(tmp_path):
    data = _tree(tmp_path)
    samples = discover(data)
    found = {(s.label, s.group, s.path[len(str(data)) + 1:]) for s in samples}
    assert found == {("aedes", "aedes/s1", "aedes/s1/a.wav"), ("aedes", "aedes/s1", "aedes/s1/b.wav"),
                     ("aedes", "aedes/s2", "aedes/s2/c.wav"), ("aedes", "aedes/s2", "aedes/s2/d.wav"),
                     ("culex", "culex/s3", "culex/s3/e.wav"), ("culex", "culex/s3", "culex/s3/f.wav")}
    assert len(samples) == len(found)
    assert len(discover_unlabelled(data)) == 6
    assert len(expand_inputs([data / "aedes"])) == 4
    everything = [p.relative_to(data).as_posix() for p in files_under(data)]
    assert len(everything) == len(set(everything)) and not any("back" in p for p in everything)


def test_linked_member_folders_are_found(tiny_member, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_member, tmp_path / "models" / "a")
    shutil.copytree(tiny_member, elsewhere / "b")
    models = tmp_path / "models"
    (models / "b").symlink_to(elsewhere / "b", target_is_directory=True)
    (models / "loop").symlink_to(models, target_is_directory=True)
    assert [p.name for p in find_member_folders(models)] == ["a", "b"]
    assert [m.name for m in load_members(models)] == ["a", "b"]

    only_links = tmp_path / "only-links"
    only_links.mkdir()
    (only_links / "b").symlink_to(elsewhere / "b", target_is_directory=True)
    assert [m.name for m in load_members(only_links)] == ["b"]


def test_a_link_to_the_data_root_counts_no_other_class(tmp_path):
    data = _tree(tmp_path)
    (data / "aedes" / "s1" / "root").symlink_to(data, target_is_directory=True)
    (data / "aedes" / "s1" / "up").symlink_to(tmp_path, target_is_directory=True)
    samples = discover(data)
    assert sorted(s.path[len(str(data)) + 1:] for s in samples if s.label == "aedes") == [
        "aedes/s1/a.wav", "aedes/s1/b.wav", "aedes/s2/c.wav", "aedes/s2/d.wav"]
    assert len(samples) == 6
    assert len(expand_inputs([data / "aedes"])) == 4


def test_a_link_into_another_class_folder_is_refused(tmp_path):
    data = _tree(tmp_path)
    (data / "aedes" / "s1" / "borrowed").symlink_to(data / "culex" / "s3", target_is_directory=True)
    with pytest.raises(DatasetError, match=r"aedes/s1/borrowed/e.wav \(class aedes\) and .*culex/s3/e.wav \(class "
                                           r"culex\) are one file, reached through a link; a clip belongs to one"):
        discover(data)
