"""Crop database benchmark: size on disk and speed at personal-library scale.

Builds a synthetic library (default 100,000 photos x 90 candidates, ten element scores each)
through the real ``Store`` API, then times the questions users ask. Candidates come from the
real candidate generator and are ranked/explained by the real ``build_suggestion``; only the
scores are random.

    .venv/bin/python benchmarks/db.py                 # 100,000 photos
    .venv/bin/python benchmarks/db.py --photos 5000   # quick run
    .venv/bin/python benchmarks/db.py --db postgresql+psycopg://postgres@127.0.0.1:5432/postgres  # PostgreSQL
    .venv/bin/python benchmarks/db.py --photos 20000 --explain     # and each query's plan
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipcrop_plugin.candidates import CandidateSet, generate_candidates, parse_aspect  # noqa: E402
from clipcrop_plugin.elements import ELEMENT_NAMES  # noqa: E402
from clipcrop_plugin.imaging import LoadedImage  # noqa: E402
from clipcrop_plugin.results import PhotoInfo, Suggestion  # noqa: E402
from clipcrop_plugin.scoring.base import ScoreResult  # noqa: E402
from clipcrop_plugin.store import QueryFilters, Store  # noqa: E402
from clipcrop_plugin.suggest import build_suggestion  # noqa: E402

SIZES = ((6000, 4000), (4000, 6000), (4032, 3024), (5472, 3648))
CAMERAS = (("Canon", "EOS R5"), ("Nikon", "Z 6"), ("Apple", "iPhone 13"), ("Fujifilm", "X-T4"))


class _Scorer:
    name = "clipcropping"
    weights_hash = "f" * 64
    device = "cuda"


def candidate_template(width: int, height: int, n: int) -> CandidateSet:
    """Exactly ``n`` candidates: GAIC grid anchors topped up with 1:1 crops, plus the full frame."""
    grid = generate_candidates(width, height, (), grid=True)
    extra = generate_candidates(width, height, (parse_aspect("1:1"),), grid=False)
    keep_grid = [i for i, g in enumerate(grid.groups) if g == "grid"][: n - 1]
    need = n - 1 - len(keep_grid)
    sq = [i for i, g in enumerate(extra.groups) if g == "1:1"][:need]
    boxes = np.concatenate([grid.boxes[keep_grid], extra.boxes[sq], [[0, 0, width, height]]])
    groups = ["grid"] * len(keep_grid) + ["1:1"] * len(sq) + ["full"]
    return CandidateSet(width, height, boxes.astype(np.int64), groups, len(groups) - 1)


POOL = 1500  # distinct random score sets; photo i reuses pool[i % POOL] (build_suggestion is slow)


def photo_path(i: int, start: datetime) -> str:
    taken = start + timedelta(minutes=37 * i)
    return f"/bench/{taken:%Y}/{taken:%m}/{taken:%d}/IMG_{i:06d}.jpg"


def make_pool(rng: np.random.Generator, templates: dict, start: datetime) -> list[Suggestion]:
    """Suggestions with random scores and elements, ranked and explained by build_suggestion."""
    pool = []
    for i in range(POOL):
        w, h = SIZES[i % len(SIZES)]
        cands = templates[(w, h)]
        info = PhotoInfo("", w, h, w, h, 1, False, "JPEG")
        n = len(cands)
        res = ScoreResult(rng.random(n, dtype=np.float32), rng.random((n, 10), dtype=np.float32))
        pool.append(build_suggestion(LoadedImage(_TINY, info), cands, res, _Scorer()))
    return pool


def synthetic(i: int, pool: list[Suggestion], start: datetime) -> Suggestion:
    """Photo ``i``: its own path, capture time and camera over a pooled set of scores."""
    base = pool[i % len(pool)]
    taken = start + timedelta(minutes=37 * i)
    make, model = CAMERAS[i % len(CAMERAS)]
    path = photo_path(i, start)
    info = replace(base.info, path=path, taken_at=taken, camera_make=make, camera_model=model)
    return replace(base, path=path, info=info)


_TINY = Image.new("RGB", (4, 3))


def median_ms(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def explain(store: Store, queries: list) -> None:  # type: ignore[type-arg]
    """Run each query once more, capturing its statements, and print their plans."""
    from sqlalchemy import event

    captured: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    postgres = store.dialect == "postgresql"
    for name, fn in queries:
        captured.clear()
        event.listen(store.engine, "before_cursor_execute", capture)
        try:
            fn()
        finally:
            event.remove(store.engine, "before_cursor_execute", capture)
        print(f"\n== {name}")
        with store.engine.connect() as conn:
            for statement, parameters in captured:
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
                rows = conn.exec_driver_sql(prefix + statement, parameters).all()  # type: ignore[arg-type]
                print("  " + statement.replace("\n", " ")[:160] + " ...")
                for row in rows:
                    print("    " + (row[0] if postgres else str(row[-1])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=100_000)
    ap.add_argument("--candidates", type=int, default=90)
    ap.add_argument("--batch", type=int, default=500, help="photos per record_suggestions transaction")
    ap.add_argument("--single", type=int, default=2000, help="photos written one record_suggestion call each")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--explain", action="store_true",
                    help="print the plan of every statement each query runs (EXPLAIN ANALYZE on PostgreSQL,"
                         " EXPLAIN QUERY PLAN on SQLite)")
    ap.add_argument("--db", default=None,
                    help="database file, or a PostgreSQL server URL (postgresql+psycopg://USER@HOST:PORT/DB: a"
                         " fresh database clipcrop_bench is created there and dropped after); default: a"
                         " temporary SQLite file, deleted after")
    args = ap.parse_args()

    tmp = None
    pg_admin = None
    if args.db is not None and args.db.startswith("postgresql"):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        pg_admin = create_engine(args.db, isolation_level="AUTOCOMMIT")
        with pg_admin.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS clipcrop_bench WITH (FORCE)")
            conn.exec_driver_sql("CREATE DATABASE clipcrop_bench")
        db = make_url(args.db).set(database="clipcrop_bench").render_as_string(hide_password=False)
    elif args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="clipcrop-bench-")
        db = Path(tmp.name) / "bench.sqlite3"
    else:
        db = Path(args.db)
        if db.exists():
            sys.exit(f"error: {db} exists; the benchmark only writes a new database")
    rng = np.random.default_rng(0)
    templates = {s: candidate_template(*s, args.candidates) for s in SIZES}
    start = datetime(2015, 1, 1)
    t = time.perf_counter()
    pool = make_pool(rng, templates, start)
    pool_s = time.perf_counter() - t
    store = Store.open(str(db))
    print(f"database: {db}  photos: {args.photos}  candidates/photo: {args.candidates}  "
          f"cpu cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}", flush=True)

    gen_s = ins_single_s = ins_batch_s = 0.0
    single = min(args.single, args.photos)
    for i in range(single):
        t = time.perf_counter()
        s = synthetic(i, pool, start)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        store.record_suggestion(s, f"{i:064x}")
        ins_single_s += time.perf_counter() - t
    i = single
    last_report = time.perf_counter()
    while i < args.photos:
        n = min(args.batch, args.photos - i)
        t = time.perf_counter()
        batch = [(synthetic(j, pool, start), f"{j:064x}", None, None) for j in range(i, i + n)]
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        store.record_suggestions(batch)
        ins_batch_s += time.perf_counter() - t
        i += n
        if time.perf_counter() - last_report > 15:
            print(f"  {i}/{args.photos} written", flush=True)
            last_report = time.perf_counter()

    tables = {}
    if pg_admin is not None:
        # VACUUM ANALYZE (outside a transaction): planner statistics, as autovacuum would gather.
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
            for name, nbytes in conn.exec_driver_sql(
                    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON"
                    " n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC"):
                tables[name] = nbytes
    else:
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.exec_driver_sql("ANALYZE")
        size = db.stat().st_size
        try:
            with store.engine.connect() as conn:
                for name, nbytes in conn.exec_driver_sql("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"):
                    tables[name] = nbytes
        except Exception:  # noqa: BLE001 - dbstat is optional in SQLite builds
            pass

    paths = [photo_path(k, start) for k in random.Random(1).sample(range(args.photos), min(args.repeats, args.photos))]
    folders = sorted({str(Path(p).parent.parent) for p in paths})
    it = iter(range(10**9))

    def pick(seq):  # type: ignore[no-untyped-def]
        return seq[next(it) % len(seq)]

    queries = [
        ("best crop of one photo (best_crop)", lambda: store.best_crop(pick(paths))),
        ("one photo, all candidates (photo_detail)", lambda: store.photo_detail(pick(paths))),
        ("50 largest improvements", lambda: store.query(sort="improvement", limit=50)),
        ("50 whose best crop enhances an element",
         lambda: store.query(QueryFilters(enhances=pick(ELEMENT_NAMES)), limit=50)),
        ("50 best 1:1 crops", lambda: store.query(QueryFilters(aspect="1:1"), limit=50)),
        ("path prefix (a month folder), 50 by path",
         lambda: store.query(QueryFilters(folder=pick(folders)), sort="path", limit=50)),
        ("path prefix (a month folder), 50 by improvement", lambda: store.query(QueryFilters(folder=pick(folders)), limit=50)),
        ("count photos under a year folder", lambda: store.count(QueryFilters(folder=str(Path(pick(folders)).parent)))),
    ]
    results = [(name, median_ms(fn, args.repeats)) for name, fn in queries]
    if args.explain:
        explain(store, queries)
    store.close()

    n_cand = args.photos * args.candidates
    batched = args.photos - single
    print()
    print(f"{'measure':<52} {'value':>14}")
    print("-" * 67)
    print(f"{'database size on disk':<52} {size / 2**20:>11.1f} MiB")
    print(f"{'bytes per candidate (whole file / candidates)':<52} {size / n_cand:>14.1f}")
    print(f"{'bytes per photo':<52} {size / args.photos:>14.0f}")
    for name, nbytes in list(tables.items())[:8]:
        print(f"{'  ' + name:<52} {nbytes / 2**20:>11.1f} MiB")
    print(f"{'insert, record_suggestion (1 txn/photo)':<52} {single / ins_single_s:>9.0f} ph/s")
    if batched:
        print(f"{'insert, record_suggestions (' + str(args.batch) + ' photos/txn)':<52} {batched / ins_batch_s:>9.0f} ph/s")
    label = f"(synthetic data, not counted: pool {pool_s:.0f} s, then)"
    print(f"{label:<52} {args.photos / gen_s:>9.0f} ph/s")
    for name, ms in results:
        print(f"{name + ' (median ms)':<52} {ms:>14.2f}")
    if tmp is not None:
        tmp.cleanup()
    if pg_admin is not None:
        with pg_admin.connect() as conn:
            conn.exec_driver_sql("DROP DATABASE IF EXISTS clipcrop_bench WITH (FORCE)")


if __name__ == "__main__":
    main()
