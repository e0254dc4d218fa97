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
from .models import CropRow, Label, Photo, ScoringRun

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


def effective_sort(f: QueryFilters, sort: str) -> str:
    """``sort``, except that photos without crops (failed, pending, gone) are listed by path.

    Score sorts list scored photos only, so ``--status failed`` with the default sort would
    otherwise list nothing at all.
    """
    if sort not in SORTS:
        raise ConfigError(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
    if f.status in ("failed", "pending", "gone") and sort in ("improvement", "score"):
        return "path"
    return sort


def build_query(f: QueryFilters, sort: str, dialect: str, *, count: bool = False) -> Select:  # type: ignore[type-arg]
    """The SELECT for ``f``: columns of ``photos`` plus the selected crop's columns (or NULLs).

    With ``count``, ``SELECT count(*)`` over the same rows (no crops join unless a filter needs it).
    """
    sort = effective_sort(f, sort)
    p, c = Photo.__table__, CropRow.__table__
    # A path range selects a small part of the library: drive the query from the photos' path
    # index then, not from the crops' improvement index (which SQLite would otherwise walk,
    # filtering out ~99% of rows). "+ 0" hides a column from the planner's index choice.
    narrow = dialect == "sqlite" and bool(f.folder or (f.path_glob and _literal_prefix(f.path_glob)))

    def flag(col):  # type: ignore[no-untyped-def]
        if narrow:
            return (type_coerce(col, Integer) + 0) == 1
        return col == True  # noqa: E712 - "= 1" is indexable, "IS 1" may not be

    crop_cond: list[ColumnElement[bool]] = [c.c.photo_id == p.c.id]
    if f.aspect:
        crop_cond += [(c.c.aspect + "" if narrow else c.c.aspect) == f.aspect, c.c.rank == 1]
    else:
        crop_cond.append(flag(c.c.best))
    if f.scorer:
        r = ScoringRun.__table__
        newest = select(func.max(r.c.id)).where(r.c.photo_id == p.c.id, r.c.scorer == f.scorer)
        if f.weights_hash is not None:
            newest = newest.where(r.c.weights_hash == f.weights_hash)
        crop_cond.append(c.c.run_id == newest.scalar_subquery())
    else:
        crop_cond.append(flag(c.c.active))

    # Score sorts and score filters only make sense for scored photos: drive the query from the
    # crops index then (ORDER BY improvement LIMIT 50 becomes an index walk).
    inner = f.needs_crop() or sort in ("improvement", "score", "uncertain")
    pc = p.c
    pair = p.alias("pair")
    cols = [pc.id, pc.path, pc.folder, pc.status, pc.error, pc.offline, pc.width, pc.height, pc.taken_at,
            pc.camera_make, pc.camera_model, pc.content_hash, c.c.id.label("crop_id"), c.c.run_id, c.c.aspect,
            c.c.rank, c.c.x1, c.c.y1, c.c.x2, c.c.y2, c.c.score, c.c.improvement, c.c.elements,
            pc.pair_role, select(pair.c.path).where(pair.c.id == pc.pair_id).scalar_subquery().label("pair_path")]
    if count:
        cols = [func.count()]
    if inner:
        q = select(*cols).select_from(c.join(p, and_(*crop_cond)))
    elif count:
        q = select(*cols).select_from(p)  # the outer join adds no rows: one selected crop per photo
    else:
        q = select(*cols).select_from(p.outerjoin(c, and_(*crop_cond)))

    where: list[ColumnElement[bool]] = []
    if f.folder:
        folder = f.folder.rstrip("/\\") or "/"
        sep = "" if folder.endswith(("/", "\\")) else "/"
        # A range over the unique path index: it also yields rows already in path order.
        where += [p.c.path >= folder + sep, p.c.path < folder + sep + _PREFIX_END]
    if f.path_glob:
        prefix = _literal_prefix(f.path_glob)
        if prefix:
            where += [p.c.path >= prefix, p.c.path < prefix + _PREFIX_END]
        if dialect == "sqlite":
            where.append(p.c.path.op("GLOB")(f.path_glob))
        else:
            where.append(p.c.path.like(_glob_to_like(f.path_glob), escape="\\"))
    if f.status:
        where.append(p.c.status == f.status)
    elif not f.include_gone:
        where.append(p.c.status != "gone")
    if not f.all_files:
        # One row per shot: a RAW's JPEG companion is left out while the RAW itself is scored.
        scored_raw = exists().where(pair.c.id == pc.pair_id, pair.c.status == "scored")
        where.append(or_(pc.pair_role.is_(None), pc.pair_role != "companion", ~scored_raw))
    if f.min_score is not None:
        where.append(c.c.score >= f.min_score)
    if f.min_improvement is not None:
        where.append(c.c.improvement >= f.min_improvement)
    if f.enhances:
        where.append(c.c.enhances.op("&")(1 << element_index(f.enhances)) != 0)
    if f.reduces:
        where.append(c.c.reduces.op("&")(1 << element_index(f.reduces)) != 0)
    if f.labelled is not None:
        has = exists().where(Label.__table__.c.photo_id == p.c.id)
        where.append(has if f.labelled else ~has)
    if f.taken_after:
        where.append(p.c.taken_at >= f.taken_after)
    if f.taken_before:
        where.append(p.c.taken_at <= f.taken_before)
    if f.camera:
        pat = "%" + _glob_to_like(f.camera) + "%"
        where.append(or_(p.c.camera_model.ilike(pat, escape="\\"), p.c.camera_make.ilike(pat, escape="\\")))
    if where:
        q = q.where(and_(*where))

    if count:
        return q
    if sort == "improvement":
        # Ties broken by crop id (the rowid ends every index): still a pure index walk.
        q = q.order_by(c.c.improvement.desc(), c.c.id.desc())
    elif sort == "score":
        q = q.order_by(c.c.score.desc(), c.c.id.desc())
    elif sort == "uncertain":
        # Most uncertain first: the selected crop leads the runner-up of its set (rank 2) by the
        # least, so a label there teaches personalization most. No runner-up: last.
        r2 = CropRow.__table__.alias("runner_up")
        runner = select(r2.c.score).where(r2.c.run_id == c.c.run_id, r2.c.aspect == c.c.aspect,
                                          r2.c.rank == 2).limit(1).scalar_subquery()
        q = q.order_by((c.c.score - runner).asc().nulls_last(), c.c.id.desc())
    elif sort == "path":
        q = q.order_by(p.c.path)
    else:
        q = q.order_by(p.c.taken_at.desc().nulls_last(), p.c.path)
    return q

