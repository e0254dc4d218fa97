"""``clipcrop serve`` as a user runs it: a real uvicorn process on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.server import build_library, free_port

CLIPCROP = str(Path(sys.executable).with_name("clipcrop"))


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([CLIPCROP, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def _wait_up(proc: subprocess.Popen, url: str, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {proc.stderr.read()}")
        try:
            _get(url, headers)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("serve did not come up")


@pytest.fixture()
def db(tmp_path: Path) -> str:
    sample = build_library(tmp_path, n=2)
    sample.library.close()
    return sample.url


def test_serve_serves_the_library_and_stops_cleanly(db: str) -> None:
    port = free_port()
    proc = _start(["--port", str(port), "--db", db])
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(proc, base + "/api/info")
        status, body = _get(base + "/api/photos")
        assert status == 200 and json.loads(body)["total"] == 2
        assert _get(base + "/")[0] == 200
        assert _get(f"http://localhost:{port}/api/info")[0] == 200  # loopback names are allowed hosts
        assert _get(base + "/api/info", {"Host": "rebind.example"})[0] == 400
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"review page: http://127.0.0.1:{port}/" in err and "Traceback" not in err


def test_serve_with_token_requires_it(db: str) -> None:
    port = free_port()
    proc = _start(["--port", str(port), "--db", db, "--token", "t0k"])
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(proc, base + "/api/info")
        assert _get(base + "/api/info")[0] == 401
        assert _get(base + "/api/info", {"Authorization": "Bearer t0k"})[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "?token=t0k" in err  # the address to open, printed once


def test_serve_reports_a_bad_database_in_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-db.sqlite3"
    bogus.write_bytes(b"this is not sqlite" * 100)
    r = subprocess.run([CLIPCROP, "serve", "--port", str(free_port()), "--db", str(bogus)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert bogus.read_bytes() == b"this is not sqlite" * 100


def test_a_busy_port_is_one_line_and_no_url(db: str) -> None:
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        res = subprocess.run([CLIPCROP, "serve", "--port", str(port), "--db", db], capture_output=True, text=True,
                             timeout=60, env=os.environ.copy())
    finally:
        holder.close()
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another server is using it; pick another"
        " --port)"]
