"""Crop or keep that means something (issue 11): the free grid crops where a crop clearly helps
and keeps a well-composed frame, with the weights-free scorer end to end; and every explanation,
including the store's fallback below rank 1, is relative to the scorer's own scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipcrop_plugin.candidates import generate_candidates, parse_aspect
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.results import DEFAULT_KEEP_MARGIN
from clipcrop_plugin.scoring.base import ScoreResult
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.store import Store
from clipcrop_plugin.suggest import build_suggestion, suggest_paths


def _texture(w: int, h: int, seed: int = 0) -> np.ndarray:
    """An even, noisy green field: background with nothing to crop to."""
    rng = np.random.default_rng(seed)
    small = rng.normal(0, 1, (h // 8 + 1, w // 8 + 1, 3))
    coarse = np.asarray(Image.fromarray(np.clip(small * 40 + 128, 0, 255).astype(np.uint8)).resize((w, h)), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([60 + 40 * yy / h, 110 + 50 * yy / h, 60 + 30 * xx / w], axis=-1)  # light falls off
    return np.clip(base + (coarse - 128) * 0.35 + rng.normal(0, 6, (h, w, 3)), 0, 255)


def _ball(arr: np.ndarray, cx: float, cy: float, r: float) -> tuple[int, int, int, int]:
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    shade = np.clip(1.0 - 0.5 * ((xx - cx + r * 0.3) ** 2 + (yy - cy + r * 0.3) ** 2) / (r * r), 0.4, 1.0)
    arr[inside] = np.stack([225 * shade, 40 * shade, 35 * shade], axis=-1)[inside]  # lit from the top left
    return (int(cx - r), int(cy - r), int(cx + r) + 1, int(cy + r) + 1)


def _grid_choice(path: Path):  # type: ignore[no-untyped-def]
    s = next(iter(suggest_paths([path], HeuristicScorer())))
    assert s.ok, s.error
    return s.choice("grid", DEFAULT_KEEP_MARGIN)


def _save(arr: np.ndarray, path: Path) -> Path:
    Image.fromarray(arr.astype(np.uint8)).save(path, "JPEG", quality=92)
    return path


def test_a_small_subject_in_a_corner_gets_a_crop_that_keeps_it(tmp_path: Path) -> None:
    arr = _texture(1200, 800)
    ball = _ball(arr, 0.8 * 1200, 0.2 * 800, 80)
    choice = _grid_choice(_save(arr, tmp_path / "corner.jpg"))
    assert not choice.keep and choice.crop is not None
    x1, y1, x2, y2 = choice.crop.box
    assert x1 <= ball[0] and y1 <= ball[1] and x2 >= ball[2] and y2 >= ball[3]


def test_black_bands_are_cropped_away(tmp_path: Path) -> None:
    arr = _texture(1200, 800, seed=1)
    _ball(arr, 600, 400, 176)
    arr[:96] = arr[-96:] = 4.0
    choice = _grid_choice(_save(arr, tmp_path / "letterbox.jpg"))
    assert not choice.keep and choice.crop is not None
    y1, y2 = choice.crop.box[1], choice.crop.box[3]
    band_rows = max(0, 96 - y1) + max(0, y2 - (800 - 96))
    assert band_rows / (y2 - y1) < 0.5 * 192 / 800  # most of the dead bands are gone


@pytest.mark.parametrize("kind", ["plain", "filled"])
def test_an_even_field_and_a_filled_frame_are_kept(tmp_path: Path, kind: str) -> None:
    arr = _texture(1200, 800, seed=2)
    if kind == "filled":
        _ball(arr, 600, 400, 336)
    assert _grid_choice(_save(arr, tmp_path / f"{kind}.jpg")).keep


def test_stored_explanations_below_rank_one_are_scale_free(tmp_path: Path) -> None:
    p = tmp_path / "p.jpg"
    arr = _texture(600, 400, seed=3)
    _ball(arr, 400, 150, 60)
    _save(arr, p)
    li = load_image(p)
    cs = generate_candidates(600, 400, [parse_aspect("1:1")])
    rng = np.random.default_rng(5)
    elements = rng.uniform(size=(len(cs), 10))
    same = np.all(cs.boxes == cs.boxes[cs.full_index], axis=1)
    elements[same] = elements[cs.full_index]
    scores = rng.normal(size=len(cs))
    named = []
    for scale in (1e-5, 1.0):
        s = build_suggestion(li, cs, ScoreResult(scores * scale, elements * scale), HeuristicScorer())
        with Store.open(str(tmp_path / f"db{scale}.sqlite3")) as store:
            store.record_suggestion(s, f"hash{scale}")
            detail = store.photo_detail(str(p))
        below = [c for c in detail.candidates if c.rank > 1 and c.aspect != "full" and c.box != (0, 0, 600, 400)]
        assert below and all(c.explanation for c in below)  # an absolute floor would empty them at 1e-5
        named.append([[e.element for e in c.explanation] for c in below])
    assert named[0] == named[1]
