"""The bulk write path: scored photos into ``photos``, ``scoring_runs``, ``crops`` and
``explanations`` inside one write transaction the ``Store`` opened.

Built for throughput (a scan records hundreds of photos per transaction): every table gets one
multi-row write per batch through SQLAlchemy Core or the driver itself; no ORM object is built
per candidate, and ids are assigned here so child rows need no read-back per row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from ..elements import ELEMENT_NAMES
from ..results import ElementChange, Suggestion
from .models import CROPS, EXPLANATIONS, PHOTOS, RUNS, TOP_K, utcnow, weights_key
from .packing import pack_candidates, pack_elements, pack_subjects, pack_vector
from .queries import _PREFIX_END, COMPANION_SUFFIXES, pair_kind
from .records import relative_top3

# (suggestion, content_hash, mtime, size): one photo to record.
Item = tuple[Suggestion, str, float | None, int | None]

_ELEMENT_INDEX = {name: i for i, name in enumerate(ELEMENT_NAMES)}
_COMPANION_RANK = {suffix: i for i, suffix in enumerate(COMPANION_SUFFIXES)}
# Built once: a statement object per call would cost more than the query itself.
_SAME_STEM_SQL = select(PHOTOS.c.path, PHOTOS.c.id).where(
    PHOTOS.c.path >= bindparam("lo"), PHOTOS.c.path < bindparam("hi"))
_PG_SAME_STEM_SQL = (
    "SELECT photos.path, photos.id FROM unnest(%(lo)s::text[], %(hi)s::text[]) AS bounds(lo, hi)"
    " JOIN photos ON photos.path >= bounds.lo AND photos.path < bounds.hi"
)


def record_batch(conn: Connection, items: Iterable[Item]) -> list[int]:
    """Record every item (a failed suggestion as a failure), pair RAW + JPEG files among them,
    and return the photo ids in input order."""
    items = list(items)
    ids: list[int | None] = [None] * len(items)
    scored = []
    for index, (suggestion, content_hash, mtime, size) in enumerate(items):
        if suggestion.ok and suggestion.info is not None and suggestion.n_candidates:
            scored.append(index)
        else:
            ids[index] = upsert_failure(conn, suggestion.path, suggestion.error or "not scored", content_hash,
                                        mtime, size)
    if scored:
        for index, photo_id in zip(scored, insert_scored(conn, [items[i] for i in scored])):
            ids[index] = photo_id
    link_pairs(conn, [suggestion.path for suggestion, *_ in items])
    return [int(i) for i in ids if i is not None]


def insert_scored(conn: Connection, items: list[Item]) -> list[int]:
    """Store scored suggestions; each new run becomes its photo's active run. Returns photo ids.

    Runs of the same scorer+weights, and runs of an older content of the file, are replaced;
    runs of other scorers for the same content are kept.
    """
    # Later duplicates of a path in one batch win, as if written one after another.
    last = {suggestion.path: index for index, (suggestion, *_rest) in enumerate(items)}
    items = [items[index] for index in sorted(last.values())]
    paths = [suggestion.path for suggestion, *_ in items]
    existing: dict[str, int] = {}
    for start in range(0, len(paths), 500):
        chunk = paths[start:start + 500]
        existing.update((path, photo_id) for path, photo_id in
                        conn.execute(select(PHOTOS.c.path, PHOTOS.c.id).where(PHOTOS.c.path.in_(chunk))))
    now = utcnow()
    new_rows = [dict(path=suggestion.path, created_at=now, **photo_values(suggestion, content_hash, mtime, size))
                for suggestion, content_hash, mtime, size in items if suggestion.path not in existing]
    if new_rows:
        existing.update(zip((row["path"] for row in new_rows), insert_with_ids(conn, PHOTOS, new_rows)))
    photo_ids = [existing[path] for path in paths]
    new_paths = {row["path"] for row in new_rows}
    for (suggestion, content_hash, mtime, size), photo_id in zip(items, photo_ids):
        if suggestion.path in new_paths:
            continue  # a new photo has no runs to supersede
        _supersede(conn, photo_id, suggestion, content_hash, mtime, size)

    run_rows, per_photo = [], []
    for (suggestion, content_hash, _mtime, _size), photo_id in zip(items, photo_ids):
        run_row, crop_rows, explanations = pack_run(suggestion, content_hash, photo_id, now)
        run_rows.append(run_row)
        per_photo.append((crop_rows, explanations))
    run_ids = insert_with_ids(conn, RUNS, run_rows)
    all_crops: list[dict[str, Any]] = []
    all_explanations: list[list[ElementChange]] = []
    for run_id, (crop_rows, explanations) in zip(run_ids, per_photo):
        for crop_row in crop_rows:
            crop_row["run_id"] = run_id
        all_crops += crop_rows
        all_explanations += explanations
    crop_ids = insert_with_ids(conn, CROPS, all_crops)
    explanation_rows = [
        dict(crop_id=crop_id, position=position, element=_ELEMENT_INDEX[change.element], change=float(change.change))
        for crop_id, changes in zip(crop_ids, all_explanations)
        for position, change in enumerate(changes[:3], start=1)
    ]
    if explanation_rows:
        insert_rows(conn, EXPLANATIONS, explanation_rows)
    return photo_ids


def _supersede(conn: Connection, photo_id: int, suggestion: Suggestion, content_hash: str,
               mtime: float | None, size: int | None) -> None:
    """An existing photo is re-recorded: new photo columns, its replaced runs deleted, the rest inactive."""
    conn.execute(update(PHOTOS).where(PHOTOS.c.id == photo_id)
                 .values(**photo_values(suggestion, content_hash, mtime, size)))
    weights, scorer = weights_key(suggestion.weights_hash), suggestion.scorer or "unknown"
    # Superseded runs: same scorer+weights (a re-score), or an older content of the file.
    stale = select(RUNS.c.id).where(
        RUNS.c.photo_id == photo_id,
        (RUNS.c.content_hash != content_hash) | ((RUNS.c.scorer == scorer) & (RUNS.c.weights_hash == weights)))
    conn.execute(delete(RUNS).where(RUNS.c.id.in_(stale)))
    conn.execute(update(RUNS).where(RUNS.c.photo_id == photo_id, RUNS.c.active == True)  # noqa: E712
                 .values(active=False))
    conn.execute(update(CROPS).where(CROPS.c.photo_id == photo_id, CROPS.c.active == True)  # noqa: E712
                 .values(active=False))


def photo_values(suggestion: Suggestion, content_hash: str, mtime: float | None, size: int | None) -> dict[str, Any]:
    """The ``photos`` columns of a scored photo (all but path and created_at)."""
    info = suggestion.info
    assert info is not None
    return dict(
        folder=str(Path(suggestion.path).parent), content_hash=content_hash, width=info.width, height=info.height,
        stored_width=info.stored_width, stored_height=info.stored_height, orientation=info.orientation,
        format=info.format, taken_at=info.taken_at, camera_make=info.camera_make,
        camera_model=info.camera_model, status="scored", error=None, offline=False, mtime=mtime,
        size=size, updated_at=utcnow(),
    )


def upsert_photo(conn: Connection, path: str, values: dict[str, Any]) -> int:
    """Update the row at ``path`` with ``values``, or insert one; returns its id."""
    photo_id = conn.execute(select(PHOTOS.c.id).where(PHOTOS.c.path == path)).scalar()
    if photo_id is None:
        return int(conn.execute(insert(PHOTOS).values(path=path, created_at=utcnow(), **values))
                   .inserted_primary_key[0])
    conn.execute(update(PHOTOS).where(PHOTOS.c.id == photo_id).values(**values))
    return int(photo_id)


def upsert_failure(conn: Connection, path: str, reason: str, content_hash: str | None, mtime: float | None,
                   size: int | None) -> int:
    """Mark ``path`` failed with ``reason``; its earlier runs are kept. Returns its id."""
    values: dict[str, Any] = dict(folder=str(Path(path).parent), status="failed", error=reason,
                                  mtime=mtime, size=size, updated_at=utcnow())
    if content_hash is not None:
        values["content_hash"] = content_hash
    return upsert_photo(conn, path, values)


def link_pairs(conn: Connection, paths: Sequence[str]) -> None:
    """Pair each RAW among ``paths`` with the JPEG/HEIF the camera wrote beside it (same folder,
    same name), and each such JPEG with its RAW: both rows learn the other's id and their role."""
    kinds = {path: kind for path in dict.fromkeys(paths) if (kind := pair_kind(path))}
    if not kinds:
        return
    stem = {path: path[: len(path) - len(os.path.splitext(path)[1])] for path in kinds}
    # Every row named "<folder>/<stem>.*": one seek of the unique path index per photo.
    prefixes = sorted({base + "." for base in stem.values()})
    found: list[tuple[str, int]] = []
    if conn.dialect.name == "sqlite":
        # All seeks in one statement: SQLite walks the VALUES list and seeks the index per row.
        for start in range(0, len(prefixes), 400):
            chunk = prefixes[start:start + 400]
            values = ", ".join("(?, ?)" for _ in chunk)
            args = tuple(bound for base in chunk for bound in (base, base + _PREFIX_END))
            sql = ("WITH bounds(lo, hi) AS (VALUES " + values + ") SELECT photos.path, photos.id FROM bounds"
                   " JOIN photos ON photos.path >= bounds.lo AND photos.path < bounds.hi")
            found += [(path, int(photo_id)) for path, photo_id in conn.exec_driver_sql(sql, args)]
    elif conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        # The same in one round trip: the bounds travel as two arrays, and the planner seeks the
        # path index once per element (a statement per photo cost ~30% of a batch's time).
        # Never prepared: psycopg prepares a statement run 5 times, and PostgreSQL's generic plan
        # for it (array sizes unknown) scans the whole table: ~0.5 s a batch at 10,000 photos.
        with conn.connection.cursor() as cursor:  # the DBAPI cursor, inside our transaction
            cursor.execute(_PG_SAME_STEM_SQL, {"lo": prefixes, "hi": [base + _PREFIX_END for base in prefixes]},
                           prepare=False)
            found += [(path, int(photo_id)) for path, photo_id in cursor.fetchall()]
    else:
        for base in prefixes:
            found += [(path, int(photo_id))
                      for path, photo_id in conn.execute(_SAME_STEM_SQL, {"lo": base, "hi": base + _PREFIX_END})]
    ids = dict(found)
    by_stem: dict[str, list[str]] = {}
    for path, _photo_id in found:
        by_stem.setdefault(path[: len(path) - len(os.path.splitext(path)[1])], []).append(path)
    for path, kind in kinds.items():
        if path not in ids:
            continue
        others = [other for other in by_stem.get(stem[path], ())
                  if other != path and pair_kind(other) not in (None, kind)]
        if not others:
            continue
        # A RAW's JPEG before its HEIF; a JPEG's RAWs by name (one camera writes one of them).
        other = min(others, key=lambda name: (_COMPANION_RANK.get(os.path.splitext(name)[1].lower(), 0), name))
        raw_path, companion = (path, other) if kind == "raw" else (other, path)
        conn.execute(update(PHOTOS).where(PHOTOS.c.id == ids[raw_path])
                     .values(pair_id=ids[companion], pair_role="raw"))
        conn.execute(update(PHOTOS).where(PHOTOS.c.id == ids[companion])
                     .values(pair_id=ids[raw_path], pair_role="companion"))


def insert_with_ids(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` and return their ids in order (each row dict gets its ``id``).

    SQLite cannot return ids of a multi-row INSERT in a guaranteed order, and SQLAlchemy falls
    back to one statement per row for that (~10x slower). Inside our ``BEGIN IMMEDIATE``
    transaction we are the only writer, so ids are assigned here and the rows go in as one
    executemany. PostgreSQL takes them from the table's sequence; other backends use ordered
    RETURNING.
    """
    if not rows:
        return []
    dialect = conn.dialect.name
    if dialect == "sqlite":
        start = int(conn.execute(select(func.max(table.c.id))).scalar() or 0) + 1
        ids = list(range(start, start + len(rows)))
    elif dialect == "postgresql":
        # Ids drawn from the table's sequence in one round trip, so the rows can go in by COPY
        # (no RETURNING) and child rows know their parents' ids; unique under concurrent
        # writers because nextval never hands one out twice.
        ids = sorted(conn.exec_driver_sql(
            "SELECT nextval(pg_get_serial_sequence(%(t)s, 'id')) FROM generate_series(1, %(n)s)",
            {"t": table.name, "n": len(rows)}).scalars())
    else:
        return list(conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars())
    for row_id, row in zip(ids, rows):
        row["id"] = row_id
    insert_rows(conn, table, rows)
    return ids


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows (all with the same keys), each backend's fastest way.

    SQLite: straight to the driver's executemany (values stored exactly as SQLAlchemy would
    store them), as SQLAlchemy's per-row parameter processing costs more than SQLite's own work.
    PostgreSQL (psycopg 3): one binary ``COPY ... FROM STDIN`` per table and batch, streamed in
    the transaction; SQLAlchemy's executemany, even pipelined, binds and executes row by row and
    spent ~3x the client time.
    """
    columns = list(rows[0])
    dialect = conn.dialect.name
    if dialect == "sqlite":
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        conn.exec_driver_sql(sql, [tuple(_sqlite_value(row[column]) for column in columns) for row in rows])
    elif dialect == "postgresql" and conn.dialect.driver == "psycopg":
        # Binary COPY: no text to format here or parse there (the runs' BLOBs would travel as
        # hex). The columns' types need no bind processing on PostgreSQL (integers, floats,
        # text, booleans, bytea and naive timestamps go to psycopg as they are), so COPY stores
        # exactly what an INSERT through SQLAlchemy would.
        with conn.connection.cursor() as cursor:  # the DBAPI cursor, inside our transaction
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([_binary_type(table.c[column]) for column in columns])
                for row in rows:
                    copy.write_row(tuple(row[column] for column in columns))
    else:
        conn.execute(insert(table), rows)


# SQLAlchemy column types -> the PostgreSQL type whose binary format COPY must send (the schema
# is the models', which the migrations test keeps equal to the database's).
_BINARY_TYPES = {BigInteger: "int8", Integer: "int4", SmallInteger: "int2", Float: "float8", String: "text", Text: "text",
                 Boolean: "bool", LargeBinary: "bytea", DateTime: "timestamp"}


_PG_DIALECT = postgresql.dialect()


def _binary_type(column: Column[Any]) -> str:
    """The binary COPY type of ``column``; ``TypeError`` for a column type without one."""
    # A variant column (``Integer().with_variant(BigInteger(), "postgresql")``) sends the type
    # it has on PostgreSQL.
    column_type = column.type.dialect_impl(_PG_DIALECT)
    for kind in type(column_type).__mro__:
        if kind in _BINARY_TYPES:
            return _BINARY_TYPES[kind]
    raise TypeError(f"no binary COPY type for {column.table.name}.{column.name} ({column.type})")


def _sqlite_value(value: Any) -> Any:
    """A value as SQLAlchemy's SQLite dialect stores it (DateTime: ISO text with microseconds)."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    return value


def pack_run(suggestion: Suggestion, content_hash: str, photo_id: int, now: datetime
             ) -> tuple[dict[str, Any], list[dict[str, Any]], list[list[ElementChange]]]:
    """The ``scoring_runs`` row (every candidate packed) of one suggestion, its queryable
    ``crops`` rows (``run_id`` still unset) and each crop row's top-3 element changes.

    Works from the suggestion's columns (:attr:`Suggestion.candidates`): only the few queryable
    rows are looked at one by one, never the hundreds of candidates as objects."""
    info = suggestion.info
    assert info is not None
    table = suggestion.candidates
    n = len(table)
    full_i = table.full_index
    ranks = table.ranks
    scores = table.scores.astype(np.float32)
    elements = table.elements
    best_i = suggestion.best_row()
    best = suggestion.crop(best_i) if best_i is not None else None
    full_score = float(table.scores[full_i]) if full_i is not None else float(scores.max())
    run = dict(
        photo_id=photo_id, content_hash=content_hash, scorer=suggestion.scorer or "unknown",
        weights_hash=weights_key(suggestion.weights_hash), device=suggestion.device, created_at=now, active=True,
        width=info.width, height=info.height, n_candidates=n, aspects=",".join(table.set_names), full_score=full_score,
        best_score=float(best.score) if best else None, best_improvement=float(best.improvement) if best else None,
        candidates=pack_candidates(table.boxes.reshape(n, 4), scores, table.sets.astype(np.uint8),
                                   ranks.astype(np.uint16)),
        elements=pack_elements(elements.astype(np.float32)) if elements is not None else None,
        subjects=None if suggestion.subjects_error else pack_subjects(suggestion.subjects),
    )
    crop_rows: list[dict[str, Any]] = []
    explanations: list[list[ElementChange]] = []
    full_code = table.code("full")
    fallback: list[list[ElementChange]] | None = None  # for a plugin's Suggestion without explanations
    keep = ranks <= TOP_K
    if best_i is not None:
        keep[best_i] = True
    rows = np.flatnonzero(keep)
    boxes = table.boxes[rows].tolist()
    values = zip(rows.tolist(), boxes, table.sets[rows].tolist(), ranks[rows].tolist(), table.scores[rows].tolist(),
                 table.improvements[rows].tolist())
    for row, (x1, y1, x2, y2), code, rank, score, improvement in values:
        changes: list[ElementChange] = []
        if rank == 1 and code != full_code:
            stated = suggestion.explanation(row)
            if not stated and elements is not None and full_i is not None:
                if fallback is None:
                    fallback = relative_top3(elements, full_i)
                stated = fallback[row]
            changes = [change for change in stated if change.element in _ELEMENT_INDEX][:3]
        enhances = reduces = 0
        for change in changes:
            if change.change > 0:
                enhances |= 1 << _ELEMENT_INDEX[change.element]
            elif change.change < 0:
                reduces |= 1 << _ELEMENT_INDEX[change.element]
        vector = suggestion.element_scores(row)
        crop_rows.append(dict(
            run_id=None, photo_id=photo_id, active=True, best=row == best_i, aspect=table.set_names[code],
            rank=int(rank), x1=int(x1), y1=int(y1), x2=int(x2), y2=int(y2), score=float(score),
            improvement=float(improvement), enhances=enhances, reduces=reduces,
            elements=pack_vector(vector) if vector is not None else None,
        ))
        explanations.append(changes)
    return run, crop_rows, explanations
