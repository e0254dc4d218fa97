"""Atomic file replacement: a reader, a crash or a full disk never sees a half-written file.

The new bytes go to a dot-prefixed temp file in the same folder (same filesystem, so the rename
is atomic), are flushed and fsynced, then renamed over the target, and the folder is fsynced so
the rename itself survives a power cut. Temp names look like ``.IMG_1.JPG.clipcrop-tmp-1a2b3c4d``:
hidden, recognisable (:func:`is_temp_name`) so the folder watcher ignores them, and removable
by :func:`clean_stale_temps` after a crash.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from ..errors import MetadataError

TEMP_MARK = ".clipcrop-tmp-"

_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


# Folders whose fsync is deferred to the end of a :func:`deferred_dir_sync` block.
_PENDING_DIRS: ContextVar[set[Path] | None] = ContextVar("clipcrop_pending_dirs", default=None)


@contextmanager
def deferred_dir_sync() -> Iterator[set[Path]]:
    """Within the block, fsync each touched folder once at the end instead of after every rename.

    Safe for the old-or-new guarantee: every file's data is fsynced before its rename, so a crash
    can only lose a rename (leaving the old file), never expose a partial file. Batch writers use
    it to save one folder flush per photo.
    """
    pending: set[Path] = set()
    token = _PENDING_DIRS.set(pending)
    try:
        yield pending
    finally:
        _PENDING_DIRS.reset(token)
        for folder in sorted(pending):
            _fsync_dir(folder)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of our temp files (hidden, contains ``.clipcrop-tmp-``)."""
    return name.startswith(".") and TEMP_MARK in name


def _reason(exc: OSError) -> str:
    return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, keeping an existing file's permission bits.

    Raises :class:`MetadataError` with a one-line reason (``no space left on device``,
    ``read-only file system``, ``permission denied``, ...); the old file is then untouched and
    no temp file is left behind.
    """
    path = Path(path)
    if path.is_symlink():
        # Replace the file the link points to; renaming over the link would turn it into a copy.
        path = Path(os.path.realpath(path))
    folder = path.parent
    owner: tuple[int, int] | None = None
    try:
        st = os.stat(path)
        mode = stat.S_IMODE(st.st_mode)
        owner = (st.st_uid, st.st_gid)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    except OSError as exc:
        raise MetadataError(f"cannot write {path}: {_reason(exc)}") from None
    tmp = folder / f".{path.name}{TEMP_MARK}{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    except OSError as exc:
        raise MetadataError(f"cannot write {path}: {_reason(exc)}") from None
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if hasattr(os, "fchmod"):  # not on Windows
                os.fchmod(fd, mode)
            if owner is not None and hasattr(os, "fchown"):
                try:  # keeps the owner when root writes a user's file; others cannot, and need not
                    os.fchown(fd, *owner)
                except OSError:
                    pass
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise MetadataError(f"cannot write {path}: {_reason(exc)}") from None
    _sync_dir_later_or_now(folder)


def _sync_dir_later_or_now(folder: Path) -> None:
    pending = _PENDING_DIRS.get()
    if pending is None:
        _fsync_dir(folder)
    else:
        pending.add(folder)


def atomic_delete(path: Path) -> None:
    """Delete ``path`` (a sidecar clipcrop created), as a one-line :class:`MetadataError` on failure."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise MetadataError(f"cannot delete {path}: {_reason(exc)}") from None
    _sync_dir_later_or_now(Path(path).parent)


def clean_stale_temps(folder: Path, older_than: float = 600.0, target: str | None = None) -> list[Path]:
    """Delete our temp files in ``folder`` left by a killed writer (older than ``older_than`` s).

    With ``target``, only temp files of that file name. Returns the paths removed.
    """
    removed: list[Path] = []
    cutoff = time.time() - older_than
    prefix = f".{target}{TEMP_MARK}" if target else None
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_temp_name(entry.name) or (prefix and not entry.name.startswith(prefix)):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed
