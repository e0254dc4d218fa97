"""SQLAlchemy 2.x declarative models of the crop database (SPEC 10).

Layout, chosen so that 100,000 photos x ~90 candidates stay small and fast to query:

* ``photos``: one row per file path; ``content_hash`` links a moved/renamed file to its scores.
* ``scoring_runs``: one row per (photo, scorer pass). ALL candidates of the run are packed into
  two compact BLOBs (see :mod:`clipcrop_plugin.store.packing`): boxes/scores/sets, and the
  float16 element scores. Runs from other scorers/models are kept; exactly one run per photo has
  ``active = 1`` and queries read that one.
* ``crops``: the query index. Only the top few candidates of each set (rank <= ``TOP_K``) plus the
  full frame get a row, each with exact float32 element scores and the ``active``/``best`` flags
  copied from their run so every query is one indexed table walk.
* ``explanations``: the exact top-3 element changes of every rank-1 crop; the same top-3 are
  bitmasks on the crop row (``enhances``/``reduces``) inside its covering index, so "best crop
  enhances X" is a walk of the improvement index.
* ``labels`` and ``model_versions`` feed the trainer's personalization (SPEC 12).

Schema changes go through alembic revisions in the top-level ``migrations`` package only.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so alembic revisions and autogenerate agree on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PHOTO_STATUSES = ("pending", "scored", "failed", "gone", "offline")
LABEL_KINDS = ("accept", "reject", "box", "prefer")
TOP_K = 3  # candidates per set that get a queryable ``crops`` row


def weights_key(weights_hash: str | None) -> str:
    """The stored ``weights_hash`` of a scorer: ``""`` for a weights-free one (NULL would never
    compare equal, and the runs index needs one value per scorer)."""
    return weights_hash or ""


def utcnow() -> datetime:
    """Naive UTC timestamp (SQLite has no time zones; every stored time is UTC)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Photo(Base):
    """A photo file. ``path`` is absolute; ``folder`` its parent directory."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    folder: Mapped[str] = mapped_column(Text, index=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    width: Mapped[int | None] = mapped_column(Integer)  # upright (displayed) size
    height: Mapped[int | None] = mapped_column(Integer)
    stored_width: Mapped[int | None] = mapped_column(Integer)  # pixel array before orientation
    stored_height: Mapped[int | None] = mapped_column(Integer)
    orientation: Mapped[int | None] = mapped_column(SmallInteger)
    format: Mapped[str | None] = mapped_column(String(16))
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    camera_make: Mapped[str | None] = mapped_column(String(64))
    camera_model: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(8), default="pending", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    mtime: Mapped[float | None] = mapped_column(Float)  # what the last scan saw on disk
    # Bytes; files over 2 GiB exist. SQLite's INTEGER is 64-bit already (revision 0006).
    size: Mapped[int | None] = mapped_column(Integer().with_variant(BigInteger(), "postgresql"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # A camera's RAW + JPEG of one shot (IMG_1234.CR2 + IMG_1234.JPG): the other file's id, and
    # this file's role, "raw" (stands for the shot) or "companion". No foreign key: adding one
    # would make SQLite rebuild this table, and its CASCADE children would go with the old one.
    pair_id: Mapped[int | None] = mapped_column(Integer, index=True)
    pair_role: Mapped[str | None] = mapped_column(String(9))


class ScoringRun(Base):
    """One scorer pass over one photo, with every candidate packed into BLOBs."""

    __tablename__ = "scoring_runs"
    __table_args__ = (
        Index("ix_scoring_runs_hash_scorer", "content_hash", "scorer", "weights_hash"),
        Index("ix_scoring_runs_photo_active", "photo_id", "active"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    content_hash: Mapped[str] = mapped_column(String(64))
    scorer: Mapped[str] = mapped_column(String(64))
    weights_hash: Mapped[str] = mapped_column(String(64), default="")  # "" for weights-free scorers
    device: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    width: Mapped[int] = mapped_column(Integer)  # upright size the boxes refer to
    height: Mapped[int] = mapped_column(Integer)
    n_candidates: Mapped[int] = mapped_column(Integer)
    aspects: Mapped[str] = mapped_column(Text)  # set names, comma-separated; index = set code in the blob
    full_score: Mapped[float] = mapped_column(Float)
    best_score: Mapped[float | None] = mapped_column(Float)
    best_improvement: Mapped[float | None] = mapped_column(Float)
    candidates: Mapped[bytes] = mapped_column(LargeBinary)  # see packing.pack_candidates
    elements: Mapped[bytes | None] = mapped_column(LargeBinary)  # (N, 10) float16, or NULL
    # What the subject stage found on this pass (packing.pack_subjects); NULL: no subject data.
    subjects: Mapped[bytes | None] = mapped_column(LargeBinary)


class CropRow(Base):
    """A queryable top candidate (rank <= TOP_K in its set, or the full frame)."""

    __tablename__ = "crops"
    __table_args__ = (
        # Covering indexes: ORDER BY improvement walks them and the element masks are checked in
        # the index itself, so "best crop enhances X, top 50" reads ~50 table rows.
        Index("ix_crops_best", "best", "active", "improvement", "enhances", "reduces"),
        Index("ix_crops_aspect", "aspect", "rank", "active", "improvement", "enhances", "reduces"),
        Index("ix_crops_photo", "photo_id", "active", "best"),
        Index("ix_crops_run", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("scoring_runs.id", ondelete="CASCADE"))
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # copy of the run's flag
    best: Mapped[bool] = mapped_column(Boolean, default=False)  # the best crop over all sets
    aspect: Mapped[str] = mapped_column(String(16))
    rank: Mapped[int] = mapped_column(SmallInteger)
    x1: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    x2: Mapped[int] = mapped_column(Integer)
    y2: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    improvement: Mapped[float] = mapped_column(Float)
    elements: Mapped[bytes | None] = mapped_column(LargeBinary)  # 10 float32, exact
    # Bit i set: element i (ELEMENT_NAMES order) is among the explanation's top-3 changes and rises
    # (enhances) or falls (reduces). Filled for rank-1 crops; the exact values are in explanations.
    enhances: Mapped[int] = mapped_column(SmallInteger, default=0)
    reduces: Mapped[int] = mapped_column(SmallInteger, default=0)


class Explanation(Base):
    """One of the three largest element changes of a rank-1 crop (position 1..3)."""

    __tablename__ = "explanations"

    crop_id: Mapped[int] = mapped_column(ForeignKey("crops.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    element: Mapped[int] = mapped_column(SmallInteger)  # index into ELEMENT_NAMES
    change: Mapped[float] = mapped_column(Float)


class ModelVersion(Base):
    """A trained checkpoint the scorer can use; ``active`` marks the one in use."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    checkpoint_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    data_summary: Mapped[str | None] = mapped_column(Text)  # JSON
    metrics: Mapped[str | None] = mapped_column(Text)  # JSON
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class Label(Base):
    """A user's judgement of a crop, for personalization.

    ``accept``/``reject``: the candidate ``rank`` of set ``aspect`` (its box copied into x1..y2);
    ``box``: a user-drawn box; ``prefer``: box x1..y2 preferred over box ox1..oy2.
    """

    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_photo", "photo_id"), Index("ix_labels_kind", "kind", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("scoring_runs.id", ondelete="SET NULL"))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(8))
    aspect: Mapped[str | None] = mapped_column(String(16))
    rank: Mapped[int | None] = mapped_column(SmallInteger)
    other_rank: Mapped[int | None] = mapped_column(SmallInteger)
    x1: Mapped[int | None] = mapped_column(Integer)
    y1: Mapped[int | None] = mapped_column(Integer)
    x2: Mapped[int | None] = mapped_column(Integer)
    y2: Mapped[int | None] = mapped_column(Integer)
    ox1: Mapped[int | None] = mapped_column(Integer)
    oy1: Mapped[int | None] = mapped_column(Integer)
    ox2: Mapped[int | None] = mapped_column(Integer)
    oy2: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)  # upright size the boxes refer to
    height: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16), default="cli")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# The Core tables, for the bulk path and the Store's queries (no ORM object is built per row).
class MetadataHold(Base):
    """A photo whose crop metadata (XMP) is owed: its scores are committed, its sidecar or
    embedded XMP may not be written yet.

    Held in its own transaction before the scores are committed and released once the metadata
    was written, so a writer killed in between (``kill -9``, a power cut, Ctrl-C mid-batch)
    leaves the row behind and the next scan, daemon pass or queue worker that finds the photo
    unchanged writes its metadata from the stored scores instead of skipping it for good. A
    row with no scores yet (killed before the commit) is released when the photo is scored.
    """

    __tablename__ = "metadata_holds"

    path: Mapped[str] = mapped_column(Text, primary_key=True)
    held_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


PHOTOS = Photo.__table__
RUNS = ScoringRun.__table__
CROPS = CropRow.__table__
EXPLANATIONS = Explanation.__table__
LABELS = Label.__table__
MODEL_VERSIONS = ModelVersion.__table__
METADATA_HOLDS = MetadataHold.__table__
