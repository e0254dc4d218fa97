"""Progress bars of `xmp write` and `db upgrade`: drawn on a terminal (a real pty), never on a pipe,
never with --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.store import database_at_revision, make_photo
from support.terminal import on_terminal, piped

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.store import migrate


def test_xmp_write_draws_a_bar_on_a_terminal_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    for i in range(5):
        make_photo(lib / f"p{i}.jpg", seed=i, size=(96, 64))
    db = tmp_path / "lib.sqlite3"
    res = CliRunner().invoke(cli, ["scan", str(lib), "--scorer", "heuristic", "--db", str(db)])
    assert res.exit_code == 0, res.output
    monkeypatch.setenv("CLIPCROP_DB", str(db))  # xmp reads the configured database
    code, out, drawn = on_terminal("xmp", "write", str(lib), "--naming", "ext")
    assert code == 0 and b"writing xmp" in drawn and b"5/5" in drawn, drawn
    assert len(list(lib.glob("*.jpg.xmp"))) == 5 and out.count(" -> ") == 5
    p = piped("xmp", "write", str(lib), "--naming", "ext")
    assert p.returncode == 0 and "writing xmp" not in p.stderr and p.stdout.count(" -> ") == 5
    # --json on a terminal: no bar at all, and stdout is only JSON lines.
    code, out, drawn = on_terminal("xmp", "write", str(lib), "--naming", "base", "--json")
    assert code == 0 and b"writing xmp" not in drawn
    assert [json.loads(line)["ok"] for line in out.splitlines()] == [True] * 5
    # From the database (--query): the bar counts the query's rows.
    code, _out, drawn = on_terminal("xmp", "write", "--query", "--naming", "ext")
    assert code == 0 and b"writing xmp" in drawn and b"5/5" in drawn


def test_db_upgrade_shows_the_backup_and_each_revision_on_a_terminal(tmp_path: Path) -> None:
    old = database_at_revision(tmp_path / "old.sqlite3", "0001")
    steps = len(list(migrate.ScriptDirectory.from_config(migrate.alembic_config()).iterate_revisions(
        migrate.head_revision(), "0001")))
    code, out, drawn = on_terminal("db", "upgrade", "--db", str(old))
    assert code == 0, drawn
    assert b"backing up" in drawn and b"migrating" in drawn and f"{steps}/{steps}".encode() in drawn, drawn
    assert f"upgraded 0001 -> {migrate.head_revision()}" in out and "backup of the previous database" in out
    again = database_at_revision(tmp_path / "again.sqlite3", "0001")
    p = piped("db", "upgrade", "--db", str(again))
    assert p.returncode == 0 and p.stderr == "" and f"upgraded 0001 -> {migrate.head_revision()}" in p.stdout
    # The upgraded database is the same whichever way it was upgraded.
    from clipcrop_plugin.store.engine import make_engine

    for path in (old, again):
        engine = make_engine(f"sqlite:///{path}")
        try:
            assert migrate.current_revision(engine) == migrate.head_revision()
        finally:
            engine.dispose()
