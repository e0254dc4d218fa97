"""Photos and database checks of the daemon tests (in-process service and real processes)."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image

from support.db import db_rows as shared_db_rows


def jpeg_bytes(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    """A small, unique JPEG (noise plus a bright square, so the heuristic scorer has a subject)."""
    rng = np.random.default_rng(seed)
    w, h = size
    a = (rng.random((h, w, 3)) * 120).astype("uint8")
    x, y = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    a[y : y + h // 3, x : x + w // 3] = 250
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (96, 72)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(seed, size))
    return path


def db_rows(db: str | Path, sql: str, *args: object) -> list[tuple]:  # type: ignore[type-arg]
    """``?`` placeholders, as in sqlite3, on either backend (a Path is a SQLite file)."""
    db = f"sqlite:///{db}" if isinstance(db, Path) else db
    params = {f"a{i}": a for i, a in enumerate(args)}
    it = iter(params)
    return shared_db_rows(db, re.sub(r"\?", lambda _m: f":{next(it)}", sql), **params)


def runs_per_photo(db: str | Path) -> dict[str, int]:
    return dict(db_rows(db, "select p.path, count(r.id) from photos p join scoring_runs r on r.photo_id = p.id group by p.id"))


def wait_for(cond, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False
