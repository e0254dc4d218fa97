"""Safe file I/O: the one place clipcrop opens input files and replaces output files.

Three rules, used by every entry point (suggest, scan, the daemon, xmp, export, serve):

- **Only regular files are read.** :func:`open_regular` opens with ``O_NONBLOCK`` (a FIFO without
  a writer cannot block the open) and checks the *opened descriptor* with ``fstat`` (no
  check-then-open race), so a FIFO, a device such as ``/dev/zero`` or a directory is refused
  with one line; :func:`read_regular` bounds the size before reading a byte.
- **Writes never go through a symbolic link.** :func:`atomic_write` / :class:`AtomicFile` refuse a
  target that is a link (the link and whatever it points to are left alone) and a file whose mode
  bits say read-only, even for root (a 0444 photo is its owner's "do not touch").
- **Replacement is atomic.** New bytes go to a dot-prefixed temp file in the same folder, are
  fsynced, then renamed over the target (old or new, never half of either); created files get
  ``0644`` minus the umask, replaced files keep their mode and owner.

Temp names look like ``.IMG_1.JPG.clipcrop-tmp-1a2b3c4d``: hidden, recognisable
(:func:`is_temp_name`) so folder watchers ignore them, removable by :func:`clean_stale_temps`.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO

from .errors import ClipcropError, MetadataError

TEMP_MARK = ".clipcrop-tmp-"
NEW_FILE_MODE = 0o644

ErrorFactory = Callable[[str], ClipcropError]

_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ELOOP: "is a symbolic link",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a parent is not a folder",
    errno.EISDIR: "is a directory",
}

# Folders whose fsync is deferred to the end of a :func:`deferred_dir_sync` block.
_PENDING_DIRS: ContextVar[set[Path] | None] = ContextVar("clipcrop_pending_dirs", default=None)


def show(path: str | os.PathLike[str]) -> str:
    """``path`` for a one-line message: control characters (a newline in a file name) escaped."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def reason(exc: OSError) -> str:
    """A short human reason for an ``OSError`` (``permission denied``, ``no space left on device``)."""
    return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


# -- reading ---------------------------------------------------------------------------------


def open_regular(path: str | os.PathLike[str], *, max_bytes: int | None = None,
                 error: ErrorFactory = ClipcropError) -> BinaryIO:
    """Open ``path`` for binary reading if, and only if, it is a regular file (links are followed).

    ``O_NONBLOCK`` makes opening a FIFO return at once; the type check then runs on the opened
    descriptor. ``max_bytes`` refuses a larger file before any byte is read. Failures raise
    ``error("PATH: reason")``; the caller owns (and must close) the returned file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{show(path)}: no such file") from None
    except OSError as exc:
        raise error(f"{show(path)}: cannot read ({reason(exc)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{show(path)}: {_kind(st.st_mode)}")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"{show(path)}: too large ({st.st_size} bytes, the limit is {max_bytes})")
        if flags & getattr(os, "O_NONBLOCK", 0) and hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # regular files ignore it; keeps later reads ordinary
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], max_bytes: int, *, error: ErrorFactory = ClipcropError) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` (checked before and while reading)."""
    with open_regular(path, max_bytes=max_bytes, error=error) as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"{show(path)}: cannot read ({reason(exc)})") from None
    if len(data) > max_bytes:  # it grew after the size check
        raise error(f"{show(path)}: too large (over {max_bytes} bytes)")
    return data


# -- writing ---------------------------------------------------------------------------------


def new_file_mode() -> int:
    """The mode a created file gets: ``0644`` minus the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return NEW_FILE_MODE & ~umask


def writable_by_mode(path: str | os.PathLike[str], st: os.stat_result) -> bool:
    """Whether ``path`` may be replaced: some write bit is set (root included) and ``access`` agrees."""
    if not stat.S_IMODE(st.st_mode) & 0o222:
        return False
    return os.access(path, os.W_OK, follow_symlinks=False)


def check_write_target(path: str | os.PathLike[str], *, error: ErrorFactory = MetadataError) -> os.stat_result | None:
    """Refuse to write ``path`` when it is a symbolic link, not a regular file, or read-only.

    Returns its ``lstat`` (``None`` when it does not exist yet). The message says what was
    left alone, so a user knows nothing was changed.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"cannot write {show(path)}: {reason(exc)}") from None
    if stat.S_ISLNK(st.st_mode):
        raise error(f"{show(path)}: is a symbolic link; refusing to write through it (the link and its target are untouched)")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{show(path)}: {_kind(st.st_mode)}; refusing to replace it")
    if not writable_by_mode(path, st):
        raise error(f"{show(path)}: is read-only (mode {stat.S_IMODE(st.st_mode):04o}); left untouched")
    return st


class AtomicFile:
    """``with AtomicFile(path) as fh: ...`` writes ``path`` atomically from a binary file object.

    On a clean exit the data is fsynced and renamed into place; on an exception the temp file is
    removed and ``path`` is as it was. ``unique=True`` never replaces anything: the file takes
    ``path`` or the first free ``STEM-2.EXT``, ``-3``... (``self.path`` is the name it got).
    ``sync=False`` skips the fsyncs for files that are rewritten constantly and may be lost
    (the daemon's status). OS failures raise ``error("cannot write PATH: reason")``.
    """

    def __init__(self, path: str | os.PathLike[str], *, unique: bool = False, sync: bool = True,
                 error: ErrorFactory = MetadataError) -> None:
        self.path = Path(path)
        self.unique = unique
        self.sync = sync
        self.error = error
        self.tmp = self.path.parent / f".{self.path.name}{TEMP_MARK}{secrets.token_hex(4)}"
        self._fh: BinaryIO | None = None
        self._mode = new_file_mode()
        self._owner: tuple[int, int] | None = None

    def _fail(self, exc: OSError) -> ClipcropError:
        return self.error(f"cannot write {show(self.path)}: {reason(exc)}")

    def __enter__(self) -> BinaryIO:
        if not self.unique:
            st = check_write_target(self.path, error=self.error)
            if st is not None:
                self._mode, self._owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.tmp, flags, 0o600)
        except OSError as exc:
            raise self._fail(exc) from None
        self._fh = os.fdopen(fd, "wb")
        return self._fh

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        fh = self._fh
        assert fh is not None
        if exc is not None:
            fh.close()
            self._discard()
            if isinstance(exc, OSError):
                raise self._fail(exc) from None
            return
        try:
            try:
                fh.flush()
                fd = fh.fileno()
                if hasattr(os, "fchmod"):  # not on Windows
                    os.fchmod(fd, self._mode)
                if self._owner is not None and hasattr(os, "fchown"):
                    try:  # keeps the owner when root writes a user's file; others cannot, and need not
                        os.fchown(fd, *self._owner)
                    except OSError:
                        pass
                if self.sync:
                    os.fsync(fd)
            finally:
                fh.close()
            self.path = self._claim() if self.unique else self._replace()
        except OSError as exc:
            self._discard()
            raise self._fail(exc) from None
        except BaseException:
            self._discard()
            raise
        if self.unique:
            self._discard()
        if self.sync:
            _sync_dir_later_or_now(self.path.parent)

    def _replace(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path

    def _claim(self) -> Path:
        n = 1
        candidate = self.path
        while True:
            try:
                os.link(self.tmp, candidate)  # fails if the name exists (even as a link): no race
                return candidate
            except FileExistsError:
                n += 1
                candidate = self.path.with_name(f"{self.path.stem}-{n}{self.path.suffix}")

    def _discard(self) -> None:
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def atomic_write(path: str | os.PathLike[str], data: bytes, *, sync: bool = True,
                 error: ErrorFactory = MetadataError) -> None:
    """Replace ``path`` with ``data`` atomically, keeping an existing file's permission bits.

    Refuses a symbolic link, a non-regular file and a read-only file. Raises ``error`` (default
    :class:`MetadataError`) with a one-line reason (``no space left on device``, ``read-only
    file system``, ``permission denied``, ...); the old file is then untouched and no temp file
    is left behind.
    """
    with AtomicFile(path, sync=sync, error=error) as fh:
        view = memoryview(data)
        fd = fh.fileno()
        while view:  # os.write, not fh.write: a short write must be seen, never buffered away
            written = os.write(fd, view)
            view = view[written:]


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


def _sync_dir_later_or_now(folder: Path) -> None:
    pending = _PENDING_DIRS.get()
    if pending is None:
        _fsync_dir(folder)
    else:
        pending.add(folder)


def atomic_delete(path: str | os.PathLike[str], *, error: ErrorFactory = MetadataError) -> None:
    """Delete ``path`` (a file clipcrop created), as a one-line error on failure."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(f"cannot delete {show(path)}: {reason(exc)}") from None
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
