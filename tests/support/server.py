"""A small real library and a live server, for the server tests and the others that serve a
library (the ``sample`` and ``shared_sample`` fixtures in ``tests/conftest.py`` build on these)."""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clipcrop_plugin.api import Library
from clipcrop_plugin.config import Settings
from clipcrop_plugin.hooks import make_plugin_manager
from support.db import db_rows

BASE = "http://127.0.0.1:8765"
SAFE = {"X-Clipcrop": "1"}


def make_photo(path: Path, seed: int, size: tuple[int, int] = (640, 427), orientation: int | None = None) -> Path:
    """A synthetic photo with a clear subject off-centre, sky and ground, so crops differ."""
    rng = np.random.default_rng(seed)
    w, h = size
    sky = np.linspace(0, 1, h)[:, None, None] * np.array([40, 60, 30]) + np.array([120, 160, 210])
    arr = np.broadcast_to(sky, (h, w, 3)).copy()
    arr[int(h * 0.7):] = [70 + seed * 7 % 60, 110, 60]
    arr += rng.normal(0, 6, arr.shape)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    cx, cy, r = int(w * (0.25 + 0.1 * (seed % 5))), int(h * 0.45), int(min(w, h) * 0.16)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(230, 70 + 30 * (seed % 4), 40))
    d.rectangle((int(w * 0.8), int(h * 0.3), int(w * 0.86), int(h * 0.7)), fill=(40, 40, 40))
    im = im.filter(ImageFilter.GaussianBlur(0.6))
    kwargs = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=88, **kwargs)
    return path


@dataclass
class SampleLibrary:
    """A scored library on disk: its folder, database file and open :class:`Library`."""

    folder: Path
    db_path: Path
    library: Library
    photos: list[Path]
    url: str = ""

    def sql(self, query: str, *args: object) -> list[tuple]:
        """Read the database directly (what a label or score really left behind); ``?``
        placeholders, on SQLite and PostgreSQL alike."""
        params = {f"a{i}": a for i, a in enumerate(args)}
        names = iter(params)
        return db_rows(self.url or f"sqlite:///{self.db_path}", re.sub(r"\?", lambda _m: f":{next(names)}", query),
                       **params)


def build_library(root: Path, n: int = 6, aspects: tuple[str, ...] = ("1:1",), url: str | None = None) -> SampleLibrary:
    """Generate ``n`` photos (one portrait with EXIF orientation 6) and score them with the heuristic
    scorer, into ``url`` (default: a SQLite file under ``root``)."""
    folder = root / "photos"
    photos = []
    for i in range(n):
        size = (427, 640) if i == 1 else (640, 427)
        photos.append(make_photo(folder / f"IMG_{i:04d}.jpg", i, size, orientation=6 if i == 2 else None))
    db_path = root / "library.sqlite3"
    # Explicit settings: a module-scoped library must not read the real user's config file.
    url = url or f"sqlite:///{db_path}"
    if url.startswith("sqlite:///"):
        db_path = Path(url[len("sqlite:///"):])
    lib = Library.open(url, settings=Settings(), scorer="heuristic",
                       plugins=make_plugin_manager(False))
    for p in photos:
        s = lib.suggest(p, aspects=list(aspects))
        assert s.ok, s.error
    return SampleLibrary(folder, db_path, lib, photos, url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving an app on a free loopback port, in a daemon thread."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
