"""The metadata stage's side of ``clipcrop xmp write|clear``: which stored suggestion each photo
under some paths would publish, and the per-photo :class:`Outcome`.

This module takes stored suggestions, never a scorer: photos without current scores are handed
back to the caller (the job layer, :mod:`clipcrop_plugin.jobs`), which scores them first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..photofiles import iter_photo_paths
from ..results import Suggestion
from ..safeio import show
from .atomic import clean_stale_temps
from .writer import WriteResult, host_orientation

if TYPE_CHECKING:
    from ..candidates import AspectRatio
    from ..store import Store

SOURCES = ("auto", "db", "score")
CHUNK = 32  # photos whose folder flushes are shared


@dataclass
class Outcome:
    """What happened to one photo: a :class:`WriteResult`, the files cleared, or an error line."""

    path: str
    result: WriteResult | None = None
    cleared: list[Path] | None = None
    error: str | None = None
    origin: str = ""  # "db" or "scored" for writes

    @property
    def files(self) -> list[str]:
        """The files written or cleared (empty on error or when nothing was there)."""
        if self.result is not None:
            return [str(self.result.path_written)]
        return [str(p) for p in self.cleared or []]


def with_path(path: str | os.PathLike[str], message: str) -> str:
    """``PATH: message`` unless the message already names the photo."""
    p = show(path)  # a newline in a file name must not split the line
    return message if p in message else f"{p}: {message}"


def _has_aspects(s: Suggestion, aspects: Sequence[AspectRatio]) -> bool:
    present = set(s.aspects())
    return all(a.name in present for a in aspects)


def plan_writes(paths: Iterable[str | os.PathLike[str]], *, store: Store | None, aspects: Sequence[AspectRatio] = (),
                source: str = "auto", recursive: bool = True, mode: str | None = None,
                naming: str = "base") -> Iterator[tuple[Path, Suggestion | None, str | None]]:
    """``(photo, stored suggestion, error)`` for every photo under ``paths``.

    The stored suggestion is the photo's current one (its content unchanged, every set of
    ``aspects`` present) when ``source`` allows the store; ``None`` with no error means the photo
    must be scored first; ``source="db"`` turns that into an error line. Temp files a killed
    writer left behind are removed once per folder on the way. With ``mode`` (and ``naming``),
    the metadata the write would merge into is consulted: a stored suggestion scored in another
    frame than the rotation a host keeps there (:func:`~.writer.host_orientation`) is not current.
    """
    from .fromstore import suggestion_from_store

    if source not in SOURCES:
        raise ConfigError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    swept: set[Path] = set()
    for photo in iter_photo_paths(paths, recursive=recursive):
        # Once per folder per run, not per photo (which would list a large folder once per photo).
        if photo.parent not in swept:
            swept.add(photo.parent)
            clean_stale_temps(photo.parent)
        stored = None
        if store is not None and source in ("auto", "db"):
            stored = suggestion_from_store(store, photo)
            if stored is not None and not _has_aspects(stored, aspects):
                stored = None
        turned = host_orientation(photo, mode=mode, naming=naming) if mode and stored is not None else None
        if stored is not None and stored.info is not None and turned is not None and stored.info.orientation != turned:
            if source == "db":
                yield photo, None, f"{photo}: its XMP turns it to orientation {turned}; the stored scores are for another frame"
                continue
            stored = None  # scored upright by EXIF, but the host shows it turned: score it in that frame
        if stored is not None:
            yield photo, stored, None
        elif source == "db":
            yield photo, None, f"{photo}: no current scores in the database (run clipcrop scan first)"
        else:
            yield photo, None, None
