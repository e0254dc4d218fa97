"""The bulk write path (store/bulk.py) on both backends: what it stores, RAW + JPEG pairing
over many batches, and two processes recording the same photos at once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from support.db import db_rows
from support.store import synthetic_suggestion

from clipcrop_plugin.candidates import parse_aspect
from clipcrop_plugin.results import Subject
from clipcrop_plugin.store import Store

ROOT = Path(__file__).resolve().parents[2]

# Every stored column but the clock's (created_at / updated_at differ between two recordings).
TABLE_COLUMNS = {
    "photos": "path, folder, content_hash, width, height, stored_width, stored_height, orientation, format,"
              " taken_at, camera_make, camera_model, status, error, offline, mtime, size, pair_id, pair_role",
    "scoring_runs": "photo_id, content_hash, scorer, weights_hash, device, active, width, height, n_candidates,"
                    " aspects, full_score, best_score, best_improvement, candidates, elements, subjects",
    "crops": "run_id, photo_id, active, best, aspect, rank, x1, y1, x2, y2, score, improvement, elements,"
             " enhances, reduces",
    "explanations": "crop_id, position, element, change",
}


def _batch(n: int, seed: int = 0, folder: str = "/lib") -> list:  # type: ignore[type-arg]
    """``n`` photos with every optional field set: capture time (microseconds), camera, mtime,
    size, subjects, a 1:1 set beside the grid; every 7th photo failed."""

    rng = np.random.default_rng(seed)
    items = []
    start = datetime(2021, 5, 1, 12, 0, 0, 123456)
    for i in range(n):
        path = f"{folder}/IMG_{i:04d}.jpg"
        s = synthetic_suggestion(path, rng, aspects=(parse_aspect("1:1"),), taken_at=start + timedelta(seconds=i),
                                 camera=("Canon", "EOS R5"))
        s = s.replace(subjects=[Subject("face", (10 + i, 20, 400, 500), 0.9)])
        if i % 7 == 6:
            s = s.replace(ok=False, error="decode failed: truncated", crops=[])
        items.append((s, f"{i:064x}", 1_700_000_000.25 + i, 4_000_000 + i))
    return items


def _table(url: str, name: str) -> list[tuple]:  # type: ignore[type-arg]
    rows = db_rows(url, f"SELECT {TABLE_COLUMNS[name]} FROM {name} ORDER BY 1, 2")
    return [tuple(_plain(v) for v in row) for row in rows]


def _plain(value: object) -> object:
    """A raw driver value in one form for both backends: psycopg gives bytea as memoryview and
    timestamps as datetime, sqlite3 bytes and SQLAlchemy's ISO text (booleans: bool vs 0/1 compare equal)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    return value


def test_postgresql_copy_stores_what_sqlite_stores(tmp_path: Path, pg_url: str) -> None:
    """The same batches into both backends: every column of every table is equal (ids included,
    as both assign them from 1), so COPY stores exactly the values an INSERT would."""
    sqlite_url = f"sqlite:///{tmp_path / 'lib.sqlite3'}"
    items = _batch(40)
    for url in (sqlite_url, pg_url):
        with Store.open(url) as store:
            ids = store.record_suggestions(items[:25])
            ids += store.record_suggestions(items[25:])
            assert sorted(ids) == list(range(1, 41))
            # A re-score of some photos supersedes their runs (the update path, not COPY only).
            store.record_suggestions(items[:5])
    for name in TABLE_COLUMNS:
        assert _table(sqlite_url, name) == _table(pg_url, name), name
    assert len(_table(pg_url, "explanations")) > 0


def test_raw_and_jpeg_pair_in_one_batch_and_across_many(db_url: str) -> None:
    """Pairing runs once per batch; with more than five batches PostgreSQL would switch a
    prepared pairing query to a generic plan, which must find the same rows."""
    rng = np.random.default_rng(3)
    with Store.open(db_url) as store:
        # One batch holding both files of shot 0; then shot k's JPEG and RAW in separate batches.
        store.record_suggestions([(synthetic_suggestion(p, rng), p, None, None)
                                  for p in ("/shoot/IMG_0000.CR2", "/shoot/IMG_0000.JPG")])
        for k in range(1, 9):
            for path in (f"/shoot/IMG_{k:04d}.jpg", f"/shoot/IMG_{k:04d}.dng"):
                store.record_suggestions([(synthetic_suggestion(path, rng), path, None, None)])
        store.record_suggestions([(synthetic_suggestion("/shoot/IMG_0099.jpg", rng), "lone", None, None)])
    rows = {path: (pair, role) for path, pair, role in db_rows(
        db_url, "SELECT p.path, q.path, p.pair_role FROM photos p LEFT JOIN photos q ON q.id = p.pair_id")}
    assert rows["/shoot/IMG_0000.CR2"] == ("/shoot/IMG_0000.JPG", "raw")
    assert rows["/shoot/IMG_0000.JPG"] == ("/shoot/IMG_0000.CR2", "companion")
    for k in range(1, 9):
        raw, jpg = f"/shoot/IMG_{k:04d}.dng", f"/shoot/IMG_{k:04d}.jpg"
        assert rows[raw] == (jpg, "raw") and rows[jpg] == (raw, "companion")
    assert rows["/shoot/IMG_0099.jpg"] == (None, None)


_WRITER = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from support.store import synthetic_suggestion
from clipcrop_plugin.store import Store

order = range(300) if sys.argv[1] == "up" else range(299, -1, -1)
rng = np.random.default_rng(int(sys.argv[1] == "up"))
paths = [f"/lib/{{i // 50:02d}}/IMG_{{i:04d}}.jpg" for i in order]
with Store.open({url!r}) as store:
    for start in range(0, 300, 25):
        store.record_suggestions([(synthetic_suggestion(p, rng), "hash-" + p, None, None)
                                  for p in paths[start:start + 25]])
"""


def test_two_processes_recording_the_same_photos_lose_and_double_nothing(db_url: str) -> None:
    """Two writers record the same 300 photos in opposite orders, 25 per transaction: every
    photo ends with one row and one run (the later re-score replaced the earlier), and every
    crop and explanation belongs to a live run."""
    Store.open(db_url).close()  # the schema once, as the first scan of a library creates it
    script = _WRITER.format(tests=str(ROOT / "tests"), url=db_url)
    procs = [subprocess.Popen([sys.executable, "-c", script, way], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for way in ("up", "down")]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert db_rows(db_url, "SELECT count(*), count(DISTINCT path) FROM photos") == [(300, 300)]
    runs = db_rows(db_url, "SELECT p.path, count(r.id), sum(CASE WHEN r.active THEN 1 ELSE 0 END) FROM photos p"
                           " JOIN scoring_runs r ON r.photo_id = p.id GROUP BY p.path")
    assert len(runs) == 300 and all(n == 1 and active == 1 for _path, n, active in runs)
    assert db_rows(db_url, "SELECT count(*) FROM crops WHERE active AND best") == [(300,)]
    assert db_rows(db_url, "SELECT count(*) FROM crops c LEFT JOIN scoring_runs r ON r.id = c.run_id"
                           " WHERE r.id IS NULL") == [(0,)]
    assert db_rows(db_url, "SELECT count(*) FROM explanations e LEFT JOIN crops c ON c.id = e.crop_id"
                           " WHERE c.id IS NULL") == [(0,)]
    # Every photo's best crop is listed once by a query.
    with Store.open(db_url) as store:
        listed = store.query(limit=None)
    assert len(listed) == 300 and len({s.path for s in listed}) == 300
