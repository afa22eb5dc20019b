"""Walking folders of recordings the same way in the tool and on a device."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable, Iterator


def files_under(folder: str | Path) -> Iterator[Path]:
    """Every file below `folder`, following symbolic links to folders and files: Python 3.11's
    `Path.rglob` does not descend into linked folders, so a session folder linked into a data set was
    dropped without a word. A link back to a folder above it (a cycle), `folder` and the folders above
    `folder` included, is not descended into: a link in a class folder to the data root counted every
    other class's clips under that class."""
    top = Path(folder)
    above = {os.fspath(top): frozenset(_identities(top.resolve().parents))}  # folder -> it and the folders above
    for directory, subfolders, files in os.walk(top, followlinks=True):
        try:
            stat = os.stat(directory)
        except OSError:
            subfolders.clear()
            continue
        chain = above.pop(directory, frozenset()) | {(stat.st_dev, stat.st_ino)}
        kept = []
        for name in sorted(subfolders):
            try:
                child = os.stat(os.path.join(directory, name))
            except OSError:
                continue
            if (child.st_dev, child.st_ino) not in chain:
                kept.append(name)
                above[os.path.join(directory, name)] = chain
        subfolders[:] = kept
        for name in sorted(files):
            yield Path(directory) / name


def _identities(folders: Iterable[Path]) -> Iterator[tuple[int, int]]:
    """(device, inode) of each folder that can be looked at."""
    for folder in folders:
        try:
            stat = os.stat(folder)
        except OSError:
            continue
        yield stat.st_dev, stat.st_ino


def inside_folder(name: str) -> bool:
    """Whether a file name read from a file (model.json's graph) stays inside that file's folder: not
    absolute, no '..'. A copied or downloaded folder could otherwise run a graph from anywhere."""
    relative = PurePosixPath(name.replace("\\", "/"))
    return not (relative.is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive
                or ".." in relative.parts)
