"""Query filters for :meth:`Store.query`, turned into one indexed SQL statement."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, Select, and_, exists, func, or_, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from ..elements import ELEMENT_NAMES, element
from ..errors import ConfigError
from ..photofiles import RAW_SUFFIXES
from .models import CROPS, LABELS, PHOTOS, RUNS

SORTS = ("improvement", "score", "path", "taken", "uncertain")
_PREFIX_END = "\U0010ffff"  # sorts after every character: [prefix, prefix+END) is "starts with"


@dataclass
class QueryFilters:
    """What :meth:`Store.query` selects. Every field is optional; unset means "any".

    ``folder`` matches the folder and everything below it; ``path_glob`` is a shell pattern over
    the absolute path (``*`` crosses ``/``). Score filters (``min_score``, ``min_improvement``,
    ``enhances``, ``reduces``, ``aspect``, ``scorer``) apply to the photo's *selected crop*: the
    rank-1 crop of ``aspect`` when given, else the best crop over all sets, from the active run
    (or, with ``scorer``, from that scorer's newest run). ``enhances``/``reduces`` look at the
    selected crop's top-3 element changes.
    """

    folder: str | None = None
    path_glob: str | None = None
    status: str | None = None
    scorer: str | None = None
    weights_hash: str | None = None
    aspect: str | None = None
    min_score: float | None = None
    min_improvement: float | None = None
    enhances: str | None = None
    reduces: str | None = None
    labelled: bool | None = None
    taken_after: datetime | None = None
    taken_before: datetime | None = None
    camera: str | None = None
    include_gone: bool = False
    all_files: bool = False  # list the JPEG of a scored RAW + JPEG shot as its own row too

    def needs_crop(self) -> bool:
        return any(
            v is not None
            for v in (self.scorer, self.aspect, self.min_score, self.min_improvement, self.enhances, self.reduces)
        )


# What cameras write beside a RAW for the same shot, in order of preference as its companion.
COMPANION_SUFFIXES = (".jpg", ".jpeg", ".heic", ".heif", ".hif")


def pair_kind(path: str) -> str | None:
    """``"raw"`` or ``"companion"`` for a file that can be one half of a RAW + JPEG shot, else None."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in RAW_SUFFIXES:
        return "raw"
    return "companion" if suffix in COMPANION_SUFFIXES else None


def element_index(name: str) -> int:
    """Index of an element name (``rule_of_thirds``, ``rule-of-thirds``...); ``ConfigError`` if unknown."""
    try:
        return ELEMENT_NAMES.index(element(name).name)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def _glob_to_like(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def _literal_prefix(pattern: str) -> str:
    m = re.match(r"[^*?\[]*", pattern)
    return m.group(0) if m else ""


def effective_sort(filters: QueryFilters, sort: str) -> str:
    """``sort``, except that photos without crops (failed, pending, gone) are listed by path.

    Score sorts list scored photos only, so ``--status failed`` with the default sort would
    otherwise list nothing at all.
    """
    if sort not in SORTS:
        raise ConfigError(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
    if filters.status in ("failed", "pending", "gone") and sort in ("improvement", "score"):
        return "path"
    return sort


def build_query(filters: QueryFilters, sort: str, dialect: str, *, count: bool = False) -> Select:  # type: ignore[type-arg]
    """The SELECT for ``filters``: columns of ``photos`` plus the selected crop's columns (or NULLs).

    With ``count``, ``SELECT count(*)`` over the same rows (no crops join unless a filter needs it).
    """
    sort = effective_sort(filters, sort)
    # A path range selects a small part of the library: drive the query from the photos' path
    # index then, not from the crops' improvement index (which SQLite would otherwise walk,
    # filtering out ~99% of rows). "+ 0" hides a column from the planner's index choice.
    narrow = dialect == "sqlite" and bool(filters.folder or (filters.path_glob and _literal_prefix(filters.path_glob)))

    def flag(col):  # type: ignore[no-untyped-def]
        if narrow:
            return (type_coerce(col, Integer) + 0) == 1
        return col == True  # noqa: E712 - "= 1" is indexable, "IS 1" may not be

    crop_cond: list[ColumnElement[bool]] = [CROPS.c.photo_id == PHOTOS.c.id]
    if filters.aspect:
        crop_cond += [(CROPS.c.aspect + "" if narrow else CROPS.c.aspect) == filters.aspect, CROPS.c.rank == 1]
    else:
        crop_cond.append(flag(CROPS.c.best))
    if filters.scorer:
        newest = select(func.max(RUNS.c.id)).where(RUNS.c.photo_id == PHOTOS.c.id, RUNS.c.scorer == filters.scorer)
        if filters.weights_hash is not None:
            newest = newest.where(RUNS.c.weights_hash == filters.weights_hash)
        crop_cond.append(CROPS.c.run_id == newest.scalar_subquery())
    else:
        crop_cond.append(flag(CROPS.c.active))

    # Score sorts and score filters only make sense for scored photos: drive the query from the
    # crops index then (ORDER BY improvement LIMIT 50 becomes an index walk).
    inner = filters.needs_crop() or sort in ("improvement", "score", "uncertain")
    photo, crop = PHOTOS.c, CROPS.c
    pair = PHOTOS.alias("pair")
    cols = [photo.id, photo.path, photo.folder, photo.status, photo.error, photo.offline, photo.width, photo.height,
            photo.taken_at, photo.camera_make, photo.camera_model, photo.content_hash, crop.id.label("crop_id"),
            crop.run_id, crop.aspect, crop.rank, crop.x1, crop.y1, crop.x2, crop.y2, crop.score, crop.improvement,
            crop.elements, photo.pair_role,
            select(pair.c.path).where(pair.c.id == photo.pair_id).scalar_subquery().label("pair_path")]
    if count:
        cols = [func.count()]
    if inner:
        statement = select(*cols).select_from(CROPS.join(PHOTOS, and_(*crop_cond)))
    elif count:
        statement = select(*cols).select_from(PHOTOS)  # the outer join adds no rows: one selected crop per photo
    else:
        statement = select(*cols).select_from(PHOTOS.outerjoin(CROPS, and_(*crop_cond)))

    where: list[ColumnElement[bool]] = []
    if filters.folder:
        folder = filters.folder.rstrip("/\\") or "/"
        sep = "" if folder.endswith(("/", "\\")) else "/"
        # A range over the unique path index: it also yields rows already in path order.
        where += [PHOTOS.c.path >= folder + sep, PHOTOS.c.path < folder + sep + _PREFIX_END]
    if filters.path_glob:
        prefix = _literal_prefix(filters.path_glob)
        if prefix:
            where += [PHOTOS.c.path >= prefix, PHOTOS.c.path < prefix + _PREFIX_END]
        if dialect == "sqlite":
            where.append(PHOTOS.c.path.op("GLOB")(filters.path_glob))
        else:
            where.append(PHOTOS.c.path.like(_glob_to_like(filters.path_glob), escape="\\"))
    if filters.status:
        where.append(PHOTOS.c.status == filters.status)
    elif not filters.include_gone:
        where.append(PHOTOS.c.status != "gone")
    if not filters.all_files:
        # One row per shot: a RAW's JPEG companion is left out while the RAW itself is scored.
        scored_raw = exists().where(pair.c.id == photo.pair_id, pair.c.status == "scored")
        where.append(or_(photo.pair_role.is_(None), photo.pair_role != "companion", ~scored_raw))
    if filters.min_score is not None:
        where.append(CROPS.c.score >= filters.min_score)
    if filters.min_improvement is not None:
        where.append(CROPS.c.improvement >= filters.min_improvement)
    if filters.enhances:
        where.append(CROPS.c.enhances.op("&")(1 << element_index(filters.enhances)) != 0)
    if filters.reduces:
        where.append(CROPS.c.reduces.op("&")(1 << element_index(filters.reduces)) != 0)
    if filters.labelled is not None:
        has = exists().where(LABELS.c.photo_id == PHOTOS.c.id)
        where.append(has if filters.labelled else ~has)
    if filters.taken_after:
        where.append(PHOTOS.c.taken_at >= filters.taken_after)
    if filters.taken_before:
        where.append(PHOTOS.c.taken_at <= filters.taken_before)
    if filters.camera:
        pat = "%" + _glob_to_like(filters.camera) + "%"
        where.append(or_(PHOTOS.c.camera_model.ilike(pat, escape="\\"), PHOTOS.c.camera_make.ilike(pat, escape="\\")))
    if where:
        statement = statement.where(and_(*where))

    if count:
        return statement
    if sort == "improvement":
        # Ties broken by crop id (the rowid ends every index): still a pure index walk.
        statement = statement.order_by(CROPS.c.improvement.desc(), CROPS.c.id.desc())
    elif sort == "score":
        statement = statement.order_by(CROPS.c.score.desc(), CROPS.c.id.desc())
    elif sort == "uncertain":
        # Most uncertain first: the selected crop leads the runner-up of its set (rank 2) by the
        # least, so a label there teaches personalization most. No runner-up: last.
        runner_up = CROPS.alias("runner_up")
        runner = select(runner_up.c.score).where(
            runner_up.c.run_id == CROPS.c.run_id, runner_up.c.aspect == CROPS.c.aspect, runner_up.c.rank == 2,
        ).limit(1).scalar_subquery()
        statement = statement.order_by((CROPS.c.score - runner).asc().nulls_last(), CROPS.c.id.desc())
    elif sort == "path":
        statement = statement.order_by(PHOTOS.c.path)
    else:
        statement = statement.order_by(PHOTOS.c.taken_at.desc().nulls_last(), PHOTOS.c.path)
    return statement

