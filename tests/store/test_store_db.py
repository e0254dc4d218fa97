"""The database file itself: pragmas, migrations, corrupt/newer/older databases, concurrent writers."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from support.store import database_at_revision, synthetic_suggestion

from clipcrop_plugin.errors import StoreError
from clipcrop_plugin.store import QueryFilters, Store, migrate
from clipcrop_plugin.store.engine import make_engine
from clipcrop_plugin.store.models import Base


def test_default_location_is_the_data_folder_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    with Store.open() as store:  # conftest points CLIPCROP_DATA_DIR into tmp
        assert store.url.endswith("/data/clipcrop.sqlite3")
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert store.revision() == migrate.head_revision()


def test_clipcrop_db_env_selects_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPCROP_DB", f"sqlite:///{tmp_path / 'env.sqlite3'}")
    with Store.open() as store:
        assert store.url.endswith("env.sqlite3")
    assert (tmp_path / "env.sqlite3").exists()


@pytest.mark.parametrize("content", [b"this is my tax return, not a database\n" * 50, b"\x00\x01garbage" * 1000])
def test_non_database_file_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clipcrop.sqlite3"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not an SQLite database") as err:
        Store.open(str(path))
    assert "\n" not in str(err.value)
    assert path.read_bytes() == content
    assert not Path(str(path) + "-wal").exists()


def test_truncated_sqlite_file_gives_a_clear_error_and_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with Store.open(str(path)):
        pass
    raw = path.read_bytes()
    damaged = raw[:100] + b"\xff" * 3000  # header intact, pages destroyed
    path.write_bytes(damaged)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with pytest.raises(StoreError):
        Store.open(str(path))
    assert path.read_bytes() == damaged


def _drift(engine) -> list:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_every_revision_in_order_ends_matching_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    cfg = migrate.alembic_config(engine)
    revisions = [r.revision for r in reversed(list(ScriptDirectory.from_config(cfg).walk_revisions()))]
    assert revisions[0] == "0001" and len(revisions) >= 2
    for rev in revisions:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, rev)
        assert migrate.current_revision(engine) == rev
    assert _drift(engine) == []
    # and back down to nothing and up again: downgrades are real
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert _drift(engine) == []
    engine.dispose()


def test_older_database_is_upgraded_on_open_with_a_backup(tmp_path: Path) -> None:
    path = database_at_revision(tmp_path / "old.sqlite3", "0001",
                                "INSERT INTO photos (path, folder, status, offline, created_at, updated_at)"
                                " VALUES ('/p/a.jpg', '/p', 'failed', 0, '2024-01-01', '2024-01-01')")
    with Store.open(str(path)) as store:
        assert store.revision() == migrate.head_revision()
        assert [p.path for p in store.query(QueryFilters(status="failed"), sort="path")] == ["/p/a.jpg"]
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM labels").scalar() == 0
    backups = list(tmp_path.glob("old.sqlite3.0001.*.bak"))
    assert len(backups) == 1
    con = sqlite3.connect(backups[0])
    assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0001"
    assert con.execute("SELECT path FROM photos").fetchall() == [("/p/a.jpg",)]
    con.close()


def test_upgrade_false_refuses_an_old_schema(tmp_path: Path) -> None:
    path = database_at_revision(tmp_path / "old.sqlite3", "0001")
    with pytest.raises(StoreError, match="clipcrop db upgrade"):
        Store.open(str(path), upgrade=False)


def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    with Store.open(str(path)):
        pass
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    con.commit()
    con.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="newer than this clipcrop"):
        Store.open(str(path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not list(tmp_path.glob("*.bak"))


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE recipes (name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a clipcrop database"):
        Store.open(str(path))


def test_daemon_thread_and_cli_writing_at_once_never_hit_database_locked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.sqlite3'}"
    daemon_store = Store.open(url)
    errors: list[BaseException] = []
    n_batches, per_batch = 15, 8

    def daemon() -> None:  # a writer thread with its own batches, like the watcher's DB thread
        rng = np.random.default_rng(1)
        try:
            for b in range(n_batches):
                daemon_store.record_suggestions(
                    [(synthetic_suggestion(f"/lib/d/{b}_{i}.jpg", rng), f"d{b}_{i}", None, None) for i in range(per_batch)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=daemon)
    thread.start()
    cli_store = Store.open(url)  # a second process-like connection pool
    rng = np.random.default_rng(2)
    written = 0
    try:
        while thread.is_alive() or written < 40:
            cli_store.record_suggestion(synthetic_suggestion(f"/lib/c/{written}.jpg", rng), f"c{written}")
            if written % 5 == 0:
                pid = cli_store.find_path(f"/lib/c/{written}.jpg").id
                cli_store.add_label(pid, "accept", source="cli")
                cli_store.query(QueryFilters(folder="/lib"), limit=10)
            written += 1
    finally:
        thread.join()
    assert errors == []
    assert cli_store.count(QueryFilters(folder="/lib/d")) == n_batches * per_batch
    assert cli_store.count(QueryFilters(folder="/lib/c")) == written
    with cli_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    daemon_store.close()
    cli_store.close()


def test_postgresql_connections_run_without_jit_even_after_a_rollback(pg_url: str) -> None:
    """JIT compiling cost a 5 ms count 33 ms more; the setting survives the pool's rollbacks."""
    with Store.open(pg_url) as store:
        for _ in range(3):
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
                conn.rollback()
        assert store.count() == 0


def test_a_file_over_2_gib_is_recorded_with_its_size(db_url: str) -> None:
    """A large TIFF or a RAW burst is bigger than a 32-bit integer: its size must round-trip
    (PostgreSQL's column is BIGINT since revision 0006, through the bulk COPY path too)."""
    rng = np.random.default_rng(3)
    big = 5 * 2**31 + 7
    with Store.open(db_url) as store:
        store.record_suggestions([(synthetic_suggestion("/lib/huge.tif", rng), "h1", 1.0, big)])
        store.record_failure("/lib/broken.tif", "truncated", "h2", mtime=1.0, size=big + 1)
        with store.engine.connect() as conn:
            sizes = dict(conn.exec_driver_sql("SELECT path, size FROM photos").all())
    assert sizes == {"/lib/huge.tif": big, "/lib/broken.tif": big + 1}


def test_metadata_holds_are_a_set_of_paths_shared_by_every_writer(db_url: str) -> None:
    # Two writers (two scans of one library) may hold the same photo at once: it stays held once,
    # and either one's release ends it.
    with Store.open(db_url) as a, Store.open(db_url) as b:
        a.hold_metadata(["/lib/p1.jpg", "/lib/p2.jpg", "/lib/p1.jpg"])
        b.hold_metadata(["/lib/p2.jpg", "/lib/p3.jpg"])
        assert a.held_metadata() == {"/lib/p1.jpg", "/lib/p2.jpg", "/lib/p3.jpg"}
        assert b.held_metadata(["/lib/p3.jpg", "/lib/p9.jpg"]) == {"/lib/p3.jpg"}
        b.release_metadata(["/lib/p1.jpg", "/lib/p2.jpg"])
        assert a.held_metadata() == {"/lib/p3.jpg"}
        a.hold_metadata([])
        assert b.held_metadata([]) == set()
