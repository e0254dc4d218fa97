"""Adding a ratio to a scored library scores that ratio (and keeps the others); nothing else is redone."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from support.store import make_photo

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.store import Store


@pytest.fixture
def lib(tmp_path: Path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "lib"
    for i in range(4):
        make_photo(folder / f"p{i}.jpg", seed=i, size=(120, 80))
    db = tmp_path / "lib.sqlite3"

    def scan(*args: str) -> str:
        res = CliRunner().invoke(cli, ["scan", str(folder), "--scorer", "heuristic", "--db", str(db), *args])
        assert res.exit_code == 0, res.output
        return res.stdout.strip().splitlines()[-1]

    return folder, db, scan


def _sets(db: Path) -> list[frozenset[str]]:
    with Store.open(str(db)) as store:
        refs = sorted(store.photos_under(str(db.parent / "lib")), key=lambda r: r.path)
        return [store.run_sets(r.content_hash, "heuristic", None) or frozenset() for r in refs]


def test_a_new_aspect_scores_the_library_again_and_keeps_earlier_sets(lib) -> None:  # type: ignore[no-untyped-def]
    folder, db, scan = lib
    assert scan().startswith("4/4 photos: 4 scored")
    assert scan() == "4/4 photos: 0 scored, 4 unchanged, 0 relinked, 0 failed"
    assert scan("--aspect", "16:9").startswith("4/4 photos: 4 scored (4 for new candidate sets), 0 unchanged")
    assert _sets(db) == [frozenset({"grid", "16:9"})] * 4
    assert scan("--aspect", "16:9").startswith("4/4 photos: 0 scored, 4 unchanged")
    # Asking for 1:1 now adds it; the 16:9 suggestions made before stay.
    assert scan("--aspect", "1:1").startswith("4/4 photos: 4 scored (4 for new candidate sets)")
    assert _sets(db) == [frozenset({"grid", "16:9", "1:1"})] * 4
    assert scan().startswith("4/4 photos: 0 scored, 4 unchanged")
    res = CliRunner().invoke(cli, ["query", "--aspect", "16:9", "--db", str(db), "--json"])
    assert len(res.stdout.splitlines()) == 4


def test_a_changed_config_is_picked_up_by_the_next_scan(lib, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder, db, scan = lib
    scan()
    config = tmp_path / "config.toml"
    config.write_text('aspects = ["4:5"]\n', encoding="utf-8")
    monkeypatch.setenv("CLIPCROP_CONFIG", str(config))
    assert scan().startswith("4/4 photos: 4 scored (4 for new candidate sets)")
    assert _sets(db) == [frozenset({"grid", "4:5"})] * 4


def test_the_daemon_scores_a_newly_configured_set(lib) -> None:  # type: ignore[no-untyped-def]
    from clipcrop_plugin.daemon import WatchService

    folder, db, scan = lib
    scan()
    service = WatchService([folder], scorer="heuristic", aspects=["3:2"], db_url=f"sqlite:///{db}")
    snap = service.run_once(timeout=60)
    assert snap["done"] == 4
    assert _sets(db) == [frozenset({"grid", "3:2"})] * 4
    again = WatchService([folder], scorer="heuristic", aspects=["3:2"], db_url=f"sqlite:///{db}").run_once(timeout=60)
    assert again["done"] == 0
