"""Benchmark ``clipcrop watch``: latency, backlog throughput against ``clipcrop scan``, memory.

    .venv/bin/python benchmarks/daemon.py [--backlog 300] [--memory 1000] [--latency 20]

1. Latency: photos are written one at a time into a watched folder; for each, the time from
   its last write to (its scoring-run row in the database AND its sidecar on disk), minus the
   stability window (``stable_seconds``, default 1.0 s). Median and max are printed.
2. Backlog throughput: the same N photos scored by ``scan_folders`` (what ``clipcrop scan``
   runs; once without and once with sidecars) and by the daemon's ``run_once`` (with sidecars),
   each into a fresh database. Photos per second.
3. Memory: resident set size of a running daemon after 100 and after 1,000 photos.

Synthetic photos (640x480 JPEGs, noise plus a bright block) are generated in a temp folder.
All runs use the heuristic scorer. Thread counts are left at their defaults (torch is not used).
"""

from __future__ import annotations

import argparse
import gc
import io
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from clipcrop_plugin.config import Settings
from clipcrop_plugin.daemon.service import WatchService


def jpeg(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    a = (rng.random((h, w, 3)) * 110).astype("uint8")
    x, y = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    a[y : y + h // 3, x : x + w // 3] = (240, 200, 90)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=88)
    return buf.getvalue()


def settings(db: Path, **kw: object) -> Settings:
    values: dict[str, object] = dict(db_url=f"sqlite:///{db}", scorer="heuristic")
    values.update(kw)
    return Settings(**values)  # type: ignore[arg-type]


def run_count(db: Path, path: str) -> int:
    con = sqlite3.connect(db, timeout=30)
    try:
        return int(con.execute(
            "select count(*) from scoring_runs r join photos p on p.id = r.photo_id where p.path = ?", (path,)
        ).fetchone()[0])
    finally:
        con.close()


def bench_latency(root: Path, n: int, window: float) -> list[float]:
    lib = root / "latency"
    lib.mkdir()
    db = root / "latency.sqlite3"
    svc = WatchService([lib], settings(db, stable_seconds=window), status_file=root / "lat-status.json")
    svc.start()
    out: list[float] = []
    try:
        for i in range(n):
            data = jpeg(10_000 + i)
            path = lib / f"l{i:03d}.jpg"
            with open(path, "wb") as fh:
                fh.write(data)
            last_write = time.monotonic()
            sidecar = lib / f"l{i:03d}.xmp"
            while not (sidecar.exists() and run_count(db, str(path)) == 1):
                if time.monotonic() - last_write > 30:
                    raise RuntimeError(f"{path} not scored within 30 s")
                time.sleep(0.005)
            out.append(time.monotonic() - last_write - window)
            time.sleep(0.2)
    finally:
        svc.stop()
    return out


def make_backlog(folder: Path, n: int, seed0: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"b{i:04d}.jpg").write_bytes(jpeg(seed0 + i))


def clear_sidecars(folder: Path) -> None:
    for p in folder.glob("*.xmp"):
        p.unlink()


def bench_scan(folder: Path, db: Path, with_metadata: bool) -> float:
    from clipcrop_plugin.jobs import MetadataPolicy
    from clipcrop_plugin.scan import scan_folders
    from clipcrop_plugin.scoring.registry import load_scorer
    from clipcrop_plugin.store import Store

    st = settings(db)
    t0 = time.perf_counter()
    store = Store.open(st.db_url, settings=st)
    scorer = load_scorer("heuristic", settings=st)
    policy = MetadataPolicy("sidecar" if with_metadata else "none")
    report = scan_folders(store, [folder], scorer, policy=policy, batch_size=st.batch_size)
    store.close()
    dt = time.perf_counter() - t0
    assert report.scored == report.total, report.summary()
    return report.total / dt


def bench_daemon_backlog(folder: Path, db: Path, status: Path) -> float:
    t0 = time.perf_counter()
    snap = WatchService([folder], settings(db), status_file=status).run_once()
    dt = time.perf_counter() - t0
    assert snap["failed"] == 0 and snap["done"] > 0, snap
    return snap["done"] / dt


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def bench_memory(root: Path, total: int) -> tuple[float, float]:
    lib = root / "memory"
    lib.mkdir()
    db = root / "memory.sqlite3"
    svc = WatchService([lib], settings(db, stable_seconds=0.3), status_file=root / "mem-status.json")
    svc.start()
    marks: dict[int, float] = {}
    try:
        written = 0
        for target in (100, total):
            while written < target:
                (lib / f"m{written:05d}.jpg").write_bytes(jpeg(50_000 + written, (320, 240)))
                written += 1
                if written % 50 == 0:
                    time.sleep(0.05)  # arrive in bursts, as a copy from a card does
            if not svc.wait_idle(timeout=600, settle=0.5):
                raise RuntimeError("daemon did not catch up")
            assert svc.pipeline is not None and svc.pipeline.counters.done == target
            marks[target] = rss_mb()
    finally:
        svc.stop()
    return marks[100], marks[total]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency", type=int, default=20, help="photos for the latency test")
    ap.add_argument("--window", type=float, default=1.0, help="stable_seconds for the latency test")
    ap.add_argument("--backlog", type=int, default=300, help="photos for the throughput test")
    ap.add_argument("--memory", type=int, default=1000, help="photos for the memory test")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="clipcrop-bench-daemon-"))
    os.environ.setdefault("CLIPCROP_DATA_DIR", str(root / "data"))
    print(f"cpus={os.cpu_count()} python={sys.version.split()[0]} folder={root}")
    try:
        lat = bench_latency(root, args.latency, args.window)
        print(f"latency beyond the {args.window:.1f} s window (last write -> DB row + sidecar), n={len(lat)}: "
              f"median {statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms  (goal < 1000 ms)")

        backlog = root / "backlog"
        make_backlog(backlog, args.backlog, 20_000)
        scan_plain = bench_scan(backlog, root / "scan1.sqlite3", with_metadata=False)
        scan_meta = bench_scan(backlog, root / "scan2.sqlite3", with_metadata=True)
        clear_sidecars(backlog)
        daemon = bench_daemon_backlog(backlog, root / "daemon.sqlite3", root / "bl-status.json")
        print(f"backlog of {args.backlog} 640x480 JPEGs: clipcrop scan {scan_plain:.1f} photos/s (no sidecars), "
              f"{scan_meta:.1f} photos/s (with sidecars); daemon --once {daemon:.1f} photos/s (with sidecars) "
              f"= {100 * daemon / scan_meta:.0f}% of scan with sidecars, {100 * daemon / scan_plain:.0f}% of plain scan  (goal >= 90%)")

        m100, mn = bench_memory(root, args.memory)
        print(f"RSS after 100 photos {m100:.1f} MB, after {args.memory}: {mn:.1f} MB, growth {mn - m100:+.1f} MB  (goal < 50 MB)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
