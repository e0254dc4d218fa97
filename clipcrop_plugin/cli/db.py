"""``clipcrop db upgrade|current``, and the ``--db`` option every database command shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..config import data_dir
from ..errors import ClipcropError, StoreError
from ..store import Store
from .params import exit_code_for, fail
from .progress import stage_bars

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:
    from ..api import Library


def db_option(f: F) -> F:
    """``--db URL``: SQLAlchemy URL or SQLite file path (default: $CLIPCROP_DB, config, data folder)."""
    return click.option(
        "--db", "db", default=None, metavar="URL",
        help="Database: SQLAlchemy URL or SQLite file (default: $CLIPCROP_DB, else the config, else"
             " clipcrop.sqlite3 in the data folder).",
    )(f)


def check_db_location(db: str | None, *, create: bool) -> None:
    """Refuse a SQLite database location that is surely a mistake, before anything is created.

    A database is created only where the user meant one: at the default location in the data
    folder, or by a command that builds a library (``scan``, ``watch``, ``db upgrade``:
    ``create=True``) in a folder that exists. A reading command given a file that does not exist
    is an error, so a mistyped ``--db`` never shows an empty library as if it were the real one.
    """
    from ..store.engine import resolve_url, sqlite_path

    url = resolve_url(db)
    path = sqlite_path(url)
    if path is None or path.exists():
        return
    default = sqlite_path(resolve_url(str(data_dir() / "clipcrop.sqlite3")))
    if path == default:
        return
    if not path.parent.is_dir():
        raise StoreError(f"no such folder for the database: {path.parent}")
    if not create:
        raise StoreError(f"no crop database at {path} (create one with `clipcrop scan --db {path} FOLDER` "
                         f"or `clipcrop db upgrade --db {path}`)")


def open_library(db: str | None, *, create: bool = False) -> Library:
    """Open the host facade (database + hooks) for a command, or exit with one ``error:`` line."""
    from ..api import Library

    check_db_location(db, create=create)
    return Library.open(db)  # a ClipcropError becomes one line in the command group


def open_store(db: str | None, *, create: bool = False) -> Store:
    """Open (and upgrade) the database, or exit with one ``error:`` line (see :func:`check_db_location`)."""
    check_db_location(db, create=create)
    return Store.open(db)


@click.group("db")
def db() -> None:
    """Manage the crop database schema.

    \b
    Examples:
      clipcrop db current
      clipcrop db upgrade --db ~/photos/clipcrop.sqlite3
    """


@db.command("upgrade")
@db_option
def upgrade_cmd(db: str | None) -> None:
    """Upgrade the database schema to this version (a SQLite file is backed up first).

    \b
    Example:
      clipcrop db upgrade
    """
    from ..store import migrate
    from ..store.engine import make_engine, resolve_url

    try:
        check_db_location(db, create=True)
        url = resolve_url(db)
        engine = make_engine(url)
        try:
            before = migrate.current_revision(engine)
            with stage_bars() as progress:
                backup = migrate.upgrade(engine, progress=progress)
            after = migrate.current_revision(engine)
        finally:
            engine.dispose()
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    except Exception as exc:  # noqa: BLE001 - driver errors (e.g. a corrupt file) as one line
        fail(f"cannot upgrade {db or 'the database'}: {exc}")
    if before == after:
        click.echo(f"{url}: already at revision {after} (head)")
    else:
        click.echo(f"{url}: upgraded {before or 'empty'} -> {after}")
    if backup:
        click.echo(f"backup of the previous database: {backup}")


@db.command("current")
@db_option
def current_cmd(db: str | None) -> None:
    """Print the database's schema revision and whether it needs an upgrade (changes nothing).

    \b
    Example:
      clipcrop db current --db /tmp/test.sqlite3
    """
    from ..store import migrate
    from ..store.engine import make_engine, resolve_url, sqlite_path

    try:
        url = resolve_url(db)
        path = sqlite_path(url)
        if path is not None and not path.exists():
            click.echo(f"{url}: revision none (no database yet; it is created on first use),"
                       f" code head {migrate.head_revision()}")
            return
        engine = make_engine(url)
        try:
            current, head = migrate.check_revision(engine)
        finally:
            engine.dispose()
    except StoreError as exc:
        fail(str(exc))
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    except Exception as exc:  # noqa: BLE001
        fail(f"cannot read {db or 'the database'}: {exc}")
    state = "up to date" if current == head else "needs `clipcrop db upgrade`"
    click.echo(f"{url}: revision {current or 'none (empty)'}, code head {head} ({state})")
