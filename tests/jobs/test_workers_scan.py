"""`scan --workers N`: N processes decode and score, one writer; same results and exactly-once
rules as one process, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT
from support.db import db_rows
from support.store import make_photo

from clipcrop_plugin.candidates import parse_aspect
from clipcrop_plugin.config import Settings
from clipcrop_plugin.scan import scan_folders
from clipcrop_plugin.scoring.registry import load_scorer
from clipcrop_plugin.store import Store
from clipcrop_plugin.workers import WorkerPool, resolve_workers

ASPECTS = (parse_aspect("1:1"),)


def library(folder: Path, n: int) -> list[Path]:
    return [make_photo(folder / f"p{i:02d}.jpg", seed=i, size=(160, 120)) for i in range(n)]


def best_crops(store: Store) -> dict[str, tuple]:  # type: ignore[type-arg]
    return {p.path: (p.crop.aspect, p.crop.box, round(p.crop.score, 6)) for p in store.query(limit=0, sort="path")}


def test_resolve_workers_defaults_to_the_cores() -> None:
    import os

    assert resolve_workers(3) == 3
    assert resolve_workers(None, Settings(workers=5)) == 5
    assert resolve_workers(0) == resolve_workers(None, Settings()) == len(os.sched_getaffinity(0))


def test_two_workers_store_what_one_process_stores(db_url: str, tmp_path: Path) -> None:
    photos = library(tmp_path / "lib", 24)
    shutil.copy(photos[0], tmp_path / "lib" / "copy-of-p00.jpg")  # same content, likely in flight at once
    scorer = load_scorer("heuristic")
    with Store.open(f"sqlite:///{tmp_path / 'one.sqlite3'}") as one:
        r1 = scan_folders(one, [tmp_path / "lib"], scorer, ASPECTS, batch_size=4)
        expected = best_crops(one)
    with Store.open(db_url) as store:
        r2 = scan_folders(store, [tmp_path / "lib"], scorer, ASPECTS, batch_size=4, workers=2)
        assert r2.workers == 2 and len(r2.worker_rss) == 2 and all(m > 10 * 2**20 for m in r2.worker_rss)
        assert best_crops(store) == expected
        # The copy was waiting for its original, then got a copy of the scores: scored once.
        assert (r2.scored, r2.copied, r2.failed) == (24, 1, 0), r2.summary()
        assert r1.scored + r1.copied == 25
        runs = db_rows(db_url, "SELECT p.path, count(*) FROM photos p JOIN scoring_runs r ON r.photo_id = p.id"
                               " GROUP BY p.path")
        assert len(runs) == 25 and all(n == 1 for _p, n in runs)
        again = scan_folders(store, [tmp_path / "lib"], scorer, ASPECTS, batch_size=4, workers=2)
        assert (again.scored, again.skipped) == (0, 25)


def test_a_broken_photo_fails_alone_in_its_worker(tmp_path: Path) -> None:
    library(tmp_path / "lib", 9)
    (tmp_path / "lib" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    with Store.open(f"sqlite:///{tmp_path / 'w.sqlite3'}") as store:
        r = scan_folders(store, [tmp_path / "lib"], load_scorer("heuristic"), ASPECTS, batch_size=3, workers=2)
        assert (r.scored, r.failed) == (9, 1)
        assert "bad.jpg" in r.failures[0][1]
        assert store.find_path(str(tmp_path / "lib" / "bad.jpg")).status == "failed"


def test_decode_mode_scores_in_the_parent(tmp_path: Path) -> None:
    """The GPU layout (workers decode, the parent's one scorer scores) gives the same crops."""
    photos = library(tmp_path / "lib", 4)
    scorer = load_scorer("heuristic")
    with WorkerPool(scorer, 2, ASPECTS, mode="decode") as pool:
        got = pool.result(pool.submit([str(p) for p in photos]), [str(p) for p in photos])
    with WorkerPool(scorer, 1, ASPECTS, mode="score") as pool:
        ref = pool.result(pool.submit([str(p) for p in photos]), [str(p) for p in photos])
    assert [s.best().box for s in got] == [s.best().box for s in ref]


def test_cli_scan_workers(tmp_path: Path) -> None:
    library(tmp_path / "lib", 20)
    db = tmp_path / "cli.sqlite3"
    out = subprocess.run([sys.executable, "-c", "from clipcrop_plugin.cli.main import cli; cli()", "scan",
                          str(tmp_path / "lib"), "--scorer", "heuristic", "--workers", "2", "--batch-size", "4",
                          "--db", str(db)], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert "20/20 photos: 20 scored" in out.stdout


def test_two_scans_at_once_lose_and_double_nothing(db_url: str, tmp_path: Path) -> None:
    """Concurrent writers: two `clipcrop scan` processes over the same folder into one database."""
    import os

    library(tmp_path / "lib", 40)
    Store.open(db_url).close()  # create the schema once, as the first scan of a library would
    cmd = [sys.executable, "-c", "from clipcrop_plugin.cli.main import cli; cli()", "scan", str(tmp_path / "lib"),
           "--scorer", "heuristic", "--workers", "1", "--batch-size", "4", "--db", db_url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    rows = db_rows(db_url, "SELECT p.path, count(r.id) FROM photos p JOIN scoring_runs r ON r.photo_id = p.id"
                           " WHERE r.active GROUP BY p.path")
    assert len(rows) == 40 and all(n == 1 for _p, n in rows)
    assert db_rows(db_url, "SELECT count(*) FROM photos") == [(40,)]
    assert db_rows(db_url, "SELECT count(*) FROM crops WHERE active AND best") == [(40,)]


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A daemon or scan killed with SIGKILL cannot stop its pool: its idle workers must not live on."""
    import os
    import signal
    import time

    photos = library(tmp_path / "lib", 2)
    script = (
        "import multiprocessing.process as mp, sys, time\n"
        "from clipcrop_plugin.candidates import parse_aspect\n"
        "from clipcrop_plugin.scoring.registry import load_scorer\n"
        "from clipcrop_plugin.workers import WorkerPool\n"
        "pool = WorkerPool(load_scorer('heuristic'), 2, (parse_aspect('1:1'),))\n"
        f"paths = {[str(p) for p in photos]!r}\n"
        "pool.result(pool.submit(paths), paths)\n"
        "print(' '.join(str(p.pid) for p in mp.active_children()), flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    workers = [int(pid) for pid in proc.stdout.readline().split()]
    assert workers, "the pool started no worker"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # An exited child of an exited parent is reaped by init; a zombie counts as gone.
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().split(") ")[1][0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)]


def test_a_worker_caps_opencv_and_torch_pools_at_its_share_of_the_cores() -> None:
    # N workers whose libraries each start a pool of every core would oversubscribe the machine
    # N times over; a worker also never imports torch just to cap it (the heuristic path has none).
    pytest.importorskip("cv2")
    pytest.importorskip("torch")
    code = (
        "import sys, cv2\n"
        "from clipcrop_plugin.workers import _share_cores\n"
        "_share_cores(1)\n"
        "assert cv2.getNumThreads() == 1, cv2.getNumThreads()\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "_share_cores(1)\n"
        "assert torch.get_num_threads() == 1\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_a_worker_keeps_freed_memory_instead_of_faulting_it_in_again() -> None:
    # A worker frees and reallocates the same few-hundred-KB arrays for every photo, on several
    # threads; with glibc's default thresholds each round trip page-faults them in again (2-3 ms
    # of system time per photo). Counted here as minor page faults of the same allocation pattern.
    code = (
        "import resource, sys, threading\n"
        "import numpy as np\n"
        "from clipcrop_plugin.workers import _steady_heap\n"
        "if sys.argv[1] == 'steady' and not _steady_heap():\n"
        "    print('not glibc'); sys.exit(0)\n"
        "def work():\n"
        "    for i in range(300):\n"
        "        a = np.ones(40_000 + (i % 7) * 30_000)\n"
        "        b = np.ones(60_000)\n"
        "        del a, b\n"
        "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "t = threading.Thread(target=work); t.start(); t.join()\n"
        "work()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n"
    )

    def faults(mode: str) -> str:
        out = subprocess.run([sys.executable, "-c", code, mode], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    steady = faults("steady")
    if steady == "not glibc":
        pytest.skip("the allocator is not glibc's: _steady_heap leaves it alone")
    assert int(steady) < 0.6 * int(faults("default")), (steady, faults("default"))
