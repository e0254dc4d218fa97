"""`watch --workers N` and a newly activated model version, with the real daemon: the real watchdog
observer, real worker processes, real files and databases."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from support import ROOT
from support.daemon import db_rows, runs_per_photo, wait_for
from support.db import db_rows as raw_rows
from support.store import make_photo

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.config import Settings
from clipcrop_plugin.daemon.service import WatchService
from clipcrop_plugin.scoring import learned
from clipcrop_plugin.store import QueryFilters, Store

CLI = [sys.executable, "-c", "from clipcrop_plugin.cli.main import cli; cli()"]
WINDOW = 0.25
_DB: dict[Path, str] = {}


@pytest.fixture
def backend(db_url: str, tmp_path: Path) -> Iterator[None]:
    """Tests that take it run on SQLite and (given a server) PostgreSQL: ``db_of(tmp_path)``."""
    _DB[tmp_path] = db_url
    yield
    _DB.pop(tmp_path, None)


def db_of(tmp_path: Path) -> str:
    return _DB[tmp_path]


def write_jpeg(path: Path, seed: int, size: tuple[int, int]) -> Path:
    """A new photo, written whole (to a temp name, then renamed) so the window is all it waits for."""
    tmp = path.with_name(f".tmp-{path.name}")  # hidden: the daemon ignores it
    make_photo(tmp, seed=seed, size=size)
    os.replace(tmp, path)
    return path


def settings_for(tmp_path: Path, **kw: object) -> Settings:
    values: dict[str, object] = dict(db_url=kw.pop("db_url", None) or db_of(tmp_path), scorer="heuristic", stable_seconds=WINDOW,
                                     rescan_seconds=600.0, batch_size=4, keep_margin=float("-inf"))
    values.update(kw)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def pooled(tmp_path: Path, lib: Path, backend: None) -> Iterator[WatchService]:
    svc = WatchService([lib], settings_for(tmp_path), workers=2, status_file=tmp_path / "state" / "daemon-status.json")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def test_photos_dropped_while_it_runs_are_each_scored_once_by_the_worker_processes(
        pooled: WatchService, lib: Path, tmp_path: Path) -> None:
    assert pooled.pipeline is not None and pooled.pipeline.pooled is not None
    n = 60
    for i in range(n):
        write_jpeg(lib / f"d{i % 3}" / f"{i:03d}.jpg", 3000 + i, (160, 120))
    shutil.copy(lib / "d0" / "000.jpg", lib / "copy.jpg")  # same content, likely in flight together
    (lib / "broken.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")
    os.utime(lib / "broken.jpg", (time.time() - 60, time.time() - 60))  # old: a failure, not a copy in progress
    db = db_of(tmp_path)
    assert wait_for(lambda: len(runs_per_photo(db)) == n + 1, timeout=90)
    assert pooled.wait_idle(30, settle=0.5)
    counts = runs_per_photo(db)
    assert len(counts) == n + 1 and set(counts.values()) == {1}
    # The copy got a copy of the scores: n contents scored, each once.
    assert pooled.pipeline.counters.done == n and pooled.pipeline.counters.failed == 1
    assert db_rows(db, "select status from photos where path = ?", str(lib / "broken.jpg")) == [("failed",)]
    assert len(list(lib.rglob("*.xmp"))) == n + 1
    rss = pooled.pipeline.pooled.memory()
    assert len(rss) == 2 and all(m > 10 * 2**20 for m in rss)
    snap = pooled.snapshot()
    assert snap["workers"] == 2 and snap["done"] == n
    # A photo rewritten after it was scored is scored again, once.
    write_jpeg(lib / "d1" / "001.jpg", 99_999, (160, 120))
    assert wait_for(lambda: db_rows(db, "select count(*) from scoring_runs r join photos p on p.id = r.photo_id "
                                        "where p.path = ? and r.active = ?", str(lib / "d1" / "001.jpg"), True)
                    == [(1,)] and pooled.pipeline.counters.done == n + 1, timeout=30)


def test_idle_worker_processes_are_stopped_and_start_again(pooled: WatchService, lib: Path, tmp_path: Path) -> None:
    write_jpeg(lib / "a.jpg", 1, (160, 120))
    db = db_of(tmp_path)
    assert wait_for(lambda: len(runs_per_photo(db)) == 1, timeout=60)
    assert pooled.wait_idle(10, settle=0.3)
    p = pooled.pipeline
    assert p is not None and p.pooled is not None and len(p.pooled.memory()) >= 1
    assert p.release_idle_workers(0.0) and p.pooled.memory() == []
    write_jpeg(lib / "b.jpg", 2, (160, 120))
    assert wait_for(lambda: len(runs_per_photo(db)) == 2, timeout=60)


def _config(db: Path) -> None:
    Path(os.environ["CLIPCROP_CONFIG"]).write_text(
        f'db_url = "sqlite:///{db}"\nscorer = "heuristic"\nstable_seconds = 0.2\nbatch_size = 4\n'
        "keep_margin = -inf\n", encoding="utf-8")


@pytest.mark.slow
def test_sigterm_drains_the_worker_batches_and_a_restart_scores_the_rest_once(tmp_path: Path) -> None:
    lib = tmp_path / "photos"
    n = 60
    for i in range(n):
        write_jpeg(lib / f"{i:03d}.jpg", 700 + i, (480, 360))
    db = tmp_path / "db.sqlite3"
    _config(db)

    def scored() -> int:
        try:
            return int(db_rows(db, "select count(*) from scoring_runs")[0][0])
        except Exception:  # noqa: BLE001 - created by the daemon
            return 0

    proc = subprocess.Popen([*CLI, "watch", str(lib), "--workers", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: scored() >= 8, timeout=90), proc.stderr.read() if proc.poll() is not None else ""
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert time.monotonic() - t0 < 10, err
    finally:
        if proc.poll() is None:
            proc.kill()
    # Drained: every photo recorded before the exit has its sidecar (no batch was left half done).
    recorded = [Path(p) for (p,) in db_rows(db, "select path from photos where status = 'scored'")]
    assert recorded and all(p.with_suffix(".xmp").is_file() for p in recorded)
    assert "worker" not in err.lower() or "Traceback" not in err
    out = subprocess.run([*CLI, "watch", str(lib), "--once", "--workers", "2"], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    counts = runs_per_photo(db)
    assert len(counts) == n and set(counts.values()) == {1}
    assert len(list(lib.glob("*.xmp"))) == n


def _personal_version(name: str) -> learned.PersonalWeights:
    """A heuristic personalization that prefers small crops on the left (so crops move)."""
    from clipcrop_plugin.config import load_settings

    names = learned.heuristic_input_names()
    w = np.zeros(len(names))
    for i, nm in enumerate(names):
        if nm == "area":
            w[i] = -2.0
        elif nm == "box_x":
            w[i] = -2.0
    pw = learned.PersonalWeights("heuristic", names, np.zeros(len(names)), np.ones(len(names)), w,
                                 provenance={"test": "daemon switch"})
    folder = learned.personal_dir(load_settings().resolved_model_dir())
    return learned.save_version(pw, folder / f"{name}.safetensors")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_newly_activated_version_is_applied_without_a_restart(tmp_path: Path, lib: Path, workers: int,
                                                                 backend: None) -> None:
    for i in range(8):
        write_jpeg(lib / f"{i}.jpg", 4000 + i, (240, 180))
    db = db_of(tmp_path)
    svc = WatchService([lib], settings_for(tmp_path), workers=workers,
                       status_file=tmp_path / "state" / "daemon-status.json")
    svc.model_check_seconds = 0.2
    svc.start()
    try:
        assert wait_for(lambda: len(runs_per_photo(db)) == 8, timeout=60)
        assert svc.wait_idle(20, settle=0.3)
        pw = _personal_version("heuristic-taste-1")
        runner = CliRunner()
        out = runner.invoke(cli, ["models", "use", pw.name])
        assert out.exit_code == 0, out.output

        def active_hashes() -> set[str]:  # the built-in version is stored as ""
            return {wh for (wh,) in db_rows(db, "select r.weights_hash from scoring_runs r where r.active = ?", True)}

        # Every photo re-scored with the new version (like `scan --rescore`), without a restart.
        assert wait_for(lambda: active_hashes() == {pw.weights_hash}, timeout=60), active_hashes()
        assert svc.wait_idle(20, settle=0.5)
        assert set(runs_per_photo(db).values()) == {2}
        assert svc.snapshot()["weights_hash"] == pw.weights_hash
        with Store.open(db) as store:
            new = store.query(QueryFilters(scorer="heuristic", weights_hash=pw.weights_hash), limit=None)
            old = store.query(QueryFilters(scorer="heuristic", weights_hash=""), limit=None)
            assert len(new) == len(old) == 8  # the previous suggestions stay queryable by version
            assert any(a.crop.box != b.crop.box for a, b in zip(sorted(new, key=lambda p: p.id),
                                                                 sorted(old, key=lambda p: p.id)))
        # A photo arriving now is scored once, with the new version only.
        write_jpeg(lib / "late.jpg", 4100, (240, 180))
        assert wait_for(lambda: runs_per_photo(db).get(str(lib / "late.jpg")) == 1, timeout=30)
        # Switching back re-activates the earlier runs: nothing is scored again.
        assert svc.wait_idle(20, settle=0.3)  # the counter moves just after the commit
        done = svc.pipeline.counters.done if svc.pipeline else 0
        assert runner.invoke(cli, ["models", "use", "heuristic"]).exit_code == 0
        assert wait_for(lambda: active_hashes() == {""}, timeout=60), active_hashes()
        assert svc.wait_idle(20, settle=0.5)
        assert svc.pipeline is not None and svc.pipeline.counters.done == done + 1  # only late.jpg, built-in
        assert set(runs_per_photo(db).values()) == {2}
    finally:
        svc.stop()


def test_enqueue_puts_dropped_photos_on_the_queue_and_a_worker_scores_them(pg_url: str, tmp_path: Path) -> None:
    lib = tmp_path / "nas"
    lib.mkdir()
    for i in range(3):
        write_jpeg(lib / f"old{i}.jpg", 5000 + i, (160, 120))  # there before the daemon starts
    status = tmp_path / "state" / "daemon-status.json"
    svc = WatchService([lib], settings_for(tmp_path, db_url=pg_url), enqueue=True, status_file=status,
                       aspects=["1:1"])
    svc.start()
    try:
        for i in range(5):
            write_jpeg(lib / "2024" / f"new{i}.jpg", 5100 + i, (160, 120))  # dropped while it runs
        assert wait_for(lambda: (svc.pipeline.counters.done if svc.pipeline else 0) == 8, timeout=30)
        assert svc.wait_idle(10, settle=0.5)
        snap = svc.snapshot()
        assert snap["mode"] == "enqueue" and snap["done"] == 8
        assert raw_rows(pg_url, "SELECT count(*) FROM photos") == [(0,)]  # nothing scored by the daemon
        assert raw_rows(pg_url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'") == [(8,)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        out = subprocess.run([*CLI, "worker", "--once", "--scorer", "heuristic", "--db", pg_url], env=env,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        assert "8 scored" in out.stdout
        assert runs_per_photo(pg_url) == {str(p): 1 for p in lib.rglob("*.jpg")}
        # The daemon's --aspect travelled with the jobs.
        assert {a for (a,) in raw_rows(pg_url, "SELECT DISTINCT aspect FROM crops")} >= {"1:1", "grid"}
        # A photo the worker has scored is not queued again by the next reconcile; a changed one is.
        write_jpeg(lib / "2024" / "new0.jpg", 9999, (160, 120))
        assert wait_for(lambda: (svc.pipeline.counters.done if svc.pipeline else 0) == 9, timeout=30)
        svc._scan([str(lib)])
        with svc._known_lock:
            svc.known.clear()  # as after a restart: only the library's own record decides
        svc._scan([str(lib)])
        assert svc.wait_idle(10, settle=0.5)
        assert svc.pipeline is not None and svc.pipeline.counters.done == 9
    finally:
        svc.stop()
    # The changed photo was queued (once) for the worker.
    assert raw_rows(pg_url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'") == [(1,)]


def test_enqueue_needs_the_library_in_postgresql(tmp_path: Path, lib: Path) -> None:
    from clipcrop_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="PostgreSQL"):
        WatchService([lib], settings_for(tmp_path, db_url=f"sqlite:///{tmp_path / 'x.sqlite3'}"), enqueue=True)
    res = CliRunner().invoke(cli, ["watch", str(lib), "--enqueue", "--db", str(tmp_path / "x.sqlite3")])
    assert res.exit_code != 0 and res.stderr.count("\n") == 1 and "PostgreSQL" in res.stderr
