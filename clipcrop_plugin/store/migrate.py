"""Alembic, driven from code: upgrade on open (backing up a SQLite file first), refuse newer."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, inspect

from ..errors import StoreError
from ..safeio import AtomicFile, show
from .engine import WRITE_OPTION, sqlite_path


def alembic_config(engine: Engine | None = None) -> Config:
    """A programmatic alembic ``Config`` pointing at the installed ``migrations`` package."""
    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision this code knows."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database, or ``None`` for a database without our schema."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_revision(engine: Engine) -> tuple[str | None, str]:
    """(current, head); raises ``StoreError`` for a database newer than (unknown to) this code."""
    current = current_revision(engine)
    head = head_revision()
    _judge(current, head, set(inspect(engine).get_table_names()) if current is None else set())
    return current, head


def _queue_table(name: str) -> bool:
    """The task queue's tables (Procrastinate's, clipcrop_job_failures) may come before the
    library's: a queue created first still leaves a clipcrop database."""
    return name.startswith("procrastinate_") or name == "clipcrop_job_failures"


def _judge(current: str | None, head: str, tables: set[str], where: str = "") -> None:
    """Refuse a revision this code does not know, or tables without any clipcrop revision."""
    prefix = f"{where}: " if where else ""
    if current is not None:
        script = ScriptDirectory.from_config(alembic_config())
        try:
            known = script.get_revision(current) is not None
        except CommandError:
            known = False
        if not known:
            raise StoreError(
                f"{prefix}the database schema (revision {current}) is newer than this clipcrop understands"
                f" (head {head}); it was left untouched - upgrade clipcrop, or use another --db"
            )
    elif {t for t in tables if not _queue_table(t)}:
        raise StoreError(
            f"{prefix}the database holds tables ({', '.join(sorted(tables)[:3])}...) but no clipcrop schema"
            " version; it is not a clipcrop database and was left untouched - use another --db"
        )


def check_sqlite_schema(path: Path) -> str | None:
    """Check a SQLite file's schema through a read-only connection, before any pragma or write.

    Returns its revision (``None``: an empty database). Raises :class:`StoreError` for a file that
    is not ours, has a newer schema or cannot be read; such a file stays byte-identical (the
    engine's WAL switch, which rewrites header bytes, never runs on it).
    """
    where = show(path)
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{where}: cannot open the database read-only ({exc})") from None
    try:
        rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        tables = {str(r[0]) for r in rows if not str(r[0]).startswith("sqlite_")}
        current = None
        if "alembic_version" in tables:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            current = str(row[0]) if row else None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{where}: cannot read the database ({exc}); it was left untouched") from None
    finally:
        con.close()
    _judge(current, head_revision(), tables - {"alembic_version"} if current is None else set(), where)
    return current


# progress(stage, done, total): "backup" in pages, "migrate" in revisions applied.
Progress = Callable[[str, int, int], None]


def backup_sqlite(path: Path, revision: str | None, progress: Progress | None = None) -> Path:
    """Copy the SQLite database (consistently, through the backup API) next to itself.

    The copy is made in a fresh temp file and then takes a free name (``...-2.bak`` when the
    name is taken): an earlier backup is never overwritten, a planted link never followed.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    atomic = AtomicFile(path.with_name(f"{path.name}.{revision or 'none'}.{stamp}.bak"), unique=True,
                        error=StoreError)
    with atomic:
        src = sqlite3.connect(str(path))
        try:
            dst = sqlite3.connect(str(atomic.tmp))  # writes into the temp file AtomicFile created
            try:
                if progress is None:
                    src.backup(dst)
                else:  # in slices, so a multi-GB library shows how far the copy is
                    src.backup(dst, pages=4096, progress=lambda _st, left, total: progress("backup", total - left, total))
            finally:
                dst.close()
        finally:
            src.close()
    return atomic.path


def upgrade(engine: Engine, *, backup: bool = True, progress: Progress | None = None) -> Path | None:
    """Bring the schema to head. Returns the backup file made (older SQLite databases only).

    ``progress(stage, done, total)`` is told how far the backup (pages) and the migration
    (revisions) are; all revisions still run in one transaction."""
    current, head = check_revision(engine)
    if current == head:
        return None
    made: Path | None = None
    path = sqlite_path(str(engine.url))
    if backup and current is not None and path is not None and path.exists():
        made = backup_sqlite(path, current, progress)
    cfg = alembic_config(engine)
    steps = ["head"]
    if progress is not None:  # one revision at a time, oldest first, to count them
        script = ScriptDirectory.from_config(cfg)
        steps = [r.revision for r in reversed(list(script.iterate_revisions(head, current)))] or ["head"]
    try:
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            cfg.attributes["connection"] = conn
            for i, rev in enumerate(steps):
                command.upgrade(cfg, rev)
                if progress is not None:
                    progress("migrate", i + 1, len(steps))
    except Exception as exc:  # noqa: BLE001 - any migration failure must surface as one line
        hint = f"; the previous database was saved as {made}" if made else ""
        raise StoreError(f"database upgrade {current} -> {head} failed: {exc}{hint}") from exc
    return made
