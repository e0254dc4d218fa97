"""The crop database: SQLAlchemy models, alembic migrations run on open, and the ``Store`` API."""

from __future__ import annotations

from .queries import SORTS, QueryFilters
from .store import (
    CropRecord,
    LabelRecord,
    ModelVersionRecord,
    PhotoDetail,
    PhotoRef,
    PhotoSummary,
    RunRecord,
    Store,
)

__all__ = [
    "SORTS",
    "CropRecord",
    "LabelRecord",
    "ModelVersionRecord",
    "PhotoDetail",
    "PhotoRef",
    "PhotoSummary",
    "QueryFilters",
    "RunRecord",
    "Store",
]
