"""Atomic writes: a reader or an interrupted run sees the old file (or folder) or the new one, never half;
and the check that an output folder can be written, made before any expensive work."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


class OutputFolderError(ValueError):
    """An output folder that cannot be created or written; the message names it."""


def check_writable(folder: str | Path) -> Path:
    """Make sure `folder` can be created (where missing) and written, so a run fails at its start rather
    than after hours of work (a read-only mount, a path under a file, a full disk). Nothing is created:
    the test file goes to the nearest folder that exists."""
    folder = Path(folder)
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise OutputFolderError(f"{folder}: cannot write the output here ({error.strerror or error})") from None
    return folder


def check_output_files(*paths: str | Path) -> None:
    """Check before any work that each output file can be written: its folder is writable and the path
    is not a folder (writing there failed only after every recording was scored)."""
    for path in map(Path, paths):
        if path.is_dir():
            raise OutputFolderError(f"{path}: is a folder; --output names the file to write")
        check_writable(path.parent)


def default_mode(directory: bool = False) -> int:
    """Permissions a plain open()/mkdir() would give under the current umask (tempfile uses 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; it replaces `path` when the block succeeds.
    `suffix` keeps the extension that some writers (savefig, np.save) look at."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, default_mode())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextmanager
def atomic_directory(folder: str | Path) -> Iterator[Path]:
    """Yield a staging folder beside `folder`; it replaces `folder` (old contents retired) on success."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        yield staging
        os.chmod(staging, default_mode(directory=True))
        if folder.exists():
            retired = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(folder, retired)
            os.replace(staging, folder)
            shutil.rmtree(retired)
        else:
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
