"""Helpers for the store tests: synthetic suggestions through the real pipeline code, photo files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from clipcrop_plugin.candidates import AspectRatio, generate_candidates
from clipcrop_plugin.imaging import LoadedImage
from clipcrop_plugin.results import PhotoInfo, Suggestion
from clipcrop_plugin.scoring.base import ScoreResult
from clipcrop_plugin.suggest import build_suggestion


@dataclass
class FakeScorer:
    """Only the identity a Suggestion records; scores come from the test's random generator."""

    name: str = "heuristic"
    weights_hash: str | None = None
    device: str = "cpu"


def synthetic_suggestion(path: str, rng: np.random.Generator, *, width: int = 4000, height: int = 3000,
                         aspects: tuple[AspectRatio, ...] = (), scorer: FakeScorer | None = None,
                         taken_at=None, camera: tuple[str, str] | None = None) -> Suggestion:
    """A Suggestion for ``path`` with random scores/elements, ranked and explained by the real
    :func:`build_suggestion` over the real candidate generator (90 grid anchors + aspects + full)."""
    info = PhotoInfo(path, width, height, width, height, 1, False, "JPEG", taken_at,
                     camera[0] if camera else None, camera[1] if camera else None)
    loaded = LoadedImage(Image.new("RGB", (8, 6)), info)
    cands = generate_candidates(width, height, aspects, grid=True)
    n = len(cands)
    result = ScoreResult(scores=rng.random(n).astype(np.float32), elements=rng.random((n, 10)).astype(np.float32))
    return build_suggestion(loaded, cands, result, scorer or FakeScorer())


def make_photo(path: Path, seed: int, size: tuple[int, int] = (192, 128)) -> Path:
    """A small JPEG with smooth structure (a bright blob on a gradient) so scorers have content."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.12 * w) ** 2))
    base = np.stack([xx / w, yy / h, 1 - xx / w], -1) * 120
    img = base + blob[..., None] * rng.uniform(80, 130, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def database_at_revision(path: Path, revision: str, *statements: str) -> Path:
    """An SQLite database migrated only up to ``revision`` (an older release's schema), with
    ``statements`` run in the same transaction; for upgrade and refusal tests."""
    from alembic import command
    from sqlalchemy import text

    from clipcrop_plugin.store import migrate
    from clipcrop_plugin.store.engine import make_engine

    engine = make_engine(f"sqlite:///{path}")
    cfg = migrate.alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        for sql in statements:
            conn.execute(text(sql))
    engine.dispose()
    return path
