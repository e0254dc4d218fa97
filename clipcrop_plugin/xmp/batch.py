"""Write or clear crop metadata for many photos: the library behind ``clipcrop xmp write|clear``.

Scores come from the crop database when it already holds them for the photo's current content,
else from the scoring pipeline; one photo's failure is reported for it and never stops the batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..candidates import AspectRatio
from ..errors import ClipcropError, ConfigError
from ..results import Suggestion
from ..safeio import show
from .atomic import clean_stale_temps, deferred_dir_sync
from .writer import WriteResult, clear_crop_metadata, write_crop_metadata

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


def _with_path(path: str | os.PathLike[str], message: str) -> str:
    """``PATH: message`` unless the message already names the photo."""
    p = show(path)  # a newline in a file name must not split the line
    return message if p in message else f"{p}: {message}"


def _rehash(store: object, s: Suggestion, result: WriteResult) -> None:
    """Embedding changed the photo's bytes: file its stored scores under the new content hash,
    so the database still knows the photo (no rescoring, ``--source db`` keeps working)."""
    try:
        st = os.stat(s.path)
        store.record_suggestion(s, result.sha256, mtime=st.st_mtime, size=st.st_size)  # type: ignore[attr-defined]
    except (ClipcropError, OSError) as exc:
        extra = f"database not updated with the new content hash ({exc})"
        result.note = f"{result.note}; {extra}" if result.note else extra


def _has_aspects(s: Suggestion, aspects: Sequence[AspectRatio]) -> bool:
    present = set(s.aspects())
    return all(a.name in present for a in aspects)


def write_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    mode: str = "sidecar",
    naming: str = "ext",
    aspects: Sequence[AspectRatio] = (),
    source: str = "auto",
    store: object | None = None,
    scorer_factory: Callable[[], object] | None = None,
    recursive: bool = True,
    batch_size: int = 8,
) -> Iterator[Outcome]:
    """Write XMP for every photo under ``paths``; yields one :class:`Outcome` per photo.

    ``source``: ``"db"`` uses only stored suggestions, ``"score"`` always scores now, ``"auto"``
    uses the database where it is current and scores the rest. ``scorer_factory`` is called at
    most once, and only when something needs scoring.
    """
    from ..suggest import iter_photo_paths, suggest_paths
    from .fromstore import suggestion_from_store

    if source not in SOURCES:
        raise ConfigError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    names = [a.name for a in aspects] or None
    to_score: list[Path] = []
    jobs: list[Callable[[], Outcome]] = []

    def write(s: Suggestion, origin: str) -> Outcome:
        try:
            result = write_crop_metadata(s.path, s, mode=mode, naming=naming, aspects=names)
        except ClipcropError as exc:
            return Outcome(s.path, error=_with_path(s.path, str(exc)), origin=origin)
        if origin == "db" and result.mode_used == "embed":
            _rehash(store, s, result)
        return Outcome(s.path, result, origin=origin)

    swept: set[Path] = set()

    def sweep(folder: Path) -> None:
        # Temp files a killed writer left behind: removed once per folder per run (not per photo,
        # which would list a large folder once for every photo in it).
        if folder not in swept:
            swept.add(folder)
            clean_stale_temps(folder)

    def flush() -> list[Outcome]:
        # One folder fsync per chunk instead of one per photo; file data is still fsynced per file.
        with deferred_dir_sync():
            done = [job() for job in jobs]
        jobs.clear()
        return done

    for photo in iter_photo_paths(paths, recursive=recursive):
        sweep(photo.parent)
        stored = None
        if store is not None and source in ("auto", "db"):
            stored = suggestion_from_store(store, photo)
            if stored is not None and not _has_aspects(stored, aspects):
                stored = None
        if stored is not None:
            jobs.append(lambda s=stored: write(s, "db"))
        elif source == "db":
            msg = f"{photo}: no current scores in the database (run clipcrop scan first)"
            jobs.append(lambda p=photo, m=msg: Outcome(str(p), error=m))
        else:
            to_score.append(photo)
        if len(jobs) >= CHUNK:
            yield from flush()
    yield from flush()
    if not to_score:
        return
    if scorer_factory is None:
        for photo in to_score:
            yield Outcome(str(photo), error=f"{photo}: not scored and no scorer available")
        return
    scorer = scorer_factory()
    for s in suggest_paths(to_score, scorer, aspects, batch_size=batch_size):  # type: ignore[arg-type]
        jobs.append((lambda s=s: write(s, "scored")) if s.ok else
                    (lambda s=s: Outcome(s.path, error=_with_path(s.path, s.error or "not scored"), origin="scored")))
        if len(jobs) >= max(1, batch_size):
            yield from flush()
    yield from flush()


def clear_paths(paths: Iterable[str | os.PathLike[str]], *, mode: str = "all", naming: str | None = None,
                recursive: bool = True) -> Iterator[Outcome]:
    """Clear clipcrop's XMP for every photo under ``paths``; yields one :class:`Outcome` per photo."""
    from ..suggest import iter_photo_paths

    for photo in iter_photo_paths(paths, recursive=recursive):
        try:
            yield Outcome(str(photo), cleared=clear_crop_metadata(photo, mode=mode, naming=naming))
        except ClipcropError as exc:
            yield Outcome(str(photo), error=_with_path(photo, str(exc)))
