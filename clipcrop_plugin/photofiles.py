"""What is a photo and what is ignored: the one filter ``scan``, ``suggest`` and the daemon share.

A name is ignored when it is hidden (dot-prefixed: rsync's ``.NAME.XXXXXX``, Syncthing's
``.syncthing.NAME.tmp``, our own ``.NAME.clipcrop-tmp-*``), a copy still in progress
(``*.part``, ``*.tmp``, ``*.crdownload``, ...), a sidecar (``*.xmp``), or a system file or folder
(Synology ``@eaDir``/``#recycle``/``#snapshot``, ``.DS_Store``, ``Thumbs.db``, ...). A folder that
is ignored hides everything below it.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath

# Camera RAW formats LibRaw reads (decoded by clipcrop_plugin.raw, the [raw] extra).
RAW_SUFFIXES = frozenset(
    "." + e for e in
    "dng cr2 cr3 crw nef nrw arw srf sr2 raf orf rw2 pef srw raw rwl iiq 3fr fff x3f erf mef mos mrw kdc dcr".split()
)
PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif", ".hif", ".bmp", ".gif"}
) | RAW_SUFFIXES
# System and bookkeeping names (compared lower-case), as files or as folders.
IGNORED_NAMES = frozenset({
    ".ds_store", "thumbs.db", "desktop.ini", "@eadir", "#recycle", "#snapshot", "$recycle.bin",
    "@recycle", "@recently-snapshot", ".trashes", "lost+found",
})
# Copies in progress, other programs' temp files, sidecars and our own temp files.
IGNORED_PATTERNS = ("~syncthing~*", "~$*", "*.tmp", "*.part", "*.partial", "*.crdownload", "*.download", "*~",
                    "*.xmp", "*.clipcrop-tmp*")


def is_ignored_name(name: str) -> bool:
    """Whether one path component (a file or folder name) is never looked into or scored."""
    low = name.lower()
    if (name.startswith(".") and name not in (".", "..")) or low in IGNORED_NAMES:
        return True
    return any(fnmatch.fnmatchcase(low, pat) for pat in IGNORED_PATTERNS)


def _ignored_dir(name: str) -> bool:
    low = name.lower()
    return (name.startswith(".") and name not in (".", "..")) or low in IGNORED_NAMES


def is_photo_name(name: str) -> bool:
    """Whether a file name found while walking a folder looks like a photo worth scoring."""
    return not is_ignored_name(name) and os.path.splitext(name.lower())[1] in PHOTO_EXTENSIONS


def is_ignored(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> bool:
    """True for paths never to be treated as a photo: an ignored name, or one below an ignored folder.

    Components of ``root`` itself do not count: a user may keep photos in ``~/.photos``.
    """
    pure = PurePath(os.fspath(path))
    if root is not None:
        try:
            pure = pure.relative_to(os.fspath(root))
        except ValueError:
            pass
    parts = pure.parts
    if not parts:
        return True
    return any(_ignored_dir(part) for part in parts[:-1]) or is_ignored_name(parts[-1])


def is_photo_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> bool:
    """Whether an event or walk path names a photo to score (not ignored, a photo extension)."""
    return not is_ignored(path, root) and is_photo_name(os.path.basename(os.fspath(path)))


def iter_photo_paths(paths: Iterable[str | os.PathLike[str]], recursive: bool = True) -> Iterator[Path]:
    """Yield photo files under ``paths`` in a stable (sorted) order.

    Folders are walked, skipping ignored folders and names (see the module docstring); a path
    given directly is always yielded, even with an odd extension or when it does not exist, so
    that its error can be reported for it.
    """
    for raw in paths:
        path = Path(os.fspath(raw))
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not _ignored_dir(d)) if recursive else []
            for name in sorted(files):
                if is_photo_name(name):
                    yield Path(root) / name
