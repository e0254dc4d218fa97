"""Raw database checks that work on SQLite and PostgreSQL alike (tests that look under the Store API)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text


def db_rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (SQLAlchemy ``:name`` parameters) on the database at ``url``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def db_value(url: str, sql: str, **params: Any) -> Any:
    """The first column of the first row of ``sql``."""
    rows = db_rows(url, sql, **params)
    return rows[0][0] if rows else None
