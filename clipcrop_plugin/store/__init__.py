"""The crop database, laid out like beets' ``library``: ``models`` (SQLAlchemy tables, alembic
migrations in ``migrate``), ``records`` (what the Store returns), ``bulk`` (the batched write
path), ``queries`` (filters to SQL), ``packing`` (BLOB layouts) and ``store`` (the ``Store`` API)."""

from __future__ import annotations

from .queries import SORTS, QueryFilters
from .records import (
    CropRecord,
    FileRecord,
    LabelRecord,
    ModelVersionRecord,
    PhotoDetail,
    PhotoSummary,
    RunRecord,
)
from .store import Store

__all__ = [
    "SORTS",
    "CropRecord",
    "LabelRecord",
    "ModelVersionRecord",
    "PhotoDetail",
    "FileRecord",
    "PhotoSummary",
    "QueryFilters",
    "RunRecord",
    "Store",
]
