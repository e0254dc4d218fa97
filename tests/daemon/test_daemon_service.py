"""WatchService end to end: the real watchdog observer on real folders, the heuristic scorer,
a real SQLite file, real sidecars."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import db_rows, jpeg_bytes, runs_per_photo, wait_for, write_jpeg

from clipcrop_plugin.config import Settings
from clipcrop_plugin.daemon import events as events_mod
from clipcrop_plugin.daemon import observer as observer_mod
from clipcrop_plugin.daemon.service import WatchService

WINDOW = 0.25


_DB: dict[Path, str] = {}  # tmp_path -> the test's database URL (the backend fixture's)


@pytest.fixture(autouse=True)
def _backend(db_url: str, tmp_path: Path) -> Iterator[None]:
    """Every test here runs on SQLite and (given a server) PostgreSQL: ``db_of(tmp_path)``."""
    _DB[tmp_path] = db_url
    yield
    _DB.pop(tmp_path, None)


def db_of(tmp_path: Path) -> str:
    return _DB[tmp_path]


def settings_for(tmp_path: Path, **kw: object) -> Settings:
    values: dict[str, object] = dict(
        db_url=db_of(tmp_path), scorer="heuristic", stable_seconds=WINDOW,
        rescan_seconds=600.0, batch_size=8,
        # These tests watch for the sidecar of every scored photo: always write the crop, even
        # when the grid's best does not beat the full frame ("keep as is" is tested elsewhere).
        keep_margin=float("-inf"),
    )
    values.update(kw)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def service(tmp_path: Path, lib: Path) -> Iterator[WatchService]:
    svc = WatchService([lib], settings_for(tmp_path), status_file=tmp_path / "state" / "daemon-status.json")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def test_chunked_copy_is_scored_once_after_the_last_chunk(service: WatchService, lib: Path, tmp_path: Path) -> None:
    data = jpeg_bytes(1, (320, 240))
    target = lib / "slow.jpg"
    pieces = [data[i : i + len(data) // 8 + 1] for i in range(0, len(data), len(data) // 8 + 1)]
    with open(target, "wb") as fh:
        for piece in pieces:  # each pause is shorter than the window, the whole copy longer
            fh.write(piece)
            fh.flush()
            time.sleep(WINDOW / 3)
    finished = time.monotonic()
    db = db_of(tmp_path)
    assert wait_for(lambda: runs_per_photo(db).get(str(target)) == 1)
    assert time.monotonic() - finished < 10
    assert service.wait_idle(10, settle=WINDOW * 2)
    assert runs_per_photo(db) == {str(target): 1}
    assert service.pipeline is not None and service.pipeline.counters.failed == 0
    assert (lib / "slow.xmp").is_file()  # the sidecar follows the database row


def test_rename_from_a_temp_name_is_scored_and_the_temp_name_never_is(service: WatchService, lib: Path, tmp_path: Path) -> None:
    tmp = lib / ".syncthing.IMG_0001.JPG.tmp"
    write_jpeg(tmp, 2)
    time.sleep(WINDOW * 2)  # long enough that the temp file would be "stable" if we looked at it
    tmp.rename(lib / "IMG_0001.JPG")
    db = db_of(tmp_path)
    assert wait_for(lambda: runs_per_photo(db).get(str(lib / "IMG_0001.JPG")) == 1)
    assert service.wait_idle(10, settle=WINDOW * 2)
    assert [p for (p,) in db_rows(db, "select path from photos")] == [str(lib / "IMG_0001.JPG")]


def test_two_hundred_files_at_once_each_scored_exactly_once(service: WatchService, lib: Path, tmp_path: Path) -> None:
    n = 200
    for i in range(n):
        write_jpeg(lib / f"burst/{i:03d}.jpg", 1000 + i, (64, 48))
    db = db_of(tmp_path)
    assert wait_for(lambda: len(runs_per_photo(db)) == n, timeout=60)
    assert service.wait_idle(20, settle=WINDOW * 2)
    counts = runs_per_photo(db)
    assert len(counts) == n and set(counts.values()) == {1}
    assert db_rows(db, "select count(*) from scoring_runs") == [(n,)]
    assert service.pipeline is not None and service.pipeline.counters.done == n


def test_move_into_subfolder_relinks_without_rescoring_and_delete_marks_gone(service: WatchService, lib: Path, tmp_path: Path) -> None:
    a, b = write_jpeg(lib / "a.jpg", 3), write_jpeg(lib / "b.jpg", 4)
    db = db_of(tmp_path)
    assert wait_for(lambda: len(runs_per_photo(db)) == 2)
    assert service.wait_idle(10, settle=WINDOW)
    (run_before,) = db_rows(db, "select r.id from scoring_runs r join photos p on p.id = r.photo_id where p.path = ?", str(a))
    (lib / "2024").mkdir()
    a.rename(lib / "2024" / "a.jpg")
    b.unlink()
    moved = str(lib / "2024" / "a.jpg")
    assert wait_for(lambda: db_rows(db, "select status from photos where path = ?", str(b)) == [("gone",)])
    assert wait_for(lambda: db_rows(db, "select status from photos where path = ?", moved) == [("scored",)])
    assert service.wait_idle(10, settle=WINDOW * 2)
    assert db_rows(db, "select r.id from scoring_runs r join photos p on p.id = r.photo_id where p.path = ?", moved) == [run_before]
    assert db_rows(db, "select count(*) from scoring_runs") == [(2,)]
    assert db_rows(db, "select count(*) from photos where path = ?", str(a)) == [(0,)]
    # Gone keeps the scores (a later move back would relink them).
    assert db_rows(db, "select count(*) from scoring_runs r join photos p on p.id = r.photo_id where p.path = ?", str(b)) == [(1,)]


def test_corrupt_file_is_recorded_and_the_others_are_scored(service: WatchService, lib: Path, tmp_path: Path) -> None:
    for i in range(5):
        write_jpeg(lib / f"ok{i}.jpg", 10 + i)
    good = jpeg_bytes(99)
    (lib / "broken.jpg").write_bytes(good[: len(good) // 3])  # truncated, and stays that way
    (lib / "text.jpg").write_bytes(b"this is not a photo")
    db = db_of(tmp_path)
    assert wait_for(lambda: db_rows(db, "select count(*) from photos where status in ('scored', 'failed')") == [(7,)])
    assert service.wait_idle(10, settle=WINDOW * 2)
    failed = dict(db_rows(db, "select path, error from photos where status = 'failed'"))
    assert set(failed) == {str(lib / "broken.jpg"), str(lib / "text.jpg")}
    assert all(reason and "\n" not in reason for reason in failed.values())
    assert len(runs_per_photo(db)) == 5
    # A repaired file is scored (its signature changed).
    (lib / "broken.jpg").write_bytes(good)
    assert wait_for(lambda: db_rows(db, "select status from photos where path = ?", str(lib / "broken.jpg")) == [("scored",)])


def test_status_file_while_running(service: WatchService, lib: Path, tmp_path: Path) -> None:
    from clipcrop_plugin.daemon.status import read_status

    write_jpeg(lib / "s.jpg", 5)
    path = tmp_path / "state" / "daemon-status.json"
    assert wait_for(lambda: path.exists() and read_status(path).get("done") == 1)
    doc = read_status(path)
    assert doc["running"] is True and doc["pid"] == os.getpid()
    assert doc["folders"] == [{"path": str(lib), "observer": "native", "online": True}]
    assert doc["state"] == "running" and doc["queue_depth"] == 0


def test_existing_photos_are_scanned_first_and_not_rescored_on_restart(tmp_path: Path, lib: Path) -> None:
    for i in range(6):
        write_jpeg(lib / f"old{i}.jpg", 20 + i)
    st = settings_for(tmp_path)
    first = WatchService([lib], st, status_file=tmp_path / "s.json").run_once(timeout=60)
    assert first["done"] == 6
    second = WatchService([lib], st, status_file=tmp_path / "s.json").run_once(timeout=60)
    assert second["done"] == 0 and second["skipped"] == 6
    assert set(runs_per_photo(db_of(tmp_path)).values()) == {1}


def test_dropped_events_are_caught_by_the_reconcile_rescan(tmp_path: Path, lib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every event is lost, as after an inotify queue overflow: only the rescan can find the file.
    monkeypatch.setattr(events_mod.HintHandler, "dispatch", lambda self, event: None)
    svc = WatchService([lib], settings_for(tmp_path, rescan_seconds=1.0), status_file=tmp_path / "s.json")
    svc.start()
    try:
        write_jpeg(lib / "missed.jpg", 6)
        db = db_of(tmp_path)
        assert wait_for(lambda: runs_per_photo(db).get(str(lib / "missed.jpg")) == 1, timeout=10)
        (lib / "missed.jpg").unlink()
        assert wait_for(lambda: db_rows(db, "select status from photos") == [("gone",)], timeout=10)
    finally:
        svc.stop()


def test_inotify_limit_falls_back_to_polling_and_still_scores(tmp_path: Path, lib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from watchdog.observers import Observer

    class Exhausted(Observer):  # type: ignore[misc, valid-type]
        def schedule(self, *a, **k):  # type: ignore[no-untyped-def]
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(observer_mod, "native_observer_factory", Exhausted)
    svc = WatchService([lib], settings_for(tmp_path), status_file=tmp_path / "s.json", poll_interval=0.2)
    svc.start()
    try:
        assert svc.watcher is not None and svc.watcher.modes == {str(lib): "polling"}
        write_jpeg(lib / "polled.jpg", 7)
        assert wait_for(lambda: runs_per_photo(db_of(tmp_path)).get(str(lib / "polled.jpg")) == 1)
    finally:
        svc.stop()


def test_folder_that_disappears_goes_offline_and_comes_back(tmp_path: Path, lib: Path) -> None:
    for i in range(3):
        write_jpeg(lib / f"n{i}.jpg", 30 + i)
    svc = WatchService([lib], settings_for(tmp_path), status_file=tmp_path / "s.json")
    svc.start()
    db = db_of(tmp_path)
    try:
        assert wait_for(lambda: len(runs_per_photo(db)) == 3)
        away = tmp_path / "unmounted"
        lib.rename(away)  # what an unmounted share looks like from here
        assert wait_for(lambda: db_rows(db, "select count(*) from photos where offline") == [(3,)])
        time.sleep(WINDOW * 3)
        assert db_rows(db, "select count(*) from photos where status = 'gone'") == [(0,)]
        away.rename(lib)
        assert wait_for(lambda: db_rows(db, "select count(*) from photos where not offline") == [(3,)])
        write_jpeg(lib / "after.jpg", 40)  # and it is watched again
        assert wait_for(lambda: len(runs_per_photo(db)) == 4)
        assert set(runs_per_photo(db).values()) == {1}
    finally:
        svc.stop()


def test_embed_mode_does_not_rescore_its_own_write_or_a_later_move(tmp_path: Path, lib: Path) -> None:
    from clipcrop_plugin.xmp.writer import read_crop_metadata

    svc = WatchService([lib], settings_for(tmp_path), embed=True, status_file=tmp_path / "s.json")
    svc.start()
    db = db_of(tmp_path)
    try:
        photo = write_jpeg(lib / "e.jpg", 8)
        assert wait_for(lambda: runs_per_photo(db).get(str(photo)) == 1)
        assert svc.wait_idle(10, settle=WINDOW * 3)
        assert read_crop_metadata(photo) is not None and not (lib / "e.xmp").exists()
        (lib / "sub").mkdir()
        photo.rename(lib / "sub" / "e.jpg")
        assert wait_for(lambda: runs_per_photo(db).get(str(lib / "sub" / "e.jpg")) == 1)
        assert svc.wait_idle(10, settle=WINDOW * 3)
        assert svc.pipeline is not None and svc.pipeline.counters.done == 1
        assert db_rows(db, "select count(*) from scoring_runs") == [(1,)]
    finally:
        svc.stop()


def test_kill_between_commit_and_sidecar_is_repaired_on_restart(tmp_path: Path, lib: Path) -> None:
    photo = write_jpeg(lib / "k.jpg", 9)
    st = settings_for(tmp_path)
    assert WatchService([lib], st, status_file=tmp_path / "s.json").run_once(timeout=60)["done"] == 1
    (lib / "k.xmp").unlink()  # as if the process died right after the database commit
    again = WatchService([lib], st, status_file=tmp_path / "s.json").run_once(timeout=60)
    assert again["done"] == 0 and (lib / "k.xmp").is_file()
    assert runs_per_photo(db_of(tmp_path)) == {str(photo): 1}


def test_renaming_a_folder_relinks_every_photo_in_it(service: WatchService, lib: Path, tmp_path: Path) -> None:
    for i in range(3):
        write_jpeg(lib / "trip" / f"t{i}.jpg", 60 + i)
    db = db_of(tmp_path)
    assert wait_for(lambda: len(runs_per_photo(db)) == 3)
    assert service.wait_idle(10, settle=WINDOW)
    (lib / "trip").rename(lib / "2024 trip")
    want = {str(lib / "2024 trip" / f"t{i}.jpg"): 1 for i in range(3)}
    assert wait_for(lambda: runs_per_photo(db) == want)
    assert service.wait_idle(10, settle=WINDOW * 3)
    assert runs_per_photo(db) == want and db_rows(db, "select count(*) from scoring_runs") == [(3,)]
    assert db_rows(db, "select count(*) from photos where status != 'scored'") == [(0,)]
    assert all((lib / "2024 trip" / f"t{i}.xmp").is_file() for i in range(3))


def test_a_folder_missing_at_start_is_offline_until_it_appears(tmp_path: Path, lib: Path) -> None:
    share = tmp_path / "nas"
    svc = WatchService([lib, share], settings_for(tmp_path), status_file=tmp_path / "s.json")
    svc.start()
    db = db_of(tmp_path)
    try:
        assert svc.snapshot()["folders"][1] == {"path": str(share), "observer": "offline", "online": False}
        write_jpeg(share / "late.jpg", 70)  # the share is mounted
        assert wait_for(lambda: runs_per_photo(db).get(str(share / "late.jpg")) == 1)
        assert wait_for(lambda: svc.snapshot()["folders"][1]["online"] is True)
    finally:
        svc.stop()


def test_photos_deleted_while_the_daemon_was_down_are_marked_gone_on_start(tmp_path: Path, lib: Path) -> None:
    keep, drop = write_jpeg(lib / "keep.jpg", 80), write_jpeg(lib / "drop.jpg", 81)
    st = settings_for(tmp_path)
    assert WatchService([lib], st, status_file=tmp_path / "s.json").run_once(timeout=60)["done"] == 2
    drop.unlink()
    WatchService([lib], st, status_file=tmp_path / "s.json").run_once(timeout=60)
    db = db_of(tmp_path)
    assert dict(db_rows(db, "select path, status from photos")) == {str(keep): "scored", str(drop): "gone"}


def test_a_copy_that_pauses_longer_than_the_window_is_not_recorded_as_failed(service: WatchService, lib: Path, tmp_path: Path) -> None:
    data = jpeg_bytes(90, (320, 240))
    target = lib / "paused.jpg"
    with open(target, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        time.sleep(WINDOW * 3)  # the half file is "stable" and does not decode: it must wait
        fh.write(data[len(data) // 2 :])
    db = db_of(tmp_path)
    assert wait_for(lambda: runs_per_photo(db).get(str(target)) == 1)
    assert service.wait_idle(10, settle=WINDOW * 2)
    assert service.pipeline is not None and service.pipeline.counters.failed == 0
    assert db_rows(db, "select status, error from photos") == [("scored", None)]


def test_identical_copies_dropped_together_are_scored_once(service: WatchService, lib: Path, tmp_path: Path) -> None:
    data = jpeg_bytes(91)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (lib / name).write_bytes(data)
    db = db_of(tmp_path)
    assert wait_for(lambda: db_rows(db, "select count(*) from photos where status = 'scored'") == [(3,)])
    assert service.wait_idle(10, settle=WINDOW * 2)
    assert service.pipeline is not None and service.pipeline.counters.done == 1  # one scorer pass
    # The copies carry the scores of that pass (the store copies the run for each path).
    assert len({h for (h,) in db_rows(db, "select content_hash from scoring_runs")}) == 1
    assert all((lib / f"{n}.xmp").is_file() for n in ("a", "b", "c"))
