"""Helpers for the personalization tests: a small scored library and simulated owners.

The owner knows where each photo's subject is (the renderer says); the scorers never do, so
anything they learn about the owner's taste came from the labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipcrop_plugin.api import Library
from clipcrop_plugin.candidates import AspectRatio
from clipcrop_plugin.scan import scan_folders
from clipcrop_plugin.store import Store
from trainer.synthetic import render_subject_image

ASPECTS = (AspectRatio(1, 1), AspectRatio(4, 5))


@dataclass
class Subject:
    cx: float
    cy: float
    r: float


def cut(box: np.ndarray, s: Subject) -> np.ndarray:
    out = np.maximum.reduce([s.r - (s.cx - box[:, 0]), s.r - (box[:, 2] - s.cx),
                             s.r - (s.cy - box[:, 1]), s.r - (box[:, 3] - s.cy), np.zeros(len(box))])
    return out / s.r


def tight_left(box: np.ndarray, s: Subject, w: int, h: int) -> np.ndarray:
    """Tight crops, subject on the left third, never cut."""
    bw, bh = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    u, v = (s.cx - box[:, 0]) / bw, (s.cy - box[:, 1]) / bh
    return -4 * np.abs(u - 1 / 3) - 1.5 * np.abs(v - 0.5) - 2.5 * bw * bh / (w * h) - 3 * cut(box, s)


def loose_centre(box: np.ndarray, s: Subject, w: int, h: int) -> np.ndarray:
    """Loose crops, subject centred, never cut."""
    bw, bh = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    u, v = (s.cx - box[:, 0]) / bw, (s.cy - box[:, 1]) / bh
    return -3 * np.abs(u - 0.5) - 3 * np.abs(v - 0.5) + 3 * bw * bh / (w * h) - 3 * cut(box, s)


def make_photos(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (240, 180)) -> dict[str, Subject]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        image, cx, cy, r = render_subject_image(rng, *size)
        path = folder / f"p{i:03d}.jpg"
        image.save(path, quality=90)
        out[str(path.resolve())] = Subject(cx, cy, r)
    return out


def scored_library(tmp: Path, n: int, scorer, seed: int = 0) -> tuple[str, dict[str, Subject]]:  # type: ignore[no-untyped-def]
    """A SQLite library of ``n`` synthetic photos scored by ``scorer``; returns (db url, subjects)."""
    subjects = make_photos(tmp / "photos", n, seed)
    db = f"sqlite:///{tmp / 'lib.sqlite3'}"
    with Store.open(db) as store:
        report = scan_folders(store, [str(tmp / "photos")], scorer, ASPECTS)
    assert report.scored == n, report.summary()
    return db, subjects


Utility = Callable[[np.ndarray, Subject, int, int], np.ndarray]


def review(lib: Library, subjects: dict[str, Subject], utility: Utility, n_labels: int, *,
           only: set[str] | None = None, seed: int = 0) -> int:
    """Label like the review page: "most uncertain" first; accept a suggestion the owner likes,
    else draw their own crop (an adjusted box); every other photo also a pairwise choice.
    ``only``: review just these photo paths. Returns how many labels were recorded."""
    rng = np.random.default_rng(seed)
    done = 0
    for ph in lib.photos(sort="uncertain", status="scored", labelled=False, limit=500).items:
        if done >= n_labels:
            break
        if only is not None and ph.path not in only:
            continue
        s = subjects[ph.path]
        cands = [c for c in lib.photo(ph.id).candidates if c.aspect != "full"]
        boxes = np.asarray([c.box for c in cands], dtype=np.float64)
        u = utility(boxes, s, ph.width, ph.height)
        crop = ph.crop
        mine = float(utility(np.asarray([crop.box], dtype=np.float64), s, ph.width, ph.height)[0])
        if mine >= np.quantile(u, 0.9):
            lib.record_label(ph.id, "accept", aspect=crop.aspect, rank=crop.rank, source="review")
        else:
            best = cands[int(np.argmax(u))]
            lib.record_label(ph.id, "box", aspect=crop.aspect, rank=crop.rank, box=list(best.box), source="review")
        done += 1
        if done % 2 == 0 and done < n_labels:
            i, j = rng.choice(len(cands), 2, replace=False)
            if abs(u[i] - u[j]) > 0.3:
                a, b = (i, j) if u[i] > u[j] else (j, i)
                lib.record_label(ph.id, "prefer", box=list(cands[a].box), other_box=list(cands[b].box),
                                 source="review")
                done += 1
    return done
