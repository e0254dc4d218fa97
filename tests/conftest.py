"""Fixtures every test folder may use. A folder's own fixtures live in its ``conftest.py``; plain
helper functions and classes live in the ``support`` package (``tests/support/``)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from support.server import SampleLibrary

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples"


POSTGRES_ENV = "CLIPCROP_TEST_POSTGRES"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--postgres", default=os.environ.get(POSTGRES_ENV) or None, metavar="URL",
        help=f"PostgreSQL server for the backend-parametrized tests (SQLAlchemy URL of a database the"
             f" tests may CREATE DATABASE from; default ${POSTGRES_ENV}; .ci/run starts one)",
    )


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> str | None:
    """The PostgreSQL server URL given to the test run, or None."""
    return request.config.getoption("--postgres")


def fresh_postgres_database(server: str) -> tuple[str, object]:
    """``CREATE DATABASE`` a uniquely named database on ``server``; returns (its URL, a dropper)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"clipcrop_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(server).set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_server: str | None) -> Iterator[str]:
    """A fresh, empty library database URL: a SQLite file, then (when the run was given a server)
    a new PostgreSQL database per test. Tests that take it run against both backends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'clipcrop.sqlite3'}"
        return
    yield from _fresh_postgres(postgres_server)


def _fresh_postgres(postgres_server: str | None) -> Iterator[str]:
    """A new database on the test server, dropped afterwards; skips when no server was given."""
    if not postgres_server:
        pytest.skip(f"no PostgreSQL server given (--postgres URL or ${POSTGRES_ENV}; .ci/run starts one)")
    url, drop = fresh_postgres_database(postgres_server)
    try:
        yield url
    finally:
        drop()  # type: ignore[operator]


@pytest.fixture
def pg_url(tmp_path: Path, postgres_server: str | None) -> Iterator[str]:
    """A fresh PostgreSQL database (tests of PostgreSQL-only features: the task queue)."""
    yield from _fresh_postgres(postgres_server)


@pytest.fixture()
def sample(tmp_path: Path, db_url: str) -> Iterator[SampleLibrary]:
    """Six scored photos in a fresh library (SQLite, and PostgreSQL when the run has a server)."""
    from support.server import build_library

    lib = build_library(tmp_path, url=db_url)
    yield lib
    lib.library.close()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The EXIF sample corpus (real camera files); skips when ../shared is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"EXIF sample corpus not found at {CORPUS} (../shared is absent)")
    return CORPUS


@pytest.fixture(scope="session")
def exiftool() -> str:
    """Path of the exiftool binary; skips when it is not installed (CI installs it)."""
    path = shutil.which("exiftool")
    if not path:
        pytest.skip("exiftool is not installed (Debian package libimage-exiftool-perl)")
    return path


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test read or write the real user's config, database or models."""
    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("CLIPCROP_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("CLIPCROP_CONFIG", str(base / "config.toml"))
    # Tests of metadata mechanics (sidecars, embedding, hosts applying crops) need a crop to be
    # written whatever the scorer thinks of it: the user config of the suite always crops.
    # Crop-or-keep itself is tested in test_keep.py and test_guard.py with their own configs.
    (base / "config.toml").write_text("keep_margin = -inf\n", encoding="utf-8")
    monkeypatch.delenv("CLIPCROP_DB", raising=False)
    monkeypatch.delenv("CLIPCROP_MODEL_DIR", raising=False)
    # open_clip must never reach for the network in tests.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
