"""scan_folders through the real pipeline and the heuristic scorer, into a real SQLite file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support.store import make_photo

from clipcrop_plugin import scan as scan_mod
from clipcrop_plugin.candidates import parse_aspect
from clipcrop_plugin.hashing import content_hash
from clipcrop_plugin.jobs import MetadataPolicy
from clipcrop_plugin.scan import scan_folders
from clipcrop_plugin.scoring.registry import load_scorer
from clipcrop_plugin.store import QueryFilters, Store


@pytest.fixture(scope="module")
def scorer():  # type: ignore[no-untyped-def]
    return load_scorer("heuristic")


@pytest.fixture
def library(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    for i in range(6):
        make_photo(lib / ("sub" if i % 2 else "") / f"p{i}.jpg", seed=i)
    (lib / "broken.jpg").write_bytes(b"not a jpeg at all")
    return lib


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    with Store.open(db_url) as s:
        yield s


def _runs(store: Store) -> dict[str, int]:
    return {p.path: p.run_id for p in store.query(sort="path", limit=None) if p.run_id is not None}


def test_scan_scores_skips_relinks_and_rescores(store: Store, library: Path, scorer) -> None:  # type: ignore[no-untyped-def]
    aspects = (parse_aspect("1:1"),)
    r1 = scan_folders(store, [library], scorer, aspects, batch_size=4)
    assert (r1.total, r1.scored, r1.failed) == (7, 6, 1)
    assert r1.failures[0][0] == str(library / "broken.jpg") and "not an image" in r1.failures[0][1]
    d = store.photo_detail(str(library / "p0.jpg"))
    assert d.run.scorer == "heuristic" and set(d.best) == {"grid", "1:1"}
    assert d.photo.content_hash == content_hash(library / "p0.jpg")
    runs = _runs(store)

    r2 = scan_folders(store, [library], scorer, aspects)
    assert (r2.scored, r2.skipped, r2.failed) == (0, 6, 1)
    assert _runs(store) == runs

    os.rename(library / "p0.jpg", library / "renamed.jpg")
    shutil.move(str(library / "sub" / "p1.jpg"), str(library / "moved.jpg"))
    make_photo(library / "p2.jpg", seed=99)  # same name, new content
    r3 = scan_folders(store, [library], scorer, aspects)
    assert (r3.scored, r3.relinked, r3.skipped) == (1, 2, 3)
    after = _runs(store)
    assert after[str(library / "renamed.jpg")] == runs[str(library / "p0.jpg")]  # not re-scored
    assert after[str(library / "moved.jpg")] == runs[str(library / "sub" / "p1.jpg")]
    assert after[str(library / "p2.jpg")] != runs[str(library / "p2.jpg")]
    assert store.find_path(str(library / "p0.jpg")) is None
    assert store.status_counts() == {"scored": 6, "failed": 1}


def test_duplicate_file_gets_the_scores_without_rescoring(store: Store, library: Path, scorer) -> None:  # type: ignore[no-untyped-def]
    scan_folders(store, [library], scorer)
    shutil.copy(library / "p4.jpg", library / "p4-copy.jpg")
    r = scan_folders(store, [library], scorer)
    assert (r.copied, r.scored) == (1, 0)
    a, b = (store.photo_detail(str(library / n)).photo.crop for n in ("p4.jpg", "p4-copy.jpg"))
    assert a.box == b.box and a.score == b.score


def test_photo_vanishing_between_walk_and_scoring_is_recorded(store: Store, library: Path, scorer,  # type: ignore[no-untyped-def]
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = scan_mod.suggest_paths
    victim = library / "p4.jpg"

    def vanishing(paths, *a, **kw):  # type: ignore[no-untyped-def]
        victim.unlink(missing_ok=True)  # gone after it was found and hashed, before it was read
        return real(paths, *a, **kw)

    monkeypatch.setattr(scan_mod, "suggest_paths", vanishing)
    r = scan_folders(store, [library], scorer, batch_size=8)
    assert r.scored == 5 and r.failed == 2
    reasons = dict(r.failures)
    assert str(victim) in reasons
    ref = store.find_path(str(victim))
    assert ref is not None and ref.status == "failed"


def test_ctrl_c_leaves_a_consistent_database_and_the_next_scan_resumes(store: Store, library: Path, scorer) -> None:  # type: ignore[no-untyped-def]
    def interrupt(done: int, total: int, path: str) -> None:
        if done >= 3:
            raise KeyboardInterrupt

    r1 = scan_folders(store, [library], scorer, batch_size=2, progress=interrupt)
    assert r1.interrupted and r1.done < r1.total
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":  # SQLite's own checks; PostgreSQL enforces both itself
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        # every scored photo has exactly one active run, with its best crop row
        bad = conn.exec_driver_sql(
            "SELECT p.path FROM photos p WHERE p.status = 'scored' AND ("
            " (SELECT count(*) FROM scoring_runs r WHERE r.photo_id = p.id AND r.active) != 1 OR"
            " (SELECT count(*) FROM crops c WHERE c.photo_id = p.id AND c.active AND c.best) != 1)").fetchall()
        assert bad == []
    first = store.status_counts().get("scored", 0)
    assert 2 <= first < 6
    r2 = scan_folders(store, [library], scorer, batch_size=2)
    assert not r2.interrupted
    assert r2.skipped == first and r2.scored == 6 - first
    assert store.status_counts() == {"scored": 6, "failed": 1}


def test_stop_callback_and_metadata_policy(store: Store, library: Path, scorer) -> None:  # type: ignore[no-untyped-def]
    # A folder squatting on p3's sidecar name: that one write fails for real, the scan goes on.
    blocker = library / "sub" / "p3.xmp"
    blocker.mkdir()
    # keep_margin = -inf: every photo's crop is written ("keep as is" is tested in test_keep.py).
    r = scan_folders(store, [library], scorer, policy=MetadataPolicy("sidecar", keep_margin=float("-inf")),
                     batch_size=3)
    written = sorted(p.name for p in library.rglob("*.xmp") if p.is_file())
    assert written == ["p0.xmp", "p1.xmp", "p2.xmp", "p4.xmp", "p5.xmp"]
    assert r.scored == 6 and len(r.metadata_errors) == 1
    path, reason = r.metadata_errors[0]
    assert path == str(library / "sub" / "p3.jpg") and path in reason and "is a directory" in reason.lower()
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    make_photo(library / "new1.jpg", 50)
    make_photo(library / "new2.jpg", 51)
    r2 = scan_folders(store, [library], scorer, stop=stop)
    assert r2.interrupted


def test_deleted_files_are_marked_gone_and_a_missing_folder_offline(store: Store, library: Path, scorer) -> None:  # type: ignore[no-untyped-def]
    scan_folders(store, [library], scorer)
    (library / "p2.jpg").unlink()
    r = scan_folders(store, [library], scorer)
    assert r.gone == 1
    assert store.find_path(str(library / "p2.jpg")).status == "gone"
    assert store.count(QueryFilters(folder=str(library))) == 6  # gone photos are hidden by default
    shutil.move(str(library), str(library.parent / "unplugged"))
    r2 = scan_folders(store, [library], scorer)
    assert r2.offline == 1 and r2.gone == 0
    assert all(p.offline for p in store.query(QueryFilters(folder=str(library)), sort="path", limit=None))


def test_content_hash_streams_sha256_and_reports_vanished_files(tmp_path: Path) -> None:
    import hashlib

    from clipcrop_plugin.errors import ImageError

    big = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 123)  # spans several read chunks
    big.write_bytes(data)
    assert content_hash(big) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ImageError, match="vanished"):
        content_hash(tmp_path / "nope.jpg")
