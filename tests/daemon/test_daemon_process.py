"""`clipcrop watch` as a real process: SIGTERM stops it promptly, kill -9 loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.daemon import db_rows, runs_per_photo, wait_for, write_jpeg

CLI = [sys.executable, "-c", "from clipcrop_plugin.cli.main import cli; cli()"]


def _config(db: Path) -> None:
    Path(os.environ["CLIPCROP_CONFIG"]).write_text(
        f'db_url = "sqlite:///{db}"\nscorer = "heuristic"\nstable_seconds = 0.2\nbatch_size = 4\n'
        # Every scored photo gets its sidecar ("keep as is" is tested in test_keep.py).
        "keep_margin = -inf\n", encoding="utf-8"
    )


def _status(data: Path) -> dict:  # type: ignore[type-arg]
    from clipcrop_plugin.daemon.status import read_status

    try:
        return read_status(data / "daemon-status.json")
    except Exception:  # noqa: BLE001 - not written yet
        return {}


def _scored(db: Path) -> int:
    try:
        return int(db_rows(db, "select count(*) from scoring_runs")[0][0])
    except Exception:  # noqa: BLE001 - the database is created by the daemon
        return 0


@pytest.fixture
def backlog(tmp_path: Path) -> tuple[Path, Path, int]:
    lib = tmp_path / "photos"
    n = 40
    for i in range(n):
        write_jpeg(lib / f"{i:03d}.jpg", 500 + i, (480, 360))
    db = tmp_path / "db.sqlite3"
    _config(db)
    return lib, db, n


def test_sigterm_mid_backlog_exits_zero_within_seconds(backlog: tuple[Path, Path, int]) -> None:
    lib, db, n = backlog
    data = Path(os.environ["CLIPCROP_DATA_DIR"])
    proc = subprocess.Popen([*CLI, "watch", str(lib)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _scored(db) >= 4, timeout=60), proc.stderr.read() if proc.poll() is not None else ""
        assert _status(data).get("running") is True
        res = subprocess.run([*CLI, "status", "--json"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["pid"] == proc.pid and doc["folders"][0]["path"] == str(lib) and doc["scorer"] == "heuristic"
        res = subprocess.run([*CLI, "status"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and res.stdout.startswith(f"clipcrop watch: running (pid {proc.pid}")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert took < 5.0, f"took {took:.1f} s to stop"
    assert "received SIGTERM" in err
    assert all(line.split(" ", 1)[0] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"} for line in err.splitlines() if line)
    assert _status(data).get("running") is False
    # What it did is consistent: every scored photo has one run, with candidates.
    counts = runs_per_photo(db)
    assert counts and set(counts.values()) == {1}


def test_kill_9_mid_backlog_then_restart_scores_each_photo_exactly_once(backlog: tuple[Path, Path, int]) -> None:
    lib, db, n = backlog
    proc = subprocess.Popen([*CLI, "watch", str(lib)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _scored(db) >= 4, timeout=60)
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = _scored(db)
    assert done_before < n, "the backlog finished before the kill; make it bigger"
    # The lock died with the process; the stale status file says so.
    res = subprocess.run([*CLI, "status"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and "not running" in res.stdout
    res = subprocess.run([*CLI, "watch", str(lib), "--once"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    counts = runs_per_photo(db)
    assert len(counts) == n and set(counts.values()) == {1}
    assert db_rows(db, "select count(*) from scoring_runs") == [(n,)]
    assert db_rows(db, "select count(*) from photos where status != 'scored'") == [(0,)]
    assert all((lib / f"{i:03d}.xmp").is_file() for i in range(n))


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    res = subprocess.run([*CLI, "watch", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith("error:")
    assert "Traceback" not in res.stderr
    res = subprocess.run([*CLI, "watch", str(tmp_path), "--aspect", "banana"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    # Never started is "not running" (3, as the README's exit-code table says), in text and JSON.
    res = subprocess.run([*CLI, "status"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and res.stdout.startswith("clipcrop watch: not running (never started")
    res = subprocess.run([*CLI, "status", "--json"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and json.loads(res.stdout)["running"] is False


def test_a_second_daemon_on_the_same_data_folder_is_refused(tmp_path: Path) -> None:
    from clipcrop_plugin.daemon.status import DaemonLock

    _config(tmp_path / "db.sqlite3")
    held = DaemonLock(Path(os.environ["CLIPCROP_DATA_DIR"]))
    held.acquire()
    try:
        res = subprocess.run([*CLI, "watch", str(tmp_path), "--once"], capture_output=True, text=True, timeout=60)
    finally:
        held.release()
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == f"error: another clipcrop watch is running on this data folder (pid {os.getpid()})"


def test_once_reports_failures_with_reasons_and_exit_1(tmp_path: Path) -> None:
    lib = tmp_path / "photos"
    write_jpeg(lib / "good.jpg", 1)
    (lib / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _config(tmp_path / "db.sqlite3")
    res = subprocess.run([*CLI, "watch", str(lib), "--once"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stdout.strip() == "1 scored, 0 unchanged, 1 failed"
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("WARNING")] == [
        ln for ln in res.stderr.splitlines() if "bad.jpg" in ln
    ]
    assert "Traceback" not in res.stderr


def test_ctrl_c_stops_an_idle_daemon_cleanly(tmp_path: Path) -> None:
    lib = tmp_path / "photos"
    write_jpeg(lib / "one.jpg", 2)
    _config(tmp_path / "db.sqlite3")
    data = Path(os.environ["CLIPCROP_DATA_DIR"])
    proc = subprocess.Popen([*CLI, "watch", str(lib)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _status(data).get("done") == 1, timeout=60)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and time.monotonic() - sent < 5.0, err
    assert "received SIGINT" in err and "Traceback" not in err
