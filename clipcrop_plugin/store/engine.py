"""Database URL resolution and engine creation (SQLite pragmas, corrupt-file detection).

A SQLite file is first opened read-only and its schema checked (:func:`migrate.check_sqlite_schema`)
before any pragma or write, so a refused file - not ours, a newer schema, damaged - is left
byte-identical. A damaged or read-only database met later, mid-command, is one
:class:`StoreError` naming the file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..config import Settings, load_settings
from ..errors import StoreError
from ..safeio import show

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
WRITE_OPTION = "clipcrop_write"  # execution option: start the transaction with BEGIN IMMEDIATE


def resolve_url(url: str | None = None, settings: Settings | None = None) -> str:
    """The database URL: ``url``, else ``$CLIPCROP_DB``, else the settings (default: a SQLite file
    ``clipcrop.sqlite3`` in the user's data folder). A bare path is taken as a SQLite file."""
    if not url:
        url = os.environ.get("CLIPCROP_DB") or (settings or load_settings()).resolved_db_url()
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or ``None`` for other backends and in-memory databases."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"bad database URL {url!r}: {exc}") from exc
    if parsed.get_backend_name() != "sqlite":
        return None
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    return Path(db)


def check_sqlite_file(path: Path) -> None:
    """Refuse a path that holds something other than a SQLite database, without writing to it."""
    if path.is_dir():
        raise StoreError(f"database path {path} is a directory")
    if not path.exists():
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"cannot read database {path}: {exc.strerror or exc}") from exc
    # SQLite treats an empty file as an empty database; anything else must carry the header.
    if head and head != SQLITE_HEADER:
        raise StoreError(
            f"{path} is not an SQLite database (corrupt or a different file); it was left untouched -"
            " move it away or pass another --db"
        )


def make_engine(url: str) -> Engine:
    """Create the engine; for SQLite: WAL, busy timeout, foreign keys, and explicit BEGINs so a
    write transaction takes its lock up front (no read-to-write upgrade deadlocks)."""
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_file(path)
        if path.exists() and path.stat().st_size:
            from .migrate import check_sqlite_schema  # migrate imports this module

            check_sqlite_schema(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the database folder {path.parent}: {exc.strerror or exc}") from exc
    try:
        if url.startswith("sqlite"):
            engine = create_engine(
                url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
            )
        elif url.startswith("postgresql"):
            # A server that is down or firewalled fails the open in seconds, not after the OS's
            # TCP timeout (minutes).
            engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        hint = " (install the 'postgres' extra: pip install 'clipcrop[postgres]')" if url.startswith("postgresql") else ""
        raise StoreError(f"cannot use database URL {url!r}: {exc}{hint}") from exc
    except ArgumentError as exc:
        raise StoreError(f"cannot use database URL {url!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, in_memory=path is None)
        _name_sqlite_errors(engine, path)
    elif engine.dialect.name == "postgresql":
        _configure_postgresql(engine)
    return engine


# One advisory lock per database: clipcrop's write transactions take it first, as SQLite's BEGIN
# IMMEDIATE takes the file's write lock.
PG_WRITE_LOCK = "clipcrop.store.write"


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # No JIT: PostgreSQL compiles any query whose estimate passes jit_above_cost, and
        # "count the photos under a year folder" (5 ms of index scan at 100k photos) then spent
        # 33 ms compiling. Our queries are short index walks; JIT never pays for itself here.
        # Committed, so the pool's rollback-on-return cannot undo it.
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("SET jit = off")
        finally:
            cursor.close()
        dbapi_conn.commit()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Two scans (or queue workers) recording the same new photo would both see "no row" and
        # both INSERT it: one would fail on the unique path, losing its whole batch. Serializing
        # the (short, batched) write transactions makes the second one see the first one's rows,
        # exactly the SQLite behaviour the Store's read-then-write logic is written for.
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%(k)s))", {"k": PG_WRITE_LOCK})


def _name_sqlite_errors(engine: Engine, path: Path | None) -> None:
    """Turn a damaged or read-only SQLite file met mid-command into one line naming the file."""
    where = show(path) if path is not None else "the in-memory database"

    @event.listens_for(engine, "handle_error")
    def _on_error(ctx) -> None:  # type: ignore[no-untyped-def]
        orig = ctx.original_exception
        if not isinstance(orig, sqlite3.DatabaseError):
            return
        name = getattr(orig, "sqlite_errorname", "") or ""
        text = str(orig)
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in text or "not a database" in text:
            raise StoreError(
                f"{where}: the database file is damaged ({text}); restore a backup"
                " (clipcrop keeps one next to it at each upgrade) or use another --db"
            ) from orig
        if name.startswith("SQLITE_READONLY") or "readonly database" in text:
            raise StoreError(f"{where}: the database is read-only ({text}); nothing was written") from orig


def _configure_sqlite(engine: Engine, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event (below) issue BEGIN; pysqlite's implicit one is deferred
        # and cannot be made IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            if not in_memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode except on power loss
            # 32 MiB page cache (default 2 MiB): the crops indexes of a 100k-photo library stay
            # cached, which keeps bulk inserts at speed as the library grows.
            cur.execute("PRAGMA cache_size=-32768")
            cur.execute("PRAGMA temp_store=MEMORY")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")
