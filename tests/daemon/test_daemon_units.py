"""Daemon machinery on real folders: event filtering, stability, status file, observer fallback."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
from support import ROOT
from watchdog.observers import Observer

from clipcrop_plugin.daemon import observer as observer_mod
from clipcrop_plugin.daemon.events import HintHandler, Hints, is_ignored
from clipcrop_plugin.daemon.observer import Watcher
from clipcrop_plugin.daemon.stability import StabilityTracker, file_signature
from clipcrop_plugin.daemon.status import DaemonLock, read_status, write_status
from clipcrop_plugin.errors import ClipcropError


@pytest.mark.parametrize(
    "name",
    [
        "IMG_1.JPG.xmp",
        "IMG_1.xmp",
        ".IMG_1.JPG.clipcrop-tmp-1234",
        ".DS_Store",
        "Thumbs.db",
        ".syncthing.IMG_1.JPG.tmp",
        "~syncthing~IMG_1.JPG.tmp",
        "IMG_1.JPG.tmp",
        ".IMG_1.JPG.a8Xk2Q",  # rsync
        "@eaDir/IMG_1.JPG/SYNOPHOTO_THUMB_XL.jpg",
        ".hidden/IMG_1.JPG",
    ],
)
def test_ignored_names(name: str, tmp_path: Path) -> None:
    assert is_ignored(tmp_path / name, tmp_path)


def test_photos_are_not_ignored_even_below_a_hidden_root(tmp_path: Path) -> None:
    root = tmp_path / ".photos"
    assert not is_ignored(root / "2024" / "IMG_1.JPG", root)
    assert not is_ignored(tmp_path / "IMG 1 (copy).jpeg", tmp_path)


def _wait(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_handler_with_real_observer_records_hints_only(tmp_path: Path) -> None:
    hints = Hints()
    obs = Observer()
    obs.schedule(HintHandler(hints, str(tmp_path), lambda p: p.lower().endswith(".jpg")), str(tmp_path), recursive=True)
    obs.start()
    try:
        collected: dict[str, dict[str, float]] = {"changed": {}, "vanished": {}}

        def drain() -> None:
            changed, vanished, _dirs = hints.take()
            collected["changed"].update(changed)
            collected["vanished"].update(vanished)

        # Temp-then-rename (Syncthing style): only the final name is a hint.
        tmp = tmp_path / ".syncthing.a.jpg.tmp"
        tmp.write_bytes(b"x" * 100)
        tmp.rename(tmp_path / "a.jpg")
        # Our own sidecar and a non-photo never show up.
        (tmp_path / "a.jpg.xmp").write_text("<x/>")
        (tmp_path / "notes.txt").write_text("hi")
        # A burst of writes to one file is one hint.
        with open(tmp_path / "b.jpg", "wb") as fh:
            for _ in range(50):
                fh.write(b"y" * 1000)
                fh.flush()
        assert _wait(lambda: (drain(), "b.jpg" in {Path(p).name for p in collected["changed"]})[1])
        names = {Path(p).name for p in collected["changed"]}
        assert names == {"a.jpg", "b.jpg"}
        # A move: the source vanishes, the destination changes.
        (tmp_path / "sub").mkdir()
        os.rename(tmp_path / "a.jpg", tmp_path / "sub" / "a.jpg")
        (tmp_path / "b.jpg").unlink()
        assert _wait(lambda: (drain(), {"a.jpg", "b.jpg"} <= {Path(p).name for p in collected["vanished"]})[1])
        assert str(tmp_path / "sub" / "a.jpg") in collected["changed"]
    finally:
        obs.stop()
        obs.join(5)


def test_stability_waits_for_the_last_chunk(tmp_path: Path) -> None:
    clock = [100.0]
    tr = StabilityTracker(0.3, clock=lambda: clock[0])
    f = tmp_path / "x.jpg"
    f.write_bytes(b"a" * 10)
    tr.note(str(f))
    clock[0] += 0.2
    assert tr.due() == []  # still inside the window
    # A chunk lands without an event (network share): the signature changed, so it re-arms.
    with open(f, "ab") as fh:
        fh.write(b"b" * 10)
    clock[0] += 0.2
    assert tr.due() == []
    assert str(f) in tr
    clock[0] += 0.31
    assert [p for p, _ in tr.due()] == [str(f)]
    assert len(tr) == 0


def test_stability_settled_scan_entries_and_vanished_files(tmp_path: Path) -> None:
    tr = StabilityTracker(5.0)
    old = tmp_path / "old.jpg"
    old.write_bytes(b"a")
    tr.note(str(old), settled=True)
    gone = tmp_path / "gone.jpg"
    gone.write_bytes(b"a")
    tr.note(str(gone), settled=True)
    gone.unlink()
    assert [p for p, _ in tr.due()] == [str(old)]
    assert len(tr) == 0
    assert file_signature(str(tmp_path)) is None  # a folder is never a photo


def test_status_roundtrip_and_dead_pid(tmp_path: Path) -> None:
    from clipcrop_plugin.daemon.status import process_start_time

    path = tmp_path / "daemon-status.json"
    doc = {"pid": os.getpid(), "process_started_at": process_start_time(os.getpid()), "state": "running",
           "updated_at": time.time(), "done": 3}
    write_status(doc, path)
    got = read_status(path)
    assert got["running"] is True and got["done"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name != path.name]  # no temp file left behind
    # A pid that does not exist (pid_max is below 2**22 + 1 on Linux).
    write_status({**doc, "pid": 2**22 + 7}, path)
    assert read_status(path)["running"] is False
    write_status({**doc, "state": "stopped"}, path)
    assert read_status(path)["running"] is False
    with pytest.raises(ClipcropError, match="no daemon status"):
        read_status(tmp_path / "nope.json")


def test_daemon_lock_is_exclusive(tmp_path: Path) -> None:
    a, b = DaemonLock(tmp_path), DaemonLock(tmp_path)
    a.acquire()
    try:
        with pytest.raises(ClipcropError, match="another clipcrop watch"):
            b.acquire()
    finally:
        a.release()
    b.acquire()
    b.release()


def test_watch_limit_falls_back_to_polling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    class FullObserver(Observer):  # type: ignore[misc, valid-type]
        def schedule(self, *a, **k):  # type: ignore[no-untyped-def]
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(observer_mod, "native_observer_factory", FullObserver)
    hints = Hints()
    w = Watcher(lambda root: HintHandler(hints, root), poll_interval=0.1)
    try:
        with caplog.at_level("WARNING", logger="clipcrop.daemon"):
            assert w.watch(str(tmp_path)) == "polling"
        lines = [r.getMessage() for r in caplog.records if "polling it instead" in r.getMessage()]
        assert len(lines) == 1 and "max_user_watches" in lines[0]
        # And the polling observer really delivers events.
        seen: set[str] = set()
        (tmp_path / "p.jpg").write_bytes(b"z" * 10)
        assert _wait(lambda: (seen.update(hints.take()[0]), str(tmp_path / "p.jpg") in seen)[1], 5.0)
    finally:
        w.stop()


def test_other_oserrors_are_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class BrokenObserver(Observer):  # type: ignore[misc, valid-type]
        def schedule(self, *a, **k):  # type: ignore[no-untyped-def]
            raise OSError(errno.EACCES, "permission denied")

    monkeypatch.setattr(observer_mod, "native_observer_factory", BrokenObserver)
    w = Watcher(lambda root: HintHandler(Hints(), root))
    try:
        with pytest.raises(OSError):
            w.watch(str(tmp_path))
    finally:
        w.stop()


def test_example_config_lists_every_setting_with_its_default() -> None:
    from dataclasses import fields

    from clipcrop_plugin.config import Settings, load_settings, tomllib

    example = ROOT / "examples" / "config.toml"
    assert load_settings(example) == Settings()
    assert set(tomllib.loads(example.read_text(encoding="utf-8"))) == {f.name for f in fields(Settings)}


def test_example_systemd_unit_runs_the_daemon_and_stops_it_with_sigterm() -> None:
    import configparser

    unit = ROOT / "examples" / "clipcrop-watch.service"
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment, method-assign]
    cp.read_string(unit.read_text(encoding="utf-8"))
    assert " watch " in cp["Service"]["ExecStart"]
    assert cp["Service"]["KillSignal"] == "SIGTERM" and cp["Service"]["Restart"] == "on-failure"
    assert cp["Install"]["WantedBy"] == "default.target"  # a user unit


def test_status_never_shows_a_database_password() -> None:
    from clipcrop_plugin.daemon.service import _redact

    assert _redact("postgresql+psycopg://clip:s3cret@db.local/crops") == "postgresql+psycopg://clip:***@db.local/crops"
    assert _redact("/home/me/crops.sqlite3") == "/home/me/crops.sqlite3"


def test_network_shares_are_polled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    share, local = tmp_path / "nas", tmp_path / "local"
    share.mkdir()
    local.mkdir()
    mounts = [("/", "ext4"), (str(share), "nfs4"), (str(tmp_path / "ssh"), "fuse.sshfs")]
    monkeypatch.setattr(observer_mod, "_mounts", lambda: mounts)
    assert observer_mod.network_fs(str(share / "2024")) == "nfs4"
    assert observer_mod.network_fs(str(tmp_path / "ssh")) == "fuse.sshfs"
    assert observer_mod.network_fs(str(local)) is None
    assert observer_mod.network_fs(str(tmp_path / "nas-other")) is None  # a prefix is not a parent
    w = Watcher(lambda root: HintHandler(Hints(), root), poll_interval=0.1)
    try:
        with caplog.at_level("INFO", logger="clipcrop.daemon"):
            assert w.watch(str(share)) == "polling"
            assert w.watch(str(local)) == "native"
        assert any("is on nfs4; polling it" in r.getMessage() for r in caplog.records)
    finally:
        w.stop()


def test_gather_takes_what_arrives_within_the_wait_and_stops_at_the_sentinel() -> None:
    import queue as queue_module

    from clipcrop_plugin.batching import gather

    stop = object()
    q: queue_module.Queue[object] = queue_module.Queue()
    for item in ("b", "c", "d"):
        q.put(item)
    assert gather(q, "a", 3, 1.0, stop) == (["a", "b", "c"], False)  # full: "d" waits for the next
    assert gather(q, "x", 5, 0.05, stop) == (["x", "d"], False)  # nothing more within the wait
    q.put("y")
    q.put(stop)
    q.put("z")
    assert gather(q, "w", 5, 1.0, stop) == (["w", "y"], True)  # the batch ends at the sentinel
    assert q.get_nowait() == "z"
