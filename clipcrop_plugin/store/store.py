"""The ``Store``: the one API the CLI, daemon, server and trainer use to read and write the database.

Writes are short transactions opened with ``BEGIN IMMEDIATE`` on SQLite (WAL mode, 30 s busy
timeout) and retried on a transient "database is locked", so a daemon and a CLI can write at once.
Batches of scored photos go through the bulk path (:mod:`clipcrop_plugin.store.bulk`); the
records returned are in :mod:`clipcrop_plugin.store.records`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.sql.elements import ColumnElement

from ..config import Settings
from ..elements import ELEMENT_NAMES
from ..errors import ConfigError, StoreError
from ..results import Box, ElementChange, Subject, Suggestion
from . import bulk, migrate
from .engine import WRITE_OPTION, make_engine, resolve_url
from .models import (
    CROPS,
    EXPLANATIONS,
    LABEL_KINDS,
    LABELS,
    METADATA_HOLDS,
    MODEL_VERSIONS,
    PHOTOS,
    RUNS,
    utcnow,
    weights_key,
)
from .packing import unpack_subjects
from .queries import _PREFIX_END, QueryFilters, build_query
from .records import (
    CropRecord,
    FileRecord,
    LabelRecord,
    ModelVersionRecord,
    PhotoDetail,
    PhotoSummary,
    crop_from_row,
    decode_run,
    file_record_from_row,
    label_from_row,
    model_version_from_row,
    run_from_row,
    summary_from_row,
)

log = logging.getLogger("clipcrop.store")


def _distinct(paths: Iterable[str]) -> list[str]:
    """``paths`` as strings, each once, in first-seen order."""
    return list(dict.fromkeys(str(p) for p in paths))

# Built once: a statement object per call would cost more than the query itself.
_EXPLANATIONS_SQL = (
    select(EXPLANATIONS.c.crop_id, EXPLANATIONS.c.position, EXPLANATIONS.c.element, EXPLANATIONS.c.change)
    .where(EXPLANATIONS.c.crop_id.in_(bindparam("ids", expanding=True)))
    .order_by(EXPLANATIONS.c.crop_id, EXPLANATIONS.c.position)
)


def _under(folder: str) -> ColumnElement[bool]:
    """Photos in ``folder`` or below it: a range over the unique path index."""
    folder = str(folder).rstrip("/") or "/"
    return (PHOTOS.c.folder == folder) | ((PHOTOS.c.path >= folder + "/") & (PHOTOS.c.path < folder + "/" + _PREFIX_END))


class Store:
    """The crop database. Open with :meth:`Store.open`; use as a context manager or call ``close``."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name

    # -- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None, *, settings: Settings | None = None, upgrade: bool = True) -> Store:
        """Open (creating if needed) the database at ``url`` / ``$CLIPCROP_DB`` / the settings.

        With ``upgrade`` (the default) an older schema is migrated to head, a SQLite file being
        backed up first; without it, an out-of-date schema raises. A database newer than this
        code, or a file that is not a database, raises :class:`StoreError` and is left untouched.
        """
        resolved = resolve_url(url, settings)
        engine = make_engine(resolved)
        try:
            if upgrade:
                backup = migrate.upgrade(engine)
                if backup:
                    log.warning("upgraded the database schema; the previous version was saved as %s", backup)
            else:
                current, head = migrate.check_revision(engine)
                if current != head:
                    raise StoreError(
                        f"the database schema is at revision {current or 'none'}, this clipcrop needs {head};"
                        " run `clipcrop db upgrade`"
                    )
        except DatabaseError as exc:
            engine.dispose()
            raise StoreError(f"cannot open database {resolved}: {exc.orig or exc}") from exc
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, resolved)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def revision(self) -> str | None:
        """The schema revision stamped in the database."""
        return migrate.current_revision(self.engine)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction, retried a few times on a transient lock (beyond the busy timeout)."""
        for attempt in range(5):
            try:
                with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
                    with conn.begin():
                        yield conn
                return
            except OperationalError as exc:
                if "locked" not in str(exc.orig).lower() or attempt == 4:
                    raise StoreError(f"database write failed: {exc.orig}") from exc
                time.sleep(0.05 * 2**attempt)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # -- writing scores -------------------------------------------------------------------------

    def record_suggestion(
        self, suggestion: Suggestion, content_hash: str, *, mtime: float | None = None, size: int | None = None
    ) -> int:
        """Store one scored photo (one transaction); the new run becomes its active run.

        Runs of the same scorer+weights, and runs of an older content of the file, are replaced;
        runs of other scorers for the same content are kept. Returns the photo id. A failed
        suggestion (``ok`` false) is recorded as a failure.
        """
        return self.record_suggestions([(suggestion, content_hash, mtime, size)])[0]

    def record_suggestions(self, items: Iterable[bulk.Item]) -> list[int]:
        """Store many ``(suggestion, content_hash, mtime, size)`` in one transaction (bulk path,
        :mod:`clipcrop_plugin.store.bulk`). Returns the photo ids in input order."""
        with self._write() as conn:
            return bulk.record_batch(conn, items)

    def record_failure(
        self, path: str, reason: str, content_hash: str | None = None, *, mtime: float | None = None,
        size: int | None = None,
    ) -> int:
        """Record that ``path`` could not be scored, with a one-line ``reason``. Earlier runs are kept."""
        with self._write() as conn:
            photo_id = bulk.upsert_failure(conn, str(path), reason, content_hash, mtime, size)
            bulk.link_pairs(conn, [str(path)])
            return photo_id

    def record_pending(self, path: str, *, content_hash: str | None = None) -> int:
        """Note a photo as found but not yet scored (the daemon's queue)."""
        with self._write() as conn:
            photo_id = conn.execute(select(PHOTOS.c.id).where(PHOTOS.c.path == str(path))).scalar()
            if photo_id is not None:
                return int(photo_id)
            return int(conn.execute(insert(PHOTOS).values(
                path=str(path), folder=str(Path(path).parent), content_hash=content_hash, status="pending",
                offline=False, created_at=utcnow(), updated_at=utcnow(),
            )).inserted_primary_key[0])

    # -- identity: hashes, moves, gone/offline --------------------------------------------------

    def find_path(self, path: str) -> FileRecord | None:
        """The photo stored at ``path``, if any."""
        with self._read() as conn:
            row = conn.execute(select(PHOTOS).where(PHOTOS.c.path == str(path))).first()
        return file_record_from_row(row) if row else None

    def find_by_hash(self, content_hash: str) -> list[FileRecord]:
        """Every photo row whose content hash is ``content_hash``."""
        statement = select(PHOTOS).where(PHOTOS.c.content_hash == content_hash).order_by(PHOTOS.c.id)
        with self._read() as conn:
            return [file_record_from_row(row) for row in conn.execute(statement)]

    def photos_under(self, folder: str) -> list[FileRecord]:
        """Every photo at or below ``folder`` (absolute path)."""
        with self._read() as conn:
            return [file_record_from_row(row) for row in conn.execute(select(PHOTOS).where(_under(folder)))]

    def is_scored(self, content_hash: str, scorer: str, weights_hash: str | None,
                  sets: Collection[str] | None = None) -> bool:
        """Whether some run scored this content with this scorer and weights (and, when ``sets``
        is given, whether the newest such run has every one of those candidate sets)."""
        if sets:
            found = self.run_sets(content_hash, scorer, weights_hash)
            return found is not None and set(sets) <= found
        statement = select(RUNS.c.id).where(RUNS.c.content_hash == content_hash, RUNS.c.scorer == scorer,
                                            RUNS.c.weights_hash == weights_key(weights_hash)).limit(1)
        with self._read() as conn:
            return conn.execute(statement).first() is not None

    def run_sets(self, content_hash: str, scorer: str, weights_hash: str | None) -> frozenset[str] | None:
        """The candidate sets (``grid``, ``1:1``, ...; not ``full``) of the newest run of this
        content by this scorer and weights, or ``None`` when there is no such run."""
        newest = select(func.max(RUNS.c.id)).where(RUNS.c.content_hash == content_hash, RUNS.c.scorer == scorer,
                                                    RUNS.c.weights_hash == weights_key(weights_hash))
        with self._read() as conn:
            run_id = conn.execute(newest).scalar()
            if run_id is None:
                return None
            rows = conn.execute(select(CROPS.c.aspect).where(CROPS.c.run_id == run_id, CROPS.c.rank == 1).distinct())
            return frozenset(aspect for (aspect,) in rows) - {"full"}

    def active_scorer(self, photo_id: int) -> tuple[str, str | None] | None:
        """(scorer, weights_hash) of the photo's active run, or ``None`` when it has none."""
        with self._read() as conn:
            row = conn.execute(select(RUNS.c.scorer, RUNS.c.weights_hash).where(
                RUNS.c.photo_id == photo_id, RUNS.c.active == True)).first()  # noqa: E712
        return (row.scorer, row.weights_hash or None) if row else None

    def activate(self, photo_id: int, scorer: str, weights_hash: str | None) -> bool:
        """Make the photo's newest run of ``scorer``+weights its active run; False if it has none."""
        with self._write() as conn:
            return self._activate(conn, photo_id, scorer, weights_key(weights_hash))

    def _activate(self, conn: Connection, photo_id: int, scorer: str, weights: str) -> bool:
        run_id = conn.execute(select(func.max(RUNS.c.id)).where(
            RUNS.c.photo_id == photo_id, RUNS.c.scorer == scorer, RUNS.c.weights_hash == weights)).scalar()
        if run_id is None:
            return False
        conn.execute(update(RUNS).where(RUNS.c.photo_id == photo_id).values(active=RUNS.c.id == run_id))
        conn.execute(update(CROPS).where(CROPS.c.photo_id == photo_id).values(active=CROPS.c.run_id == run_id))
        conn.execute(update(PHOTOS).where(PHOTOS.c.id == photo_id).values(status="scored", error=None))
        return True

    def set_active_scorer(self, scorer: str, weights_hash: str | None) -> int:
        """Switch every photo that has a run of ``scorer``+weights to it; returns how many photos."""
        weights = weights_key(weights_hash)
        with self._write() as conn:
            photo_ids = conn.execute(select(RUNS.c.photo_id).where(
                RUNS.c.scorer == scorer, RUNS.c.weights_hash == weights).distinct()).scalars().all()
            for photo_id in photo_ids:
                self._activate(conn, photo_id, scorer, weights)
        return len(photo_ids)

    def relink(self, content_hash: str, new_path: str, *, mtime: float | None = None,
               size: int | None = None) -> int | None:
        """Point the stored photo with this content at ``new_path`` (a move or rename).

        Prefers a row whose old path no longer exists on disk; returns its id, or ``None`` when
        no stored photo has this content. If ``new_path`` already has its own row, that row is
        replaced by the relinked one (its scores were for older content).
        """
        with self._write() as conn:
            rows = conn.execute(select(PHOTOS).where(PHOTOS.c.content_hash == content_hash)
                                .order_by(PHOTOS.c.id)).all()
            rows = [row for row in rows if row.path != str(new_path)]
            if not rows:
                return None
            gone = [row for row in rows if not os.path.exists(row.path)]
            if not gone:  # the original is still there: this is a copy, not a move
                return None
            moved = gone[0]
            conn.execute(delete(PHOTOS).where(PHOTOS.c.path == str(new_path)))
            conn.execute(update(PHOTOS).where(PHOTOS.c.id == moved.id).values(
                path=str(new_path), folder=str(Path(new_path).parent), status="scored"
                if moved.status in ("gone", "offline", "scored") else moved.status,
                offline=False, mtime=mtime, size=size, updated_at=utcnow(),
            ))
            return int(moved.id)

    def copy_scores(self, photo_id: int, new_path: str, *, mtime: float | None = None,
                    size: int | None = None) -> int:
        """Give a duplicate file (same content, new path) its own row with a copy of the active run."""
        with self._write() as conn:
            original = conn.execute(select(PHOTOS).where(PHOTOS.c.id == photo_id)).first()
            if original is None:
                raise StoreError(f"no photo with id {photo_id}")
            values = {key: getattr(original, key) for key in PHOTOS.c.keys()
                      if key not in ("id", "path", "folder", "created_at")}
            values.update(folder=str(Path(new_path).parent), mtime=mtime, size=size, offline=False,
                          updated_at=utcnow())
            conn.execute(delete(PHOTOS).where(PHOTOS.c.path == str(new_path)))
            new_id = int(conn.execute(insert(PHOTOS).values(path=str(new_path), created_at=utcnow(), **values))
                         .inserted_primary_key[0])
            run = conn.execute(select(RUNS).where(RUNS.c.photo_id == photo_id,
                                                  RUNS.c.active == True)).first()  # noqa: E712
            if run is None:
                return new_id
            run_values = {key: getattr(run, key) for key in RUNS.c.keys() if key != "id"}
            run_values["photo_id"] = new_id
            new_run_id = conn.execute(insert(RUNS).values(**run_values)).inserted_primary_key[0]
            crop_rows = conn.execute(select(CROPS).where(CROPS.c.run_id == run.id).order_by(CROPS.c.id)).all()
            for crop_row in crop_rows:
                crop_values = {key: getattr(crop_row, key) for key in CROPS.c.keys() if key != "id"}
                crop_values.update(run_id=new_run_id, photo_id=new_id)
                new_crop_id = conn.execute(insert(CROPS).values(**crop_values)).inserted_primary_key[0]
                changes = conn.execute(select(EXPLANATIONS).where(EXPLANATIONS.c.crop_id == crop_row.id)).all()
                if changes:
                    conn.execute(insert(EXPLANATIONS), [
                        dict(crop_id=new_crop_id, position=change.position, element=change.element,
                             change=change.change) for change in changes])
            return new_id

    def mark_seen(self, photo_id: int, *, mtime: float | None, size: int | None) -> None:
        """Remember what a scan saw on disk for an unchanged photo (and clear gone/offline)."""
        with self._write() as conn:
            conn.execute(update(PHOTOS).where(PHOTOS.c.id == photo_id).values(mtime=mtime, size=size, offline=False))
            conn.execute(update(PHOTOS).where(PHOTOS.c.id == photo_id, PHOTOS.c.status.in_(("gone", "offline")))
                         .values(status="scored"))

    def content_changed(self, path: str, content_hash: str, *, mtime: float | None, size: int | None) -> bool:
        """Our own metadata write changed the bytes of the photo at ``path`` (embedding XMP, or
        clearing it), not its picture: file its runs of the previous content under the new hash,
        so the next scan recognises the photo instead of scoring it again. False when unknown."""
        with self._write() as conn:
            row = conn.execute(select(PHOTOS.c.id, PHOTOS.c.content_hash).where(PHOTOS.c.path == str(path))).first()
            if row is None:
                return False
            if row.content_hash and row.content_hash != content_hash:
                conn.execute(update(RUNS).where(RUNS.c.photo_id == row.id, RUNS.c.content_hash == row.content_hash)
                             .values(content_hash=content_hash))
            conn.execute(update(PHOTOS).where(PHOTOS.c.id == row.id)
                         .values(content_hash=content_hash, mtime=mtime, size=size))
            return True

    def hold_metadata(self, paths: Iterable[str]) -> None:
        """Record that the crop metadata of ``paths`` is owed (see :class:`~.models.MetadataHold`);
        committed on its own, before the scores it is about."""
        rows = [{"path": p, "held_at": utcnow()} for p in _distinct(paths)]
        if not rows:
            return
        with self._write() as conn:
            # Two writers may hold the same photo at once (two scans of one library): a path
            # already held stays held, never an integrity error.
            # (The store runs on SQLite and PostgreSQL only; both have ON CONFLICT.)
            dialect_insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
            conn.execute(dialect_insert(METADATA_HOLDS).on_conflict_do_nothing(index_elements=["path"]), rows)

    def release_metadata(self, paths: Iterable[str]) -> None:
        """The metadata of ``paths`` was written (or attempted, with its error reported)."""
        names = _distinct(paths)
        if not names:
            return
        with self._write() as conn:
            conn.execute(delete(METADATA_HOLDS).where(METADATA_HOLDS.c.path.in_(bindparam("paths", expanding=True))),
                         {"paths": names})

    def held_metadata(self, paths: Iterable[str] | None = None) -> set[str]:
        """The paths whose metadata is owed: all of them, or those among ``paths``. Normally
        empty: a hold outlives its batch only when the writer was killed mid-batch."""
        statement = select(METADATA_HOLDS.c.path)
        params: dict[str, Any] = {}
        if paths is not None:
            names = _distinct(paths)
            if not names:
                return set()
            statement = statement.where(METADATA_HOLDS.c.path.in_(bindparam("paths", expanding=True)))
            params["paths"] = names
        with self._read() as conn:
            return set(conn.execute(statement, params).scalars())

    def mark_gone(self, path: str) -> bool:
        """The file at ``path`` was deleted: keep its scores (a move may relink them) but flag it."""
        with self._write() as conn:
            return conn.execute(update(PHOTOS).where(PHOTOS.c.path == str(path)).values(
                status="gone", updated_at=utcnow())).rowcount > 0

    def mark_offline(self, folder_prefix: str) -> int:
        """Photos under an unmounted/unreachable folder: flagged offline, never treated as deleted."""
        return self._set_offline(folder_prefix, True)

    def mark_online(self, folder_prefix: str) -> int:
        """Undo :meth:`mark_offline` for the folder."""
        return self._set_offline(folder_prefix, False)

    def _set_offline(self, folder: str, flag: bool) -> int:
        with self._write() as conn:
            return conn.execute(update(PHOTOS).where(_under(folder)).values(offline=flag)).rowcount

    # -- reading --------------------------------------------------------------------------------

    def query(self, filters: QueryFilters | None = None, *, sort: str = "improvement", limit: int | None = 50,
              offset: int = 0) -> list[PhotoSummary]:
        """Photos matching ``filters`` with their selected crop, sorted (``improvement``, ``score``,
        ``path``, ``taken``); ``limit=None`` for all."""
        statement = build_query(filters or QueryFilters(), sort, self.dialect)
        if limit is not None:
            statement = statement.limit(int(limit))
        if offset:
            statement = statement.offset(int(offset))
        with self._read() as conn:
            rows = conn.execute(statement).all()
            explanations = self._explanations(conn, [row.crop_id for row in rows if row.crop_id is not None])
        return [summary_from_row(row, explanations) for row in rows]

    def count(self, filters: QueryFilters | None = None, *, sort: str = "path") -> int:
        """How many photos :meth:`query` with the same ``sort`` would return without a limit
        (score sorts list scored photos only)."""
        statement = build_query(filters or QueryFilters(), sort, self.dialect, count=True)
        with self._read() as conn:
            return int(conn.execute(statement).scalar() or 0)

    def status_counts(self) -> dict[str, int]:
        """Number of photos per status."""
        statement = select(PHOTOS.c.status, func.count()).group_by(PHOTOS.c.status)
        with self._read() as conn:
            return {status: int(n) for status, n in conn.execute(statement)}

    def _explanations(self, conn: Connection, crop_ids: list[int]) -> dict[int, list[ElementChange]]:
        """The stored top-3 element changes of each crop id, in position order."""
        out: dict[int, list[ElementChange]] = {}
        for start in range(0, len(crop_ids), 500):
            chunk = crop_ids[start:start + 500]
            for crop_id, _position, element, change in conn.execute(_EXPLANATIONS_SQL, {"ids": chunk}):
                out.setdefault(crop_id, []).append(ElementChange(ELEMENT_NAMES[element], float(change)))
        return out

    def subjects_of(self, photo_ids: Sequence[int]) -> dict[int, list[Subject]]:
        """The active run's subjects of each photo in ``photo_ids`` (one query; photos without
        subject data map to ``[]``), for pages that list many photos."""
        out: dict[int, list[Subject]] = {int(i): [] for i in photo_ids}
        ids = list(out)
        with self._read() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(select(RUNS.c.photo_id, RUNS.c.subjects).where(
                    RUNS.c.photo_id.in_(ids[start:start + 500]), RUNS.c.active == True))  # noqa: E712
                for photo_id, blob in rows:
                    out[int(photo_id)] = unpack_subjects(blob)
        return out

    def scorers_used(self) -> list[str]:
        """Names of the scorers that have runs in this database, sorted."""
        with self._read() as conn:
            return sorted(name for (name,) in conn.execute(select(RUNS.c.scorer).distinct()))

    def active_aspects(self) -> list[str]:
        """Candidate sets present in the active runs, ``grid`` first, then ratios (not ``full``)."""
        statement = select(CROPS.c.aspect).where(CROPS.c.rank == 1, CROPS.c.active.is_(True)).distinct()
        with self._read() as conn:
            found = {aspect for (aspect,) in conn.execute(statement)} - {"full"}
        return sorted(found, key=lambda aspect: (aspect != "grid", aspect))

    def best_crop(self, photo: str | int, aspect: str | None = None) -> CropRecord | None:
        """The active run's best crop of ``photo`` (rank 1 of ``aspect`` when given), without
        decoding the other candidates: one indexed lookup."""
        ref = self.resolve_photo(photo)
        where = [CROPS.c.photo_id == ref.id, CROPS.c.active == True]  # noqa: E712
        where += [CROPS.c.aspect == aspect, CROPS.c.rank == 1] if aspect else [CROPS.c.best == True]  # noqa: E712
        statement = (select(CROPS, PHOTOS.c.width, PHOTOS.c.height)
                     .join(PHOTOS, PHOTOS.c.id == CROPS.c.photo_id).where(*where).limit(1))
        with self._read() as conn:
            row = conn.execute(statement).first()
            if row is None:
                return None
            explanations = self._explanations(conn, [row.id])
        return crop_from_row(row, row.width, row.height, explanations.get(row.id, []))

    def resolve_photo(self, photo: str | int) -> FileRecord:
        """A photo by id, exact path, or a path relative to the current folder; ``StoreError`` if unknown."""
        with self._read() as conn:
            row = None
            if isinstance(photo, int) or (isinstance(photo, str) and photo.isdigit() and not os.path.exists(photo)):
                row = conn.execute(select(PHOTOS).where(PHOTOS.c.id == int(photo))).first()
            if row is None:
                for candidate in (str(photo), os.path.abspath(str(photo)), os.path.realpath(str(photo))):
                    row = conn.execute(select(PHOTOS).where(PHOTOS.c.path == candidate)).first()
                    if row is not None:
                        break
        if row is None:
            raise StoreError(f"{photo} is not in the database (scan its folder first)")
        return file_record_from_row(row)

    def photo_detail(self, photo: str | int) -> PhotoDetail:
        """Everything about one photo: every candidate of the active run, best per set, labels, runs."""
        ref = self.resolve_photo(photo)
        with self._read() as conn:
            photo_row = conn.execute(select(PHOTOS).where(PHOTOS.c.id == ref.id)).one()
            run_rows = conn.execute(select(RUNS).where(RUNS.c.photo_id == ref.id).order_by(RUNS.c.id.desc())).all()
            run = next((row for row in run_rows if row.active), run_rows[0] if run_rows else None)
            crop_rows = conn.execute(select(CROPS).where(CROPS.c.run_id == run.id)).all() if run is not None else []
            explanations = self._explanations(conn, [row.id for row in crop_rows])
        best_row = next((row for row in crop_rows if row.best), None)
        summary = PhotoSummary(photo_row.id, photo_row.path, photo_row.folder, photo_row.status, photo_row.error,
                               bool(photo_row.offline), photo_row.width, photo_row.height, photo_row.taken_at,
                               photo_row.camera_make, photo_row.camera_model, photo_row.content_hash,
                               run.id if run is not None else None, None)
        candidates: list[CropRecord] = []
        best: dict[str, CropRecord] = {}
        full: CropRecord | None = None
        if run is not None:
            candidates = decode_run(run, {(row.aspect, row.rank): row for row in crop_rows}, explanations)
            for crop in candidates:
                if crop.aspect == "full":
                    full = crop
                elif crop.rank == 1 and crop.aspect not in best:
                    best[crop.aspect] = crop
            if best_row is not None:
                summary.crop = next((crop for crop in candidates
                                     if crop.aspect == best_row.aspect and crop.rank == best_row.rank), None)
        runs = [run_from_row(row) for row in run_rows]
        active = next((record for record in runs if run is not None and record.id == run.id), None)
        subjects = unpack_subjects(run.subjects) if run is not None else []
        return PhotoDetail(summary, photo_row.orientation, photo_row.format, active, runs, full, best, candidates,
                           self.labels(photo_id=ref.id), subjects)

    # -- labels ---------------------------------------------------------------------------------

    def add_label(
        self, photo: str | int, kind: str, rank: int | None = None, box: Box | None = None,
        other: Box | None = None, *, aspect: str | None = None, other_rank: int | None = None,
        source: str = "cli", model_version_id: int | None = None,
    ) -> int:
        """Store a label. ``accept``/``reject``: candidate ``rank`` of ``aspect`` (default: the best
        crop; ``rank`` alone means rank in the best crop's set); ``box``: a user-drawn ``box``;
        ``prefer``: ``box`` (or ``rank``) preferred over ``other`` (or ``other_rank``).
        Boxes are checked against the photo's upright size."""
        if kind not in LABEL_KINDS:
            raise ConfigError(f"unknown label kind {kind!r}; choose one of {', '.join(LABEL_KINDS)}")
        detail = self.photo_detail(photo)
        width, height = detail.photo.width, detail.photo.height

        def pick(wanted_rank: int | None, wanted_set: str | None) -> CropRecord:
            if detail.run is None:
                raise StoreError(f"{detail.photo.path} has no scored crops to label by rank")
            wanted_set = wanted_set or (detail.photo.crop.aspect if detail.photo.crop else None)
            wanted_rank = wanted_rank or 1
            for candidate in detail.candidates:
                if candidate.aspect == wanted_set and candidate.rank == wanted_rank:
                    return candidate
            raise ConfigError(f"{detail.photo.path} has no candidate of rank {wanted_rank} in set {wanted_set}")

        def check(given: Box) -> Box:
            b = tuple(int(v) for v in given)
            if (len(b) != 4 or b[0] >= b[2] or b[1] >= b[3] or min(b) < 0 or (width and b[2] > width)
                    or (height and b[3] > height)):
                raise ConfigError(f"box {','.join(map(str, b))} is not inside the {width}x{height} photo"
                                  " (x1,y1,x2,y2)")
            return b  # type: ignore[return-value]

        values: dict[str, Any] = dict(kind=kind, source=source, width=width, height=height, created_at=utcnow(),
                                      model_version_id=model_version_id, run_id=detail.run.id if detail.run else None)
        if kind in ("accept", "reject"):
            if box is not None:
                chosen = check(box)
                values.update(aspect=aspect, rank=rank)
            else:
                candidate = pick(rank, aspect)
                chosen = candidate.box
                values.update(aspect=candidate.aspect, rank=candidate.rank)
            values.update(x1=chosen[0], y1=chosen[1], x2=chosen[2], y2=chosen[3])
        elif kind == "box":
            if box is None:
                raise ConfigError("a box label needs --box x1,y1,x2,y2")
            chosen = check(box)
            values.update(aspect=aspect, x1=chosen[0], y1=chosen[1], x2=chosen[2], y2=chosen[3])
        else:
            if box is not None:
                preferred = check(box)
            else:
                candidate = pick(rank, aspect)
                preferred = candidate.box
                values.update(rank=candidate.rank, aspect=candidate.aspect)
            if other is not None:
                over = check(other)
            elif other_rank is not None:
                candidate = pick(other_rank, aspect or values.get("aspect"))
                over = candidate.box
                values.update(other_rank=candidate.rank)
            else:
                raise ConfigError("a preference needs the crop it is preferred over (--over)")
            if tuple(preferred) == tuple(over):
                raise ConfigError("a preference needs two different crops")
            values.update(x1=preferred[0], y1=preferred[1], x2=preferred[2], y2=preferred[3],
                          ox1=over[0], oy1=over[1], ox2=over[2], oy2=over[3])
        with self._write() as conn:
            return int(conn.execute(insert(LABELS).values(photo_id=detail.photo.id, **values)).inserted_primary_key[0])

    def labels(self, *, kinds: Sequence[str] | None = None, photo_id: int | None = None,
               since: datetime | None = None, source: str | None = None) -> list[LabelRecord]:
        """Labels (oldest first) for the trainer; boxes are in the photo's upright pixels."""
        statement = (select(LABELS, PHOTOS.c.path).join(PHOTOS, PHOTOS.c.id == LABELS.c.photo_id)
                     .order_by(LABELS.c.id))
        if kinds:
            statement = statement.where(LABELS.c.kind.in_(list(kinds)))
        if photo_id is not None:
            statement = statement.where(LABELS.c.photo_id == photo_id)
        if since is not None:
            statement = statement.where(LABELS.c.created_at >= since)
        if source is not None:
            statement = statement.where(LABELS.c.source == source)
        with self._read() as conn:
            return [label_from_row(row) for row in conn.execute(statement)]

    # -- model versions -------------------------------------------------------------------------

    def register_model_version(
        self, name: str, checkpoint_path: str, sha256: str, *, parent_id: int | None = None,
        data_summary: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None, activate: bool = False,
    ) -> int:
        """Add a checkpoint (unique by ``sha256``; registering the same file again returns its id)."""
        with self._write() as conn:
            existing = conn.execute(select(MODEL_VERSIONS.c.id).where(MODEL_VERSIONS.c.sha256 == sha256)).scalar()
            if existing is not None:
                version_id = int(existing)
            else:
                try:
                    version_id = int(conn.execute(insert(MODEL_VERSIONS).values(
                        name=name, checkpoint_path=str(checkpoint_path), sha256=sha256, parent_id=parent_id,
                        data_summary=json.dumps(data_summary) if data_summary is not None else None,
                        metrics=json.dumps(metrics) if metrics is not None else None, created_at=utcnow(),
                        active=False)).inserted_primary_key[0])
                except IntegrityError as exc:
                    raise StoreError(f"cannot register model {name}: {exc.orig}") from exc
            if activate:
                conn.execute(update(MODEL_VERSIONS).values(active=MODEL_VERSIONS.c.id == version_id))
        return version_id

    def model_versions(self) -> list[ModelVersionRecord]:
        """Every registered model version, oldest first."""
        with self._read() as conn:
            rows = conn.execute(select(MODEL_VERSIONS).order_by(MODEL_VERSIONS.c.id))
            return [model_version_from_row(row) for row in rows]

    def active_model_version(self) -> ModelVersionRecord | None:
        """The model version in use, if one was activated."""
        with self._read() as conn:
            row = conn.execute(select(MODEL_VERSIONS).where(MODEL_VERSIONS.c.active == True)).first()  # noqa: E712
        return model_version_from_row(row) if row else None

    def set_active_model(self, version: int | str) -> ModelVersionRecord:
        """Activate a model version by id, sha256 (or unique prefix) or name; the others stay available."""
        with self._write() as conn:
            statement = select(MODEL_VERSIONS)
            if isinstance(version, int) or str(version).isdigit():
                rows = conn.execute(statement.where(MODEL_VERSIONS.c.id == int(version))).all()
            else:
                given = str(version)
                rows = conn.execute(statement.where(
                    MODEL_VERSIONS.c.sha256.startswith(given) | (MODEL_VERSIONS.c.name == given))).all()
            if len(rows) != 1:
                raise StoreError(f"model version {version!r} " + ("is ambiguous" if rows else "is not registered"))
            chosen = rows[0].id
            conn.execute(update(MODEL_VERSIONS).values(active=MODEL_VERSIONS.c.id == chosen))
            return model_version_from_row(conn.execute(select(MODEL_VERSIONS).where(MODEL_VERSIONS.c.id == chosen)).one())
