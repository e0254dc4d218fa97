"""The task queue on a real PostgreSQL with real `clipcrop worker` processes: exactly once under
SIGKILL, SIGTERM within 15 s, bad input failing one job with its reason, and `clipcrop status`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support import ROOT
from support.db import db_rows, db_value
from support.store import make_photo

from clipcrop_plugin.errors import ConfigError
from clipcrop_plugin.store import Store
from clipcrop_plugin.taskqueue import PathMap, conninfo, enqueue_paths, queue_status


def clipcrop(*args: str, **kw: object) -> list[str]:
    return [sys.executable, "-c", "from clipcrop_plugin.cli.main import cli; cli()", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def photos(folder: Path, n: int) -> list[Path]:
    return [make_photo(folder / f"d{i // 50}" / f"p{i:03d}.jpg", seed=i, size=(96, 64)) for i in range(n)]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(clipcrop(*args), env=env(), capture_output=True, text=True, timeout=timeout)


def test_queue_needs_postgresql() -> None:
    with pytest.raises(ConfigError, match="PostgreSQL"):
        conninfo("sqlite:////tmp/x.sqlite3")
    assert conninfo("postgresql+psycopg://u:pw@h:5/db") == "postgresql://u:pw@h:5/db"


def test_path_map_longest_prefix_and_bad_entries() -> None:
    m = PathMap.parse({"/volume1/photo": "/mnt/nas", "/volume1/photo/raw": "/mnt/raw"})
    assert m.local("/volume1/photo/2024/a.jpg") == "/mnt/nas/2024/a.jpg"
    assert m.local("/volume1/photo/raw/b.nef") == "/mnt/raw/b.nef"
    assert m.local("/volume1/photography/c.jpg") == "/volume1/photography/c.jpg"  # a prefix of a name is no match
    assert PathMap.parse(["/a=/b"]).local("/a/x.jpg") == "/b/x.jpg"
    with pytest.raises(ConfigError, match="FROM=TO"):
        PathMap.parse(["/only-one-side"])


def test_enqueue_twice_queues_each_photo_once(pg_url: str, tmp_path: Path) -> None:
    photos(tmp_path / "lib", 12)
    assert enqueue_paths(pg_url, [tmp_path / "lib"]) == (12, 0)
    assert enqueue_paths(pg_url, [tmp_path / "lib"]) == (0, 12)
    st = queue_status(pg_url)
    assert st["todo"] == 12 and st["failed"] == 0


def test_cli_scan_enqueue_then_worker_once_scores_and_writes_sidecars(pg_url: str, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    photos(lib, 10)
    out = run("scan", "--enqueue", str(lib), "--xmp", "--aspect", "1:1", "--db", pg_url)
    assert out.returncode == 0, out.stderr
    assert "queued 10 photos" in out.stdout
    out = run("worker", "--once", "--scorer", "heuristic", "--db", pg_url)
    assert out.returncode == 0, out.stderr
    assert "10 scored" in out.stdout
    assert len(list(lib.rglob("*.xmp"))) == 10
    assert db_value(pg_url, "SELECT count(*) FROM photos WHERE status = 'scored'") == 10
    # Queued again: nothing new to score, nothing rewritten.
    mtimes = {p: p.stat().st_mtime_ns for p in lib.rglob("*.xmp")}
    run("scan", "--enqueue", str(lib), "--xmp", "--db", pg_url)
    out = run("worker", "--once", "--scorer", "heuristic", "--db", pg_url)
    assert "0 scored, 10 already done" in out.stdout, out.stdout
    assert mtimes == {p: p.stat().st_mtime_ns for p in lib.rglob("*.xmp")}


def test_a_job_whose_worker_died_after_the_commit_writes_the_owed_sidecar(pg_url: str, tmp_path: Path) -> None:
    # The state a worker SIGKILLed between its batch's commit and its sidecar writes leaves: the
    # scores are stored, the sidecars are held (owed) and missing, the jobs are queued again.
    # The next worker finds the photos unchanged: it must write the sidecars, not just skip.
    lib = tmp_path / "lib"
    ps = photos(lib, 4)
    assert run("scan", "--enqueue", str(lib), "--xmp", "--db", pg_url).returncode == 0
    assert run("worker", "--once", "--scorer", "heuristic", "--db", pg_url).returncode == 0
    written = sorted(lib.rglob("*.xmp"))
    assert written
    for sidecar in written:
        sidecar.unlink()
    with Store.open(pg_url) as store:
        store.hold_metadata(str(p) for p in ps)
    out = run("scan", "--enqueue", str(lib), "--xmp", "--db", pg_url)
    assert "queued 4 photos" in out.stdout, out.stdout
    out = run("worker", "--once", "--scorer", "heuristic", "--db", pg_url)
    assert out.returncode == 0, out.stderr
    assert "0 scored" in out.stdout, out.stdout
    assert sorted(lib.rglob("*.xmp")) == written
    with Store.open(pg_url) as store:
        assert store.held_metadata() == set()


def test_bad_jobs_fail_with_their_reason_and_the_worker_goes_on(pg_url: str, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    ps = photos(lib, 4)
    (lib / "broken.jpg").write_bytes(b"not a jpeg at all")
    enqueue_paths(pg_url, [lib])
    ps[0].unlink()  # deleted after it was queued
    out = run("worker", "--once", "--scorer", "heuristic", "--db", pg_url)
    assert out.returncode == 0, out.stderr
    assert "3 scored" in out.stdout
    assert re.search(rf"job \d+ failed: {re.escape(str(ps[0]))}: deleted since it was queued", out.stderr)
    assert "broken.jpg" in out.stderr
    st = queue_status(pg_url)
    assert st["failed"] == 2 and st["succeeded"] == 3
    reasons = sorted(f["reason"] for f in st["last_failures"])
    assert any("deleted since it was queued" in r for r in reasons)
    text = run("status", "--db", pg_url).stdout
    assert "2 failed" in text and "deleted since it was queued" in text

    # A worker whose path_map sends the photos to a mount that is not there.
    more = photos(tmp_path / "nas", 2)
    enqueue_paths(pg_url, [tmp_path / "nas"])
    out = run("worker", "--once", "--scorer", "heuristic", "--path-map", f"{tmp_path / 'nas'}=/nonexistent/mnt",
              "--db", pg_url)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("not reachable here") == 2, out.stderr
    assert "/nonexistent/mnt is not mounted" in out.stderr
    assert all(p.exists() for p in more)
    assert db_value(pg_url, "SELECT count(*) FROM photos WHERE path LIKE :p", p=f"{tmp_path / 'nas'}%") == 0


def test_status_and_worker_with_an_unreachable_database_say_so_in_one_line() -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    out = run("status", "--db", url)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("task queue")]
    assert len(lines) == 1 and "cannot reach the queue database" in lines[0]
    out = run("worker", "--once", "--scorer", "heuristic", "--db", url)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "127.0.0.1:1" in out.stderr


def _start_worker(pg_url: str, log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("wb")
    return subprocess.Popen(clipcrop("-vv", "worker", "--scorer", "heuristic", "--concurrency", "8", "--heartbeat",
                                     "1", "--stalled-after", "4", "--db", pg_url), env=env(), stdout=fh, stderr=fh)


def _scored_lines(*logs: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for log in logs:
        for m in re.finditer(r"DEBUG clipcrop.worker: scored (\S+)", log.read_text(errors="replace")):
            found[m.group(1)] += 1
    return found


@pytest.mark.slow
def test_two_workers_one_sigkilled_every_photo_scored_exactly_once(pg_url: str, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    ps = photos(lib, 200)
    Store.open(pg_url).close()  # the library schema, as `scan --enqueue` creates it
    assert enqueue_paths(pg_url, [lib], aspects=["1:1"], xmp="sidecar") == (200, 0)
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    workers = [_start_worker(pg_url, logs[0]), _start_worker(pg_url, logs[1])]
    try:
        deadline = time.monotonic() + 120
        while db_value(pg_url, "SELECT count(*) FROM photos") < 30:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.1)
        workers[0].send_signal(signal.SIGKILL)  # mid-batch: it has jobs in 'doing'
        workers[0].wait(10)
        deadline = time.monotonic() + 180
        while True:
            st = queue_status(pg_url)
            if st["todo"] == 0 and st["doing"] == 0:
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.5)
        t0 = time.monotonic()
        workers[1].send_signal(signal.SIGTERM)
        workers[1].wait(15)
        assert time.monotonic() - t0 < 15
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    st = queue_status(pg_url)
    assert st["failed"] == 0 and st["succeeded"] >= 200
    rows = db_rows(pg_url, "SELECT p.path, count(r.id) FROM photos p JOIN scoring_runs r ON r.photo_id = p.id"
                           " WHERE p.status = 'scored' GROUP BY p.path")
    assert sorted(r[0] for r in rows) == sorted(str(p) for p in ps)
    assert all(n == 1 for _p, n in rows)
    scored = _scored_lines(*logs)
    assert max(scored.values()) == 1, [p for p, n in scored.items() if n > 1]  # nothing scored twice
    # The killed one may die between a batch's commit (one transaction, up to --concurrency 8
    # photos) and its log lines; the database rows above are the exactly-once proof.
    assert sum(scored.values()) >= 200 - 8
    sidecars = sorted(lib.rglob("*.xmp"))
    assert len(sidecars) == 200
    assert "queued again" in logs[1].read_text()


@pytest.mark.slow
def test_sigterm_finishes_the_batch_within_15_seconds(pg_url: str, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    photos(lib, 60)
    Store.open(pg_url).close()
    enqueue_paths(pg_url, [lib])
    w = _start_worker(pg_url, tmp_path / "w.log")
    try:
        deadline = time.monotonic() + 60
        while db_value(pg_url, "SELECT count(*) FROM photos") < 8:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t0 = time.monotonic()
        w.send_signal(signal.SIGTERM)
        w.wait(15)
        assert time.monotonic() - t0 < 15
    finally:
        if w.poll() is None:
            w.kill()
    st = queue_status(pg_url)
    assert st["doing"] == 0, st  # finished or released, never left running
    done = db_value(pg_url, "SELECT count(*) FROM photos WHERE status = 'scored'")
    assert st["succeeded"] == done and st["todo"] == 60 - done
    out = json.loads(run("status", "--json", "--db", pg_url).stdout)
    assert out["queue"]["todo"] == 60 - done
