"""Refused databases stay byte-identical; damaged or read-only ones are one line, never a traceback."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from support.hardening import assert_one_line_errors, copy_photo, corpus_jpegs, immutable, invoke, sha

from clipcrop_plugin.errors import StoreError
from clipcrop_plugin.store import Store

pytestmark = pytest.mark.timeout(300)

COMMANDS = (["query"], ["show", "1"], ["db", "current"], ["db", "upgrade"], ["export", "--query", "--out", "OUT"],
            ["scan", "LIB", "--scorer", "heuristic"], ["label", "1", "--accept", "1"], ["xmp", "write", "--query"])


def _files(db: Path) -> dict[str, str]:
    """The database and every -wal/-shm/-journal/backup next to it, with their hashes."""
    return {p.name: sha(p) for p in sorted(db.parent.glob(db.name + "*"))}


def _foreign(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.execute("INSERT INTO notes (text) VALUES ('my data')")
    con.commit()
    con.close()
    return path


def _ours(path: Path, library: Path) -> Path:
    res = invoke("scan", str(library), "--scorer", "heuristic", "--db", str(path))
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")  # a rollback-journal file: WAL mode would be a visible change
    con.close()
    return path


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "lib"
    for i, src in enumerate(corpus_jpegs(6)):
        copy_photo(src, folder / f"p{i}.jpg")
    return folder


def _newer(path: Path, library: Path) -> Path:
    _ours(path, library)
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = 'ffff_from_the_future'")
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize("kind", ["foreign", "newer"])
def test_refused_database_is_byte_identical_after_every_command(tmp_path: Path, library: Path, kind: str) -> None:
    db = tmp_path / f"{kind}.sqlite3"
    _foreign(db) if kind == "foreign" else _newer(db, library)
    before = _files(db)
    with pytest.raises(StoreError, match="not a clipcrop database|newer than this clipcrop"):
        Store.open(str(db))
    for args in COMMANDS:
        args = [a.replace("OUT", str(tmp_path / "out")).replace("LIB", str(library)) for a in args]
        res = invoke(*args, env={"CLIPCROP_DB": str(db)})  # `xmp write` has no --db
        assert res.returncode != 0, (args, res.stdout)
        lines = assert_one_line_errors(res.stderr)
        assert lines and ("not a clipcrop database" in lines[-1] or "newer than this clipcrop" in lines[-1]), (
            args, res.stderr)
        assert "left untouched" in lines[-1]
        assert _files(db) == before, args  # sha256 of the file (and no -wal/-shm appeared)


def test_a_file_that_is_not_sqlite_is_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "photo-notes.sqlite3"
    db.write_bytes(b"these are my notes, not a database\n" * 100)
    before = _files(db)
    res = invoke("query", "--db", str(db))
    assert res.returncode == 1 and "not an SQLite database" in res.stderr
    assert_one_line_errors(res.stderr)
    assert _files(db) == before


def test_database_corrupted_mid_file_is_one_line_for_every_command(tmp_path: Path, library: Path) -> None:
    db = _ours(tmp_path / "damaged.sqlite3", library)
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) >= 4 * page
    for start in range(2 * page, len(data), 3 * page):  # garble inner pages; the header stays valid
        data[start + 64:start + 900] = os.urandom(836)
    db.write_bytes(bytes(data))
    seen: set[str] = set()
    for args in COMMANDS:
        args = [a.replace("OUT", str(tmp_path / "out")).replace("LIB", str(library)) for a in args]
        res = invoke(*args, env={"CLIPCROP_DB": str(db)})
        text = res.stderr + res.stdout
        assert "Traceback" not in text, (args, text)
        if res.returncode == 0:
            continue  # e.g. `db current` reads only the intact version table
        lines = assert_one_line_errors(res.stderr)
        assert lines, (args, res.stderr)
        damaged = [line for line in lines if "damaged" in line]
        assert len(damaged) <= 1 and (not damaged or str(db) in damaged[0]), (args, lines)
        seen.update(damaged)
    assert seen  # most commands hit a garbled page and said so, naming the file


def test_scan_into_a_read_only_database_is_one_line(tmp_path: Path, library: Path) -> None:
    db = _ours(tmp_path / "ro.sqlite3", library)
    copy_photo(corpus_jpegs()[-1], library / "new.jpg")  # something to write
    before = sha(db)
    with immutable(db):
        res = invoke("scan", str(library), "--scorer", "heuristic", "--db", str(db))
    lines = assert_one_line_errors(res.stderr)
    assert res.returncode == 1 and any("read-only" in line or "readonly" in line for line in lines), res.stderr
    assert sha(db) == before


def test_read_only_check_runs_before_any_pragma(tmp_path: Path, library: Path) -> None:
    """Opening our own database still works (and only then switches to WAL)."""
    db = _ours(tmp_path / "ok.sqlite3", library)
    with Store.open(str(db)) as store:
        assert store.revision() is not None
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
