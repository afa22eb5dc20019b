"""Atomic writes: a reader or an interrupted run sees the old file (or folder) or the new one, never half;
and the check that an output folder can be written, made before any expensive work."""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
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


@dataclass(frozen=True)
class FolderKind:
    """One kind of folder the tool writes, recognised by its files, so that `--overwrite` replaces only
    what the tool itself wrote: a user's folder given as --output by mistake is refused, never deleted.
    `markers`: every such folder holds one of them; `entries` are patterns of every name it may hold at its
    top level (None where the names are the user's, e.g. species folders, and the markers alone decide)."""

    name: str  # with its article: "a member"
    markers: tuple[str, ...]
    entries: tuple[str, ...] | None = None

    def foreign(self, folder: Path) -> list[str]:
        """The entries of `folder` that this kind never writes (a missing marker counts as one)."""
        names = sorted(entry.name for entry in folder.iterdir())
        missing = [] if any((folder / m).exists() for m in self.markers) else [f"no {' or '.join(self.markers)}"]
        if self.entries is None:
            return missing
        return missing + [n for n in names if not any(fnmatch(n, pattern) for pattern in (*self.entries, ".*.tmp*"))]


def check_replaceable(folder: str | Path, kind: FolderKind) -> Path:
    """Refuse, naming the folder, to replace anything but a missing or empty folder or one of `kind`."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return folder
    if not folder.is_dir() or folder.is_symlink():
        raise OutputFolderError(f"{folder}: exists and is not a folder; refusing to replace it, choose another output")
    if not any(folder.iterdir()):
        return folder
    foreign = kind.foreign(folder)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OutputFolderError(f"{folder}: not {kind.name} written by mosquito-ast ({shown}); --overwrite "
                                f"replaces only those, so choose another output folder")
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


def owned(prefix: str) -> str:
    """`prefix` with this process's id: what a killed process leaves is then known as such (`remove_orphans`)."""
    return f"{prefix}{os.getpid()}-"


def process_runs(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would end the process there: nothing is taken for an orphan
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(parent: str | Path, prefix: str) -> None:
    """Delete the temporary files and folders `prefix<pid>-...` in `parent` whose process no longer runs:
    what a kill -9 or a power cut left mid-write (a staging folder, a half `last.ckpt`). Those of running
    processes on this machine are theirs and stay."""
    for entry in Path(parent).glob(f"{glob.escape(prefix)}*"):
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not process_runs(int(pid)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A folder in the system's temp folder, removed afterwards; those a killed process left are removed first."""
    remove_orphans(tempfile.gettempdir(), prefix)
    with tempfile.TemporaryDirectory(prefix=owned(prefix)) as folder:
        yield Path(folder)


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; it replaces `path` when the block succeeds.
    `suffix` keeps the extension that some writers (savefig, np.save) look at."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=owned(f".{path.name}."), suffix=f".tmp{suffix}")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, default_mode())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextmanager
def atomic_directory(folder: str | Path, kind: FolderKind) -> Iterator[Path]:
    """Yield a staging folder beside `folder`; it replaces `folder` (old contents retired) on success.
    An existing `folder` must be empty or of `kind` (`check_replaceable`), checked before and after the work.
    Staging folders of `folder` that a killed run left are removed first."""
    folder = check_replaceable(folder, kind)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(folder.parent, f".{folder.name}.")
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=owned(f".{folder.name}."), suffix=".tmp"))
    try:
        yield staging
        os.chmod(staging, default_mode(directory=True))
        check_replaceable(folder, kind)
        if folder.exists():
            retired = Path(tempfile.mkdtemp(dir=folder.parent, prefix=owned(f".{folder.name}."), suffix=".old"))
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
