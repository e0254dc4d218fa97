"""Alembic, driven from code: upgrade on open (backing up a SQLite file first), refuse newer."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, inspect

from ..errors import StoreError
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
    if current is not None:
        script = ScriptDirectory.from_config(alembic_config())
        try:
            known = script.get_revision(current) is not None
        except CommandError:
            known = False
        if not known:
            raise StoreError(
                f"the database schema (revision {current}) is newer than this clipcrop understands"
                f" (head {head}); upgrade clipcrop, or use another --db"
            )
    else:
        # The task queue's tables (Procrastinate's, clipcrop_job_failures) may come first: a
        # queue created before the library is still a clipcrop database.
        tables = {t for t in inspect(engine).get_table_names()
                  if not t.startswith("procrastinate_") and t != "clipcrop_job_failures"}
        if tables:
            raise StoreError(
                f"the database holds tables ({', '.join(sorted(tables)[:3])}...) but no clipcrop schema"
                " version; it is not a clipcrop database - use another --db"
            )
    return current, head


def backup_sqlite(path: Path, revision: str | None) -> Path:
    """Copy the SQLite database (consistently, through the backup API) next to itself."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.{revision or 'none'}.{stamp}.bak")
    n = 1
    while target.exists():  # never overwrite an earlier backup
        target = path.with_name(f"{path.name}.{revision or 'none'}.{stamp}-{n}.bak")
        n += 1
    src = sqlite3.connect(str(path))
    try:
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return target


def upgrade(engine: Engine, *, backup: bool = True) -> Path | None:
    """Bring the schema to head. Returns the backup file made (older SQLite databases only)."""
    current, head = check_revision(engine)
    if current == head:
        return None
    made: Path | None = None
    path = sqlite_path(str(engine.url))
    if backup and current is not None and path is not None and path.exists():
        made = backup_sqlite(path, current)
    cfg = alembic_config(engine)
    try:
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except Exception as exc:  # noqa: BLE001 - any migration failure must surface as one line
        hint = f"; the previous database was saved as {made}" if made else ""
        raise StoreError(f"database upgrade {current} -> {head} failed: {exc}{hint}") from exc
    return made
