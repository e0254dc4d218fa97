"""Benchmark ``clipcrop scan --workers N`` against ``--workers 1`` (heuristic scorer), in one run.

    .venv/bin/python benchmarks/scan.py [--photos 600] [--workers 2] [--rounds 3] [--db URL]
    .venv/bin/python benchmarks/scan.py --scorer clipcropping --device cuda --weights CKPT  # a GPU box

With a GPU scorer the workers only decode and the parent's one scorer owns the GPU (the pool's
``decode`` mode); this needs real weights (the CLIP scorers refuse random ones), so it runs where
a user has them, not in CI.

Synthetic 1600x1200 JPEGs (noise plus a bright block) are written to a temp folder; each run
scores all of them into a fresh database (SQLite in the temp folder unless ``--db`` names a
PostgreSQL server, where a fresh database is created per run). Prints photos/s for each worker
count, the ratio, and the resident memory of each worker process and of the parent.

The machine may be shared: ``--workers 1`` and ``--workers N`` alternate for ``--rounds``
rounds, each round's ratio is of two runs seconds apart, and the load average is printed with
every run. Also printed: CPU seconds per photo (parent + workers, and each side), which load
barely moves; on an idle machine with C cores the ratio is at most ``C * cpu(1) / cpu(N)`` and falls short of
it only by process start-up.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

# clipcrop's modules are imported in main(), not here: a spawned worker process imports this
# script again (as ``__mp_main__``), and the daemon benchmark, the store and SQLAlchemy cost
# each worker ~0.5 s of CPU that a worker of the real CLI (a small entry-point script) never pays.


def fresh_db(base: str | None, tmp: Path, name: str) -> str:
    if not base:
        return f"sqlite:///{tmp / (name + '.sqlite3')}"
    from sqlalchemy import create_engine, text

    eng = create_engine(base, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process, and of its finished children (the worker processes)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime, b.ru_utime + b.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=600)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--size", default="1600x1200")
    ap.add_argument("--db", default=None, help="PostgreSQL server URL (default: SQLite files)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of --workers 1 and --workers N")
    ap.add_argument("--scorer", default="heuristic", help="scorer name (default: the weights-free heuristic)")
    ap.add_argument("--device", default="cpu", help="device of the scorer (cuda: workers decode, the parent scores)")
    ap.add_argument("--weights", default=None, help="checkpoint for a CLIP scorer")
    args = ap.parse_args()
    # The same synthetic photos as the daemon benchmark (run as a script, this folder is on sys.path).
    from daemon import jpeg

    from clipcrop_plugin.candidates import parse_aspect
    from clipcrop_plugin.scan import scan_folders
    from clipcrop_plugin.scoring.registry import load_scorer
    from clipcrop_plugin.store import Store

    w, h = (int(v) for v in args.size.split("x"))
    aspects = [parse_aspect(a) for a in ("1:1", "4:5", "16:9")]
    from clipcrop_plugin.errors import ClipcropError

    try:
        scorer = load_scorer(args.scorer, device=args.device, weights=args.weights)
    except ClipcropError as exc:
        print(f"scan.py: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="clipcrop-bench-scan-") as td:
        tmp = Path(td)
        photos = tmp / "photos"
        photos.mkdir()
        for i in range(args.photos):
            (photos / f"p{i:05d}.jpg").write_bytes(jpeg(i, (w, h)))
        print(f"{args.photos} photos {w}x{h}, {args.scorer} scorer on {args.device}, aspects 1:1 4:5 16:9, "
              f"{os.cpu_count()} CPUs, "
              f"db {'PostgreSQL' if args.db else 'SQLite'}")
        ratios: list[float] = []
        for rnd in range(args.rounds):
            rates = {}
            for n in sorted({1, args.workers}):
                url = fresh_db(args.db, tmp, f"bench_scan_{n}_{rnd}")
                load = os.getloadavg()[0]
                with Store.open(url) as store:
                    c0 = _cpu()
                    t0 = time.perf_counter()
                    report = scan_folders(store, [photos], scorer, aspects, workers=n, weights=args.weights)
                    dt = time.perf_counter() - t0
                    c1 = _cpu()  # the pool's processes are reaped when the scan ends
                cpu_parent, cpu_workers = c1[0] - c0[0], c1[1] - c0[1]
                cpu = cpu_parent + cpu_workers
                assert report.scored == args.photos, report.summary()
                rates[n] = args.photos / dt
                parent = psutil.Process().memory_info().rss / 2**20
                mem = ", ".join(f"{r / 2**20:.0f}" for r in report.worker_rss) or "-"
                print(f"round {rnd + 1} --workers {n}: {rates[n]:7.1f} photos/s ({dt:.1f} s, load {load:.2f}); "
                      f"CPU {cpu / args.photos * 1000:.1f} ms/photo (parent {cpu_parent / args.photos * 1000:.1f}, "
                      f"workers {cpu_workers / args.photos * 1000:.1f}); RSS per worker MiB: {mem}; parent {parent:.0f} MiB")
            if len(rates) > 1:
                ratios.append(rates[args.workers] / rates[1])
                print(f"round {rnd + 1} ratio --workers {args.workers} / --workers 1: {ratios[-1]:.2f}x")
        if ratios:
            print(f"ratio --workers {args.workers} / --workers 1: best {max(ratios):.2f}x, median "
                  f"{statistics.median(ratios):.2f}x over {len(ratios)} rounds (goal >= 1.6x on 2 cores); "
                  f"load now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
