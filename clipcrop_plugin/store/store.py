"""The ``Store``: the one API the CLI, daemon, server and trainer use to read and write the database.

Writes are short transactions opened with ``BEGIN IMMEDIATE`` on SQLite (WAL mode, 30 s busy
timeout) and retried on a transient "database is locked", so a daemon and a CLI can write at once.
Bulk writes go through SQLAlchemy Core ``executemany``; no ORM object is built per candidate.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError

from ..config import Settings
from ..elements import ELEMENT_NAMES, explain_changes
from ..errors import ConfigError, StoreError
from ..results import Box, ElementChange, Subject, Suggestion
from . import migrate
from .engine import WRITE_OPTION, make_engine, resolve_url
from .models import LABEL_KINDS, TOP_K, CropRow, Explanation, Label, ModelVersion, Photo, ScoringRun, utcnow
from .packing import (
    pack_candidates,
    pack_elements,
    pack_subjects,
    pack_vector,
    unpack_candidates,
    unpack_elements,
    unpack_subjects,
    unpack_vector,
)
from .queries import _PREFIX_END, COMPANION_SUFFIXES, QueryFilters, build_query, pair_kind

log = logging.getLogger("clipcrop.store")

P, R, C, E, L, M = (t.__table__ for t in (Photo, ScoringRun, CropRow, Explanation, Label, ModelVersion))
_ELEMENT_INDEX = {name: i for i, name in enumerate(ELEMENT_NAMES)}
# Built once: a statement object per call would cost more than the query itself.
_COMPANION_RANK = {suffix: i for i, suffix in enumerate(COMPANION_SUFFIXES)}
_SAME_STEM_SQL = select(P.c.path, P.c.id).where(P.c.path >= bindparam("lo"), P.c.path < bindparam("hi"))
_EXPLANATIONS_SQL = (
    select(E.c.crop_id, E.c.position, E.c.element, E.c.change)
    .where(E.c.crop_id.in_(bindparam("ids", expanding=True)))
    .order_by(E.c.crop_id, E.c.position)
)


# ----------------------------------------------------------------------------------------------
# Records returned to callers (plain dataclasses, detached from any session)


@dataclass
class CropRecord:
    """A stored candidate. ``box`` in upright pixels; ``fractions`` = box / (width, height)."""

    aspect: str
    rank: int
    box: Box
    fractions: tuple[float, float, float, float]
    score: float
    improvement: float
    explanation: list[ElementChange] = field(default_factory=list)
    elements: list[float] | None = None
    changes: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "aspect": self.aspect,
            "rank": self.rank,
            "box": list(self.box),
            "fractions": [round(v, 6) for v in self.fractions],
            "score": round(self.score, 6),
            "improvement": round(self.improvement, 6),
            "explanation": [e.to_dict() for e in self.explanation],
        }


@dataclass
class PhotoSummary:
    """One query result: the photo and its selected crop (``None`` when it has no scores)."""

    id: int
    path: str
    folder: str
    status: str
    error: str | None
    offline: bool
    width: int | None
    height: int | None
    taken_at: datetime | None
    camera_make: str | None
    camera_model: str | None
    content_hash: str | None
    run_id: int | None = None
    crop: CropRecord | None = None
    pair_path: str | None = None  # the other file of a RAW + JPEG shot
    pair_role: str | None = None  # "raw" or "companion"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "pair": {"path": self.pair_path, "role": self.pair_role} if self.pair_path else None,
            "status": self.status,
            "error": self.error,
            "offline": self.offline,
            "width": self.width,
            "height": self.height,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "camera": " ".join(v for v in (self.camera_make, self.camera_model) if v) or None,
            "crop": self.crop.to_dict() if self.crop else None,
        }


@dataclass
class RunRecord:
    """A scoring run's header."""

    id: int
    scorer: str
    weights_hash: str | None
    device: str | None
    created_at: datetime
    active: bool
    content_hash: str
    n_candidates: int
    full_score: float


@dataclass
class LabelRecord:
    """A stored label (see :class:`clipcrop_plugin.store.models.Label`)."""

    id: int
    photo_id: int
    path: str
    kind: str
    aspect: str | None
    rank: int | None
    box: Box | None
    other_rank: int | None
    other_box: Box | None
    width: int | None
    height: int | None
    source: str
    created_at: datetime
    run_id: int | None
    model_version_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "kind": self.kind,
            "aspect": self.aspect,
            "rank": self.rank,
            "box": list(self.box) if self.box else None,
            "other_rank": self.other_rank,
            "other_box": list(self.other_box) if self.other_box else None,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
        }


@dataclass
class PhotoDetail:
    """Everything stored about one photo, from its active run."""

    photo: PhotoSummary
    orientation: int | None
    format: str | None
    run: RunRecord | None
    runs: list[RunRecord]
    full_frame: CropRecord | None
    best: dict[str, CropRecord]  # per candidate set, rank 1
    candidates: list[CropRecord]  # every candidate of the active run, set by set, by rank
    labels: list[LabelRecord]
    subjects: list[Subject] = field(default_factory=list)  # what the active run's subject stage found

    def to_dict(self) -> dict[str, Any]:
        d = self.photo.to_dict()
        d.update(
            orientation=self.orientation,
            format=self.format,
            scorer=self.run.scorer if self.run else None,
            full_frame=self.full_frame.to_dict() if self.full_frame else None,
            best={k: v.to_dict() for k, v in self.best.items()},
            candidates=[c.to_dict() for c in self.candidates],
            labels=[lab.to_dict() for lab in self.labels],
            subjects=[sub.to_dict() for sub in self.subjects],
            runs=[{"id": r.id, "scorer": r.scorer, "weights_hash": r.weights_hash, "active": r.active,
                   "created_at": r.created_at.isoformat()} for r in self.runs],
        )
        return d


@dataclass
class PhotoRef:
    """The few columns scan and relink need."""

    id: int
    path: str
    content_hash: str | None
    status: str
    mtime: float | None
    size: int | None


@dataclass
class ModelVersionRecord:
    id: int
    name: str
    checkpoint_path: str
    sha256: str
    parent_id: int | None
    data_summary: dict[str, Any] | None
    metrics: dict[str, Any] | None
    created_at: datetime
    active: bool


# ----------------------------------------------------------------------------------------------


def _sqlite_value(v: Any) -> Any:
    """A value as SQLAlchemy's SQLite dialect stores it (DateTime: ISO text with microseconds)."""
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="microseconds")
    return v


def _wh(weights_hash: str | None) -> str:
    return weights_hash or ""


def _fractions(box: Sequence[int], w: int | None, h: int | None) -> tuple[float, float, float, float]:
    if not w or not h:
        return (0.0, 0.0, 0.0, 0.0)
    return (box[0] / w, box[1] / h, box[2] / w, box[3] / h)


def _relative_top3(elements: np.ndarray, full_index: int) -> list[list[ElementChange]]:
    """Per candidate, the explanation the pipeline would give it: the element changes largest
    relative to each element's spread over the photo's candidates (``explain_changes``), so a
    fallback below rank 1 is as scale-free as a stored rank-1 explanation."""
    els = np.asarray(elements, dtype=np.float64)
    changes = els - els[full_index]
    return [[ElementChange(ELEMENT_NAMES[k], float(changes[i, k])) for k in picked]
            for i, picked in enumerate(explain_changes(changes, els, full_index))]


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

    def record_suggestions(
        self, items: Iterable[tuple[Suggestion, str, float | None, int | None]]
    ) -> list[int]:
        """Store many ``(suggestion, content_hash, mtime, size)`` in one transaction (bulk path).

        Returns the photo ids in input order. Built for throughput: one multi-row statement per
        table for the whole batch (SQLAlchemy Core executemany / insertmanyvalues).
        """
        items = list(items)
        ids: list[int | None] = [None] * len(items)
        with self._write() as conn:
            scored = []
            for k, (s, h, mtime, size) in enumerate(items):
                if s.ok and s.info is not None and s.crops:
                    scored.append(k)
                else:
                    ids[k] = self._upsert_failure(conn, s.path, s.error or "not scored", h, mtime, size)
            if scored:
                for k, pid in zip(scored, self._insert_scored_batch(conn, [items[k] for k in scored])):
                    ids[k] = pid
            self._link_pairs(conn, [s.path for s, *_ in items])
        return [int(i) for i in ids if i is not None]

    def _link_pairs(self, conn: Connection, paths: Sequence[str]) -> None:
        """Pair each RAW among ``paths`` with the JPEG/HEIF the camera wrote beside it (same folder,
        same name), and each such JPEG with its RAW: both rows learn the other's id and their role."""
        kinds = {p: k for p in dict.fromkeys(paths) if (k := pair_kind(p))}
        if not kinds:
            return
        stem = {p: p[: len(p) - len(os.path.splitext(p)[1])] for p in kinds}
        # Every row named "<folder>/<stem>.*": one seek of the unique path index per photo.
        prefixes = sorted({b + "." for b in stem.values()})
        found: list[tuple[str, int]] = []
        if self.dialect == "sqlite":
            # All seeks in one statement: SQLite walks the VALUES list and seeks the index per row.
            for i in range(0, len(prefixes), 400):
                chunk = prefixes[i:i + 400]
                values = ", ".join("(?, ?)" for _ in chunk)
                args = tuple(v for b in chunk for v in (b, b + _PREFIX_END))
                sql = f"WITH b(lo, hi) AS (VALUES {values}) SELECT p.path, p.id FROM b JOIN photos p ON p.path >= b.lo AND p.path < b.hi"
                found += [(r[0], int(r[1])) for r in conn.exec_driver_sql(sql, args)]
        else:
            for b in prefixes:
                found += [(r[0], int(r[1])) for r in conn.execute(_SAME_STEM_SQL, {"lo": b, "hi": b + _PREFIX_END})]
        ids = dict(found)
        by_stem: dict[str, list[str]] = {}
        for path, _pid in found:
            by_stem.setdefault(path[: len(path) - len(os.path.splitext(path)[1])], []).append(path)
        for path, kind in kinds.items():
            if path not in ids:
                continue
            others = [q for q in by_stem.get(stem[path], ()) if q != path and pair_kind(q) not in (None, kind)]
            if not others:
                continue
            # A RAW's JPEG before its HEIF; a JPEG's RAWs by name (one camera writes one of them).
            other = min(others, key=lambda q: (_COMPANION_RANK.get(os.path.splitext(q)[1].lower(), 0), q))
            raw_path, companion = (path, other) if kind == "raw" else (other, path)
            conn.execute(update(P).where(P.c.id == ids[raw_path]).values(pair_id=ids[companion], pair_role="raw"))
            conn.execute(update(P).where(P.c.id == ids[companion]).values(pair_id=ids[raw_path], pair_role="companion"))

    def _insert_ids(self, conn: Connection, table: Any, rows: list[dict[str, Any]]) -> list[int]:
        """Insert ``rows`` and return their ids in order.

        SQLite cannot return ids of a multi-row INSERT in a guaranteed order, and SQLAlchemy falls
        back to one statement per row for that (~10x slower). Inside our ``BEGIN IMMEDIATE``
        transaction we are the only writer, so ids are assigned here and the rows go in as one
        executemany. Other backends use ordered RETURNING.
        """
        if not rows:
            return []
        if self.dialect == "sqlite":
            start = int(conn.execute(select(func.max(table.c.id))).scalar() or 0) + 1
            ids = list(range(start, start + len(rows)))
            for i, row in zip(ids, rows):
                row["id"] = i
            self._executemany(conn, table, rows)
            return ids
        if self.dialect == "postgresql":
            # Ordered RETURNING makes SQLAlchemy build one giant multi-row INSERT per 1,000 rows,
            # which psycopg re-parses every time (~100 photos/s). Taking the ids from the
            # table's sequence in one round trip and sending the rows as a pipelined
            # executemany of one small cached statement is ~10x faster; the ids stay unique
            # under concurrent writers because nextval never hands one out twice.
            seq = conn.exec_driver_sql(f"SELECT pg_get_serial_sequence('{table.name}', 'id')").scalar()
            ids = sorted(conn.exec_driver_sql("SELECT nextval(%(s)s) FROM generate_series(1, %(n)s)",
                                              {"s": seq, "n": len(rows)}).scalars())
            for i, row in zip(ids, rows):
                row["id"] = i
            self._executemany(conn, table, rows)
            return ids
        return list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())

    def _photo_values(self, s: Suggestion, h: str, mtime: float | None, size: int | None) -> dict[str, Any]:
        info = s.info
        assert info is not None
        return dict(
            folder=str(Path(s.path).parent), content_hash=h, width=info.width, height=info.height,
            stored_width=info.stored_width, stored_height=info.stored_height, orientation=info.orientation,
            format=info.format, taken_at=info.taken_at, camera_make=info.camera_make,
            camera_model=info.camera_model, status="scored", error=None, offline=False, mtime=mtime,
            size=size, updated_at=utcnow(),
        )

    def _upsert_photo(self, conn: Connection, path: str, values: dict[str, Any]) -> int:
        pid = conn.execute(select(P.c.id).where(P.c.path == path)).scalar()
        if pid is None:
            return int(conn.execute(insert(P).values(path=path, created_at=utcnow(), **values)).inserted_primary_key[0])
        conn.execute(update(P).where(P.c.id == pid).values(**values))
        return int(pid)

    def _insert_scored_batch(
        self, conn: Connection, items: list[tuple[Suggestion, str, float | None, int | None]]
    ) -> list[int]:
        # Later duplicates of a path in one batch win, as if written one after another.
        last = {s.path: k for k, (s, _h, _m, _z) in enumerate(items)}
        keep = sorted(last.values())
        items = [items[k] for k in keep]
        paths = [s.path for s, *_ in items]
        existing: dict[str, int] = {}
        for i in range(0, len(paths), 500):
            existing.update((r[0], r[1]) for r in conn.execute(select(P.c.path, P.c.id).where(P.c.path.in_(paths[i:i + 500]))))
        now = utcnow()
        new_rows = [dict(path=s.path, created_at=now, **self._photo_values(s, h, m, z))
                    for s, h, m, z in items if s.path not in existing]
        if new_rows:
            got = self._insert_ids(conn, P, new_rows)
            existing.update(zip((r["path"] for r in new_rows), got))
        pids = [existing[p] for p in paths]
        new_paths = {r["path"] for r in new_rows}
        for (s, h, m, z), pid in zip(items, pids):
            if s.path in new_paths:
                continue  # a new photo has no runs to supersede
            conn.execute(update(P).where(P.c.id == pid).values(**self._photo_values(s, h, m, z)))
            wh, scorer = _wh(s.weights_hash), s.scorer or "unknown"
            # Superseded runs: same scorer+weights (a re-score), or an older content of the file.
            stale = select(R.c.id).where(
                R.c.photo_id == pid, (R.c.content_hash != h) | ((R.c.scorer == scorer) & (R.c.weights_hash == wh)))
            conn.execute(delete(R).where(R.c.id.in_(stale)))
            conn.execute(update(R).where(R.c.photo_id == pid, R.c.active == True).values(active=False))  # noqa: E712
            conn.execute(update(C).where(C.c.photo_id == pid, C.c.active == True).values(active=False))  # noqa: E712

        run_rows, per_photo = [], []
        for (s, h, _m, _z), pid in zip(items, pids):
            row, crops_rows, expl = self._pack_run(s, h, pid, now)
            run_rows.append(row)
            per_photo.append((crops_rows, expl))
        run_ids = self._insert_ids(conn, R, run_rows)
        crop_rows: list[dict[str, Any]] = []
        expls: list[list[ElementChange]] = []
        for run_id, (rows, expl) in zip(run_ids, per_photo):
            for r in rows:
                r["run_id"] = run_id
            crop_rows += rows
            expls += expl
        crop_ids = self._insert_ids(conn, C, crop_rows)
        erows = [
            dict(crop_id=cid, position=i + 1, element=_ELEMENT_INDEX[ec.element], change=float(ec.change))
            for cid, changes in zip(crop_ids, expls)
            for i, ec in enumerate(changes[:3])
        ]
        if erows:
            self._executemany(conn, E, erows)
        return pids

    def _executemany(self, conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        """INSERT many rows. On SQLite the rows go straight to the driver's executemany (values
        stored exactly as SQLAlchemy would store them): SQLAlchemy's per-row parameter processing
        would otherwise cost more than SQLite's own work."""
        if self.dialect != "sqlite":
            conn.execute(insert(table), rows)
            return
        cols = list(rows[0])
        sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        conn.exec_driver_sql(sql, [tuple(_sqlite_value(r[c]) for c in cols) for r in rows])

    def _pack_run(self, s: Suggestion, h: str, pid: int, now: datetime
                  ) -> tuple[dict[str, Any], list[dict[str, Any]], list[list[ElementChange]]]:
        """The scoring_runs row (candidates packed) and the queryable crops rows of one suggestion."""
        info = s.info
        assert info is not None
        crops = list(s.crops)
        full = s.full_frame or next((c for c in crops if c.aspect == "full"), None)
        if full is not None and all(c is not full for c in crops):
            crops.append(full)
        code: dict[str, int] = {}
        for c in crops:
            code.setdefault(c.aspect, len(code))
        n = len(crops)
        boxes = np.array([c.box for c in crops], dtype=np.int64).reshape(n, 4)
        scores = np.array([c.score for c in crops], dtype=np.float32)
        sets = np.array([code[c.aspect] for c in crops], dtype=np.uint8)
        ranks = np.array([c.rank for c in crops], dtype=np.uint16)
        has_el = all(c.elements is not None for c in crops)
        full_i = next((i for i, c in enumerate(crops) if c is full), None)
        best = s.best()
        full_score = float(full.score) if full is not None else float(scores.max())
        run = dict(
            photo_id=pid, content_hash=h, scorer=s.scorer or "unknown", weights_hash=_wh(s.weights_hash),
            device=s.device, created_at=now, active=True, width=info.width, height=info.height, n_candidates=n,
            aspects=",".join(code), full_score=full_score, best_score=float(best.score) if best else None,
            best_improvement=float(best.improvement) if best else None,
            candidates=pack_candidates(boxes, scores, sets, ranks),
            elements=pack_elements(np.array([c.elements for c in crops], dtype=np.float32)) if has_el else None,
            subjects=None if s.subjects_error else pack_subjects(s.subjects),
        )
        rows: list[dict[str, Any]] = []
        expl: list[list[ElementChange]] = []
        fallback: list[list[ElementChange]] | None = None  # for a plugin's Suggestion without explanations
        for c in crops:
            if c.rank > TOP_K and c is not best:
                continue
            changes: list[ElementChange] = []
            if c.rank == 1 and c.aspect != "full":
                given = list(c.explanation)
                if not given and has_el and full_i is not None:
                    if fallback is None:
                        fallback = _relative_top3(np.array([x.elements for x in crops], dtype=np.float64), full_i)
                    given = fallback[next(i for i, x in enumerate(crops) if x is c)]
                changes = [e for e in given if e.element in _ELEMENT_INDEX][:3]
            enh = red = 0
            for e in changes:
                if e.change > 0:
                    enh |= 1 << _ELEMENT_INDEX[e.element]
                elif e.change < 0:
                    red |= 1 << _ELEMENT_INDEX[e.element]
            x1, y1, x2, y2 = c.box
            rows.append(dict(
                run_id=None, photo_id=pid, active=True, best=c is best, aspect=c.aspect, rank=int(c.rank),
                x1=int(x1), y1=int(y1), x2=int(x2), y2=int(y2), score=float(c.score),
                improvement=float(c.improvement), enhances=enh, reduces=red,
                elements=pack_vector(c.elements) if c.elements is not None else None,
            ))
            expl.append(changes)
        return run, rows, expl

    def _upsert_failure(
        self, conn: Connection, path: str, reason: str, h: str | None, mtime: float | None, size: int | None
    ) -> int:
        values: dict[str, Any] = dict(folder=str(Path(path).parent), status="failed", error=reason,
                                      mtime=mtime, size=size, updated_at=utcnow())
        if h is not None:
            values["content_hash"] = h
        return self._upsert_photo(conn, path, values)

    def record_failure(
        self, path: str, reason: str, content_hash: str | None = None, *, mtime: float | None = None,
        size: int | None = None,
    ) -> int:
        """Record that ``path`` could not be scored, with a one-line ``reason``. Earlier runs are kept."""
        with self._write() as conn:
            pid = self._upsert_failure(conn, str(path), reason, content_hash, mtime, size)
            self._link_pairs(conn, [str(path)])
            return pid

    def record_pending(self, path: str, *, content_hash: str | None = None) -> int:
        """Note a photo as found but not yet scored (the daemon's queue)."""
        with self._write() as conn:
            pid = conn.execute(select(P.c.id).where(P.c.path == str(path))).scalar()
            if pid is not None:
                return int(pid)
            return int(conn.execute(insert(P).values(
                path=str(path), folder=str(Path(path).parent), content_hash=content_hash, status="pending",
                offline=False, created_at=utcnow(), updated_at=utcnow(),
            )).inserted_primary_key[0])

    # -- identity: hashes, moves, gone/offline --------------------------------------------------

    def _ref(self, row: Any) -> PhotoRef:
        return PhotoRef(row.id, row.path, row.content_hash, row.status, row.mtime, row.size)

    def find_path(self, path: str) -> PhotoRef | None:
        """The photo stored at ``path``, if any."""
        with self._read() as conn:
            row = conn.execute(select(P).where(P.c.path == str(path))).first()
        return self._ref(row) if row else None

    def find_by_hash(self, content_hash: str) -> list[PhotoRef]:
        """Every photo row whose content hash is ``content_hash``."""
        with self._read() as conn:
            rows = conn.execute(select(P).where(P.c.content_hash == content_hash).order_by(P.c.id)).all()
        return [self._ref(r) for r in rows]

    def photos_under(self, folder: str) -> list[PhotoRef]:
        """Every photo at or below ``folder`` (absolute path)."""
        folder = str(folder).rstrip("/") or "/"
        with self._read() as conn:
            rows = conn.execute(select(P).where(
                (P.c.folder == folder) | ((P.c.path >= folder + "/") & (P.c.path < folder + "/\U0010ffff"))
            )).all()
        return [self._ref(r) for r in rows]

    def is_scored(self, content_hash: str, scorer: str, weights_hash: str | None,
                  sets: Collection[str] | None = None) -> bool:
        """Whether some run scored this content with this scorer and weights (and, when ``sets``
        is given, whether the newest such run has every one of those candidate sets)."""
        if sets:
            found = self.run_sets(content_hash, scorer, weights_hash)
            return found is not None and set(sets) <= found
        with self._read() as conn:
            return conn.execute(select(R.c.id).where(
                R.c.content_hash == content_hash, R.c.scorer == scorer, R.c.weights_hash == _wh(weights_hash)
            ).limit(1)).first() is not None

    def run_sets(self, content_hash: str, scorer: str, weights_hash: str | None) -> frozenset[str] | None:
        """The candidate sets (``grid``, ``1:1``, ...; not ``full``) of the newest run of this
        content by this scorer and weights, or ``None`` when there is no such run."""
        newest = select(func.max(R.c.id)).where(
            R.c.content_hash == content_hash, R.c.scorer == scorer, R.c.weights_hash == _wh(weights_hash))
        with self._read() as conn:
            run_id = conn.execute(newest).scalar()
            if run_id is None:
                return None
            rows = conn.execute(select(C.c.aspect).where(C.c.run_id == run_id, C.c.rank == 1).distinct())
            return frozenset(a for (a,) in rows) - {"full"}

    def active_scorer(self, photo_id: int) -> tuple[str, str | None] | None:
        """(scorer, weights_hash) of the photo's active run, or ``None`` when it has none."""
        with self._read() as conn:
            row = conn.execute(select(R.c.scorer, R.c.weights_hash).where(
                R.c.photo_id == photo_id, R.c.active == True)).first()  # noqa: E712
        return (row.scorer, row.weights_hash or None) if row else None

    def activate(self, photo_id: int, scorer: str, weights_hash: str | None) -> bool:
        """Make the photo's newest run of ``scorer``+weights its active run; False if it has none."""
        with self._write() as conn:
            return self._activate(conn, photo_id, scorer, _wh(weights_hash))

    def _activate(self, conn: Connection, photo_id: int, scorer: str, wh: str) -> bool:
        run_id = conn.execute(select(func.max(R.c.id)).where(
            R.c.photo_id == photo_id, R.c.scorer == scorer, R.c.weights_hash == wh)).scalar()
        if run_id is None:
            return False
        conn.execute(update(R).where(R.c.photo_id == photo_id).values(active=R.c.id == run_id))
        conn.execute(update(C).where(C.c.photo_id == photo_id).values(active=C.c.run_id == run_id))
        conn.execute(update(P).where(P.c.id == photo_id).values(status="scored", error=None))
        return True

    def set_active_scorer(self, scorer: str, weights_hash: str | None) -> int:
        """Switch every photo that has a run of ``scorer``+weights to it; returns how many photos."""
        wh = _wh(weights_hash)
        with self._write() as conn:
            pids = conn.execute(select(R.c.photo_id).where(R.c.scorer == scorer, R.c.weights_hash == wh)
                                .distinct()).scalars().all()
            for pid in pids:
                self._activate(conn, pid, scorer, wh)
        return len(pids)

    def relink(self, content_hash: str, new_path: str, *, mtime: float | None = None,
               size: int | None = None) -> int | None:
        """Point the stored photo with this content at ``new_path`` (a move or rename).

        Prefers a row whose old path no longer exists on disk; returns its id, or ``None`` when
        no stored photo has this content. If ``new_path`` already has its own row, that row is
        replaced by the relinked one (its scores were for older content).
        """
        with self._write() as conn:
            rows = conn.execute(select(P).where(P.c.content_hash == content_hash).order_by(P.c.id)).all()
            rows = [r for r in rows if r.path != str(new_path)]
            if not rows:
                return None
            gone = [r for r in rows if not os.path.exists(r.path)]
            src = (gone or rows)[0]
            if not gone:  # the original is still there: this is a copy, not a move
                return None
            conn.execute(delete(P).where(P.c.path == str(new_path)))
            conn.execute(update(P).where(P.c.id == src.id).values(
                path=str(new_path), folder=str(Path(new_path).parent), status="scored"
                if src.status in ("gone", "offline", "scored") else src.status,
                offline=False, mtime=mtime, size=size, updated_at=utcnow(),
            ))
            return int(src.id)

    def copy_scores(self, photo_id: int, new_path: str, *, mtime: float | None = None,
                    size: int | None = None) -> int:
        """Give a duplicate file (same content, new path) its own row with a copy of the active run."""
        with self._write() as conn:
            src = conn.execute(select(P).where(P.c.id == photo_id)).first()
            if src is None:
                raise StoreError(f"no photo with id {photo_id}")
            values = {k: getattr(src, k) for k in P.c.keys() if k not in ("id", "path", "folder", "created_at")}
            values.update(folder=str(Path(new_path).parent), mtime=mtime, size=size, offline=False,
                          updated_at=utcnow())
            conn.execute(delete(P).where(P.c.path == str(new_path)))
            new_id = int(conn.execute(insert(P).values(path=str(new_path), created_at=utcnow(), **values))
                         .inserted_primary_key[0])
            run = conn.execute(select(R).where(R.c.photo_id == photo_id, R.c.active == True)).first()  # noqa: E712
            if run is not None:
                rv = {k: getattr(run, k) for k in R.c.keys() if k != "id"}
                rv["photo_id"] = new_id
                new_run = conn.execute(insert(R).values(**rv)).inserted_primary_key[0]
                crops = conn.execute(select(C).where(C.c.run_id == run.id).order_by(C.c.id)).all()
                for crow in crops:
                    cv = {k: getattr(crow, k) for k in C.c.keys() if k != "id"}
                    cv.update(run_id=new_run, photo_id=new_id)
                    cid = conn.execute(insert(C).values(**cv)).inserted_primary_key[0]
                    ex = conn.execute(select(E).where(E.c.crop_id == crow.id)).all()
                    if ex:
                        conn.execute(insert(E), [dict(crop_id=cid, position=e.position, element=e.element,
                                                      change=e.change) for e in ex])
            return new_id

    def mark_seen(self, photo_id: int, *, mtime: float | None, size: int | None) -> None:
        """Remember what a scan saw on disk for an unchanged photo (and clear gone/offline)."""
        with self._write() as conn:
            conn.execute(update(P).where(P.c.id == photo_id).values(mtime=mtime, size=size, offline=False))
            conn.execute(update(P).where(P.c.id == photo_id, P.c.status.in_(("gone", "offline")))
                         .values(status="scored"))

    def content_changed(self, path: str, content_hash: str, *, mtime: float | None, size: int | None) -> bool:
        """Our own metadata write changed the bytes of the photo at ``path`` (embedding XMP, or
        clearing it), not its picture: file its runs of the previous content under the new hash,
        so the next scan recognises the photo instead of scoring it again. False when unknown."""
        with self._write() as conn:
            row = conn.execute(select(P.c.id, P.c.content_hash).where(P.c.path == str(path))).first()
            if row is None:
                return False
            if row.content_hash and row.content_hash != content_hash:
                conn.execute(update(R).where(R.c.photo_id == row.id, R.c.content_hash == row.content_hash)
                             .values(content_hash=content_hash))
            conn.execute(update(P).where(P.c.id == row.id).values(content_hash=content_hash, mtime=mtime, size=size))
            return True

    def mark_gone(self, path: str) -> bool:
        """The file at ``path`` was deleted: keep its scores (a move may relink them) but flag it."""
        with self._write() as conn:
            return conn.execute(update(P).where(P.c.path == str(path)).values(
                status="gone", updated_at=utcnow())).rowcount > 0

    def mark_offline(self, folder_prefix: str) -> int:
        """Photos under an unmounted/unreachable folder: flagged offline, never treated as deleted."""
        return self._set_offline(folder_prefix, True)

    def mark_online(self, folder_prefix: str) -> int:
        """Undo :meth:`mark_offline` for the folder."""
        return self._set_offline(folder_prefix, False)

    def _set_offline(self, folder: str, flag: bool) -> int:
        folder = str(folder).rstrip("/") or "/"
        with self._write() as conn:
            return conn.execute(update(P).where(
                (P.c.folder == folder) | ((P.c.path >= folder + "/") & (P.c.path < folder + "/\U0010ffff"))
            ).values(offline=flag)).rowcount

    # -- reading --------------------------------------------------------------------------------

    def query(self, filters: QueryFilters | None = None, *, sort: str = "improvement", limit: int | None = 50,
              offset: int = 0) -> list[PhotoSummary]:
        """Photos matching ``filters`` with their selected crop, sorted (``improvement``, ``score``,
        ``path``, ``taken``); ``limit=None`` for all."""
        q = build_query(filters or QueryFilters(), sort, self.dialect)
        if limit is not None:
            q = q.limit(int(limit))
        if offset:
            q = q.offset(int(offset))
        with self._read() as conn:
            rows = conn.execute(q).all()
            crop_ids = [r.crop_id for r in rows if r.crop_id is not None]
            expl = self._explanations(conn, crop_ids)
        return [self._summary(r, expl) for r in rows]

    def count(self, filters: QueryFilters | None = None, *, sort: str = "path") -> int:
        """How many photos :meth:`query` with the same ``sort`` would return without a limit
        (score sorts list scored photos only)."""
        q = build_query(filters or QueryFilters(), sort, self.dialect, count=True)
        with self._read() as conn:
            return int(conn.execute(q).scalar() or 0)

    def status_counts(self) -> dict[str, int]:
        """Number of photos per status."""
        with self._read() as conn:
            return {s: int(n) for s, n in conn.execute(select(P.c.status, func.count()).group_by(P.c.status))}

    def _explanations(self, conn: Connection, crop_ids: list[int]) -> dict[int, list[ElementChange]]:
        out: dict[int, list[ElementChange]] = {}
        for i in range(0, len(crop_ids), 500):
            chunk = crop_ids[i:i + 500]
            for cid, _pos, element, change in conn.execute(_EXPLANATIONS_SQL, {"ids": chunk}):
                out.setdefault(cid, []).append(ElementChange(ELEMENT_NAMES[element], float(change)))
        return out

    def _summary(self, r: Any, expl: dict[int, list[ElementChange]]) -> PhotoSummary:
        crop = None
        if r.crop_id is not None:
            box = (int(r.x1), int(r.y1), int(r.x2), int(r.y2))
            crop = CropRecord(r.aspect, int(r.rank), box, _fractions(box, r.width, r.height), float(r.score),
                              float(r.improvement), expl.get(r.crop_id, []), unpack_vector(r.elements))
        return PhotoSummary(r.id, r.path, r.folder, r.status, r.error, bool(r.offline), r.width, r.height,
                            r.taken_at, r.camera_make, r.camera_model, r.content_hash,
                            int(r.run_id) if r.crop_id is not None else None, crop,
                            r.pair_path, r.pair_role if r.pair_path else None)

    def subjects_of(self, photo_ids: Sequence[int]) -> dict[int, list[Subject]]:
        """The active run's subjects of each photo in ``photo_ids`` (one query; photos without
        subject data map to ``[]``), for pages that list many photos."""
        out: dict[int, list[Subject]] = {int(i): [] for i in photo_ids}
        ids = list(out)
        with self._read() as conn:
            for i in range(0, len(ids), 500):
                rows = conn.execute(select(R.c.photo_id, R.c.subjects).where(
                    R.c.photo_id.in_(ids[i:i + 500]), R.c.active == True))  # noqa: E712
                for pid, blob in rows:
                    out[int(pid)] = unpack_subjects(blob)
        return out

    def scorers_used(self) -> list[str]:
        """Names of the scorers that have runs in this database, sorted."""
        with self._read() as conn:
            return sorted(n for (n,) in conn.execute(select(R.c.scorer).distinct()))

    def active_aspects(self) -> list[str]:
        """Candidate sets present in the active runs, ``grid`` first, then ratios (not ``full``)."""
        q = select(C.c.aspect).where(C.c.rank == 1, C.c.active.is_(True)).distinct()
        with self._read() as conn:
            found = {a for (a,) in conn.execute(q)} - {"full"}
        return sorted(found, key=lambda a: (a != "grid", a))

    def best_crop(self, photo: str | int, aspect: str | None = None) -> CropRecord | None:
        """The active run's best crop of ``photo`` (rank 1 of ``aspect`` when given), without
        decoding the other candidates: one indexed lookup."""
        ref = self.resolve_photo(photo)
        cond = [C.c.photo_id == ref.id, C.c.active == True]  # noqa: E712
        cond += [C.c.aspect == aspect, C.c.rank == 1] if aspect else [C.c.best == True]  # noqa: E712
        q = select(C, P.c.width, P.c.height).join(P, P.c.id == C.c.photo_id).where(*cond).limit(1)
        with self._read() as conn:
            row = conn.execute(q).first()
            if row is None:
                return None
            expl = self._explanations(conn, [row.id])
        box = (int(row.x1), int(row.y1), int(row.x2), int(row.y2))
        return CropRecord(row.aspect, int(row.rank), box, _fractions(box, row.width, row.height), float(row.score),
                          float(row.improvement), expl.get(row.id, []), unpack_vector(row.elements))

    def resolve_photo(self, photo: str | int) -> PhotoRef:
        """A photo by id, exact path, or a path relative to the current folder; ``StoreError`` if unknown."""
        with self._read() as conn:
            row = None
            if isinstance(photo, int) or (isinstance(photo, str) and photo.isdigit() and not os.path.exists(photo)):
                row = conn.execute(select(P).where(P.c.id == int(photo))).first()
            if row is None:
                for cand in (str(photo), os.path.abspath(str(photo)), os.path.realpath(str(photo))):
                    row = conn.execute(select(P).where(P.c.path == cand)).first()
                    if row is not None:
                        break
        if row is None:
            raise StoreError(f"{photo} is not in the database (scan its folder first)")
        return self._ref(row)

    def photo_detail(self, photo: str | int) -> PhotoDetail:
        """Everything about one photo: every candidate of the active run, best per set, labels, runs."""
        ref = self.resolve_photo(photo)
        with self._read() as conn:
            prow = conn.execute(select(P).where(P.c.id == ref.id)).one()
            runs = conn.execute(select(R).where(R.c.photo_id == ref.id).order_by(R.c.id.desc())).all()
            run = next((r for r in runs if r.active), runs[0] if runs else None)
            crop_rows = conn.execute(select(C).where(C.c.run_id == run.id)).all() if run is not None else []
            expl = self._explanations(conn, [c.id for c in crop_rows])
        best_id = next((c.id for c in crop_rows if c.best), None)
        summary = PhotoSummary(prow.id, prow.path, prow.folder, prow.status, prow.error, bool(prow.offline),
                               prow.width, prow.height, prow.taken_at, prow.camera_make, prow.camera_model,
                               prow.content_hash, run.id if run is not None else None, None)
        candidates: list[CropRecord] = []
        best: dict[str, CropRecord] = {}
        full: CropRecord | None = None
        if run is not None:
            candidates = self._decode_run(run, {(c.aspect, c.rank): c for c in crop_rows}, expl)
            for cr in candidates:
                if cr.aspect == "full":
                    full = cr
                elif cr.rank == 1 and cr.aspect not in best:
                    best[cr.aspect] = cr
            if best_id is not None:
                brow = next(c for c in crop_rows if c.id == best_id)
                summary.crop = next((cr for cr in candidates if cr.aspect == brow.aspect and cr.rank == brow.rank), None)
        run_recs = [RunRecord(r.id, r.scorer, r.weights_hash or None, r.device, r.created_at, bool(r.active),
                              r.content_hash, r.n_candidates, r.full_score) for r in runs]
        labels = self.labels(photo_id=ref.id)
        subjects = unpack_subjects(run.subjects) if run is not None else []
        return PhotoDetail(summary, prow.orientation, prow.format, next((x for x in run_recs if run and x.id == run.id), None),
                           run_recs, full, best, candidates, labels, subjects)

    def _decode_run(self, run: Any, rows: dict[tuple[str, int], Any], expl: dict[int, list[ElementChange]]) -> list[CropRecord]:
        packed = unpack_candidates(run.candidates)
        aspects = run.aspects.split(",")
        n = len(packed.scores)
        els = unpack_elements(run.elements, n) if run.elements is not None else None
        full_idx = next((i for i in range(n) if aspects[packed.sets[i]] == "full"), None)
        full_el = None
        if els is not None and full_idx is not None:
            frow = rows.get(("full", 1))
            full_el = np.asarray(unpack_vector(frow.elements), np.float32) if frow is not None and frow.elements else els[full_idx]
        out: list[CropRecord] = []
        relative: list[list[ElementChange]] | None = None
        for i in range(n):
            aspect = aspects[packed.sets[i]]
            rank = int(packed.ranks[i])
            box = tuple(int(v) for v in packed.boxes[i])
            row = rows.get((aspect, rank))
            if row is not None:  # exact float32 copy for the top candidates
                score, improvement = float(row.score), float(row.improvement)
                elements = unpack_vector(row.elements)
            else:
                score = float(packed.scores[i])
                improvement = score - float(run.full_score)
                elements = [float(v) for v in els[i]] if els is not None else None
            changes = None
            if elements is not None and full_el is not None:
                changes = [float(a - b) for a, b in zip(elements, full_el)]
            explanation = expl.get(row.id, []) if row is not None else []
            if not explanation and changes is not None and aspect != "full" and els is not None and full_idx is not None:
                # Below rank 1 nothing is stored: explain it as the pipeline would (scale-free).
                if relative is None:
                    full_els = np.asarray(els, dtype=np.float64).copy()
                    full_els[full_idx] = full_el
                    relative = _relative_top3(full_els, full_idx)
                explanation = relative[i]
            out.append(CropRecord(aspect, rank, box, _fractions(box, run.width, run.height), score, improvement,  # type: ignore[arg-type]
                                  explanation, elements, changes))
        order = {a: i for i, a in enumerate(aspects)}
        out.sort(key=lambda c: (c.aspect == "full", order[c.aspect], c.rank))
        return out

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
        w, h = detail.photo.width, detail.photo.height

        def pick(r: int | None, asp: str | None) -> CropRecord:
            if detail.run is None:
                raise StoreError(f"{detail.photo.path} has no scored crops to label by rank")
            asp = asp or (detail.photo.crop.aspect if detail.photo.crop else None)
            r = r or 1
            for c in detail.candidates:
                if c.aspect == asp and c.rank == r:
                    return c
            raise ConfigError(f"{detail.photo.path} has no candidate of rank {r} in set {asp}")

        def check(b: Box) -> Box:
            b = tuple(int(v) for v in b)  # type: ignore[assignment]
            if len(b) != 4 or b[0] >= b[2] or b[1] >= b[3] or min(b) < 0 or (w and b[2] > w) or (h and b[3] > h):
                raise ConfigError(f"box {','.join(map(str, b))} is not inside the {w}x{h} photo (x1,y1,x2,y2)")
            return b

        values: dict[str, Any] = dict(kind=kind, source=source, width=w, height=h, created_at=utcnow(),
                                      model_version_id=model_version_id, run_id=detail.run.id if detail.run else None)
        if kind in ("accept", "reject"):
            if box is not None:
                b = check(box)
                values.update(aspect=aspect, rank=rank)
            else:
                c = pick(rank, aspect)
                b = c.box
                values.update(aspect=c.aspect, rank=c.rank)
            values.update(x1=b[0], y1=b[1], x2=b[2], y2=b[3])
        elif kind == "box":
            if box is None:
                raise ConfigError("a box label needs --box x1,y1,x2,y2")
            b = check(box)
            values.update(aspect=aspect, x1=b[0], y1=b[1], x2=b[2], y2=b[3])
        else:
            if box is not None:
                a = check(box)
            else:
                ca = pick(rank, aspect)
                a = ca.box
                values.update(rank=ca.rank, aspect=ca.aspect)
            if other is not None:
                o = check(other)
            elif other_rank is not None:
                co = pick(other_rank, aspect or values.get("aspect"))
                o = co.box
                values.update(other_rank=co.rank)
            else:
                raise ConfigError("a preference needs the crop it is preferred over (--over)")
            if tuple(a) == tuple(o):
                raise ConfigError("a preference needs two different crops")
            values.update(x1=a[0], y1=a[1], x2=a[2], y2=a[3], ox1=o[0], oy1=o[1], ox2=o[2], oy2=o[3])
        with self._write() as conn:
            return int(conn.execute(insert(L).values(photo_id=detail.photo.id, **values)).inserted_primary_key[0])

    def labels(self, *, kinds: Sequence[str] | None = None, photo_id: int | None = None,
               since: datetime | None = None, source: str | None = None) -> list[LabelRecord]:
        """Labels (oldest first) for the trainer; boxes are in the photo's upright pixels."""
        q = select(L, P.c.path).join(P, P.c.id == L.c.photo_id).order_by(L.c.id)
        if kinds:
            q = q.where(L.c.kind.in_(list(kinds)))
        if photo_id is not None:
            q = q.where(L.c.photo_id == photo_id)
        if since is not None:
            q = q.where(L.c.created_at >= since)
        if source is not None:
            q = q.where(L.c.source == source)
        with self._read() as conn:
            rows = conn.execute(q).all()

        def box(a: Any, b: Any, c: Any, d: Any) -> Box | None:
            return None if a is None else (int(a), int(b), int(c), int(d))

        return [LabelRecord(r.id, r.photo_id, r.path, r.kind, r.aspect, r.rank, box(r.x1, r.y1, r.x2, r.y2),
                            r.other_rank, box(r.ox1, r.oy1, r.ox2, r.oy2), r.width, r.height, r.source,
                            r.created_at, r.run_id, r.model_version_id) for r in rows]

    # -- model versions -------------------------------------------------------------------------

    def register_model_version(
        self, name: str, checkpoint_path: str, sha256: str, *, parent_id: int | None = None,
        data_summary: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None, activate: bool = False,
    ) -> int:
        """Add a checkpoint (unique by ``sha256``; registering the same file again returns its id)."""
        with self._write() as conn:
            existing = conn.execute(select(M.c.id).where(M.c.sha256 == sha256)).scalar()
            if existing is not None:
                mid = int(existing)
            else:
                try:
                    mid = int(conn.execute(insert(M).values(
                        name=name, checkpoint_path=str(checkpoint_path), sha256=sha256, parent_id=parent_id,
                        data_summary=json.dumps(data_summary) if data_summary is not None else None,
                        metrics=json.dumps(metrics) if metrics is not None else None, created_at=utcnow(),
                        active=False)).inserted_primary_key[0])
                except IntegrityError as exc:
                    raise StoreError(f"cannot register model {name}: {exc.orig}") from exc
            if activate:
                conn.execute(update(M).values(active=M.c.id == mid))
        return mid

    def _mv(self, r: Any) -> ModelVersionRecord:
        return ModelVersionRecord(r.id, r.name, r.checkpoint_path, r.sha256, r.parent_id,
                                  json.loads(r.data_summary) if r.data_summary else None,
                                  json.loads(r.metrics) if r.metrics else None, r.created_at, bool(r.active))

    def model_versions(self) -> list[ModelVersionRecord]:
        """Every registered model version, oldest first."""
        with self._read() as conn:
            return [self._mv(r) for r in conn.execute(select(M).order_by(M.c.id))]

    def active_model_version(self) -> ModelVersionRecord | None:
        """The model version in use, if one was activated."""
        with self._read() as conn:
            r = conn.execute(select(M).where(M.c.active == True)).first()  # noqa: E712
        return self._mv(r) if r else None

    def set_active_model(self, version: int | str) -> ModelVersionRecord:
        """Activate a model version by id, sha256 (or unique prefix) or name; the others stay available."""
        with self._write() as conn:
            q = select(M)
            if isinstance(version, int) or str(version).isdigit():
                rows = conn.execute(q.where(M.c.id == int(version))).all()
            else:
                v = str(version)
                rows = conn.execute(q.where((M.c.sha256.startswith(v)) | (M.c.name == v))).all()
            if len(rows) != 1:
                raise StoreError(f"model version {version!r} " + ("is ambiguous" if rows else "is not registered"))
            conn.execute(update(M).values(active=M.c.id == rows[0].id))
            return self._mv(conn.execute(select(M).where(M.c.id == rows[0].id)).one())
