"""Uniform borders (letterbox bands, a frame): found by the subject stage, never shown by a crop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clipcrop_plugin.candidates import generate_candidates, parse_aspect
from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.results import Subject
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.subjects import picture_box
from clipcrop_plugin.suggest import suggest_paths

skimage_data = pytest.importorskip("skimage.data")


def chelsea() -> np.ndarray:
    """A real photo (scikit-image's public-domain cat), 451x300."""
    return np.asarray(skimage_data.chelsea(), dtype=np.uint8)


def bordered(pic: np.ndarray, top: int, bottom: int, left: int, right: int, colour: int = 0) -> np.ndarray:
    h, w = pic.shape[:2]
    out = np.full((h + top + bottom, w + left + right, 3), colour, dtype=np.uint8)
    out[top : top + h, left : left + w] = pic
    return out


def jpeg(pixels: np.ndarray, path: Path) -> Path:
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return path


@pytest.mark.parametrize(
    ("top", "bottom", "left", "right", "colour"),
    [(40, 40, 0, 0, 0), (0, 0, 60, 60, 0), (20, 20, 20, 20, 255), (30, 18, 0, 0, 8)],
    ids=["letterbox", "pillarbox", "white-frame", "uneven-bands"],
)
def test_the_picture_inside_uniform_borders_is_found(top: int, bottom: int, left: int, right: int,
                                                     colour: int) -> None:
    img = bordered(chelsea(), top, bottom, left, right, colour)
    box = picture_box(img)
    assert box is not None
    h, w = img.shape[:2]
    # Within a pixel or two of the true picture (JPEG-free here; the band's edge may blur one line).
    assert np.allclose(box, (left, top, w - right, h - bottom), atol=3), box


def test_flat_areas_that_belong_to_the_photo_are_not_borders() -> None:
    rng = np.random.default_rng(3)
    # A product on a white backdrop: flat white on every side, but the first line that is not
    # flat is still mostly backdrop.
    product = np.full((300, 400, 3), 255, dtype=np.uint8)
    product[90:210, 150:250] = rng.integers(40, 200, (120, 100, 3))
    assert picture_box(product) is None
    # A bird in a clear sky (flat rows above and below it).
    sky = np.zeros((300, 450, 3), dtype=np.uint8)
    sky[...] = (110, 160, 230)
    sky[130:160, 200:240] = (30, 30, 30)
    assert picture_box(sky) is None
    # A dark band on one side only (a night sky, a shadow) is part of the photo.
    assert picture_box(bordered(chelsea(), 50, 0, 0, 0)) is None
    # Bands of different colours on opposite sides are not one border.
    two = bordered(chelsea(), 40, 40, 0, 0, 0)
    two[-40:] = 255
    assert picture_box(two) is None
    # Flat frames and tiny images have no picture inside them.
    assert picture_box(np.zeros((200, 300, 3), dtype=np.uint8)) is None
    assert picture_box(np.zeros((4, 4, 3), dtype=np.uint8)) is None
    # Bands so wide that little picture is left: that is a dark photo, not a letterbox.
    assert picture_box(bordered(chelsea()[:, :, :], 300, 300, 0, 0)) is None


def test_candidates_of_a_bordered_photo_stay_inside_the_picture() -> None:
    inner = (0, 100, 1200, 700)
    subjects = [Subject("content", inner, 1.0), Subject("salient", (500, 300, 700, 500), 0.9)]
    cands = generate_candidates(1200, 800, [parse_aspect(r) for r in ("1:1", "4:5", "16:9", "9:16")],
                                subjects=subjects)
    boxes = np.asarray(cands.boxes)
    crops = boxes[[g != "full" for g in cands.groups]]
    assert (crops[:, 1] >= 100).all() and (crops[:, 3] <= 700).all()
    assert tuple(boxes[cands.full_index]) == (0, 0, 1200, 800)
    # The crop that only removes the border is one of the grid's candidates.
    assert inner in {tuple(b) for b, g in zip(boxes.tolist(), cands.groups) if g == "grid"}
    # Every ratio set still has its exact ratio.
    for b, g in zip(boxes.tolist(), cands.groups):
        if g == "16:9":
            assert abs((b[2] - b[0]) / (b[3] - b[1]) - 16 / 9) < 0.01


def test_a_letterboxed_photo_is_cropped_to_its_picture_end_to_end(tmp_path: Path) -> None:
    pic = chelsea()
    path = jpeg(bordered(pic, 45, 45, 0, 0), tmp_path / "letterboxed.jpg")
    plain = jpeg(pic, tmp_path / "plain.jpg")
    aspects = [parse_aspect("1:1"), parse_aspect("16:9")]
    s, p = list(suggest_paths([path, plain], HeuristicScorer(), aspects))
    content = [x for x in s.subjects if x.kind == "content"]
    assert len(content) == 1 and abs(content[0].box[1] - 45) <= 2 and abs(content[0].box[3] - 345) <= 2
    assert not [x for x in p.subjects if x.kind == "content"]
    # "Keep as is" is never suggested for a photo showing black bands: the grid crop removes them.
    choice = s.choice("grid")
    assert not choice.keep and choice.crop is not None
    assert choice.crop.box[1] >= content[0].box[1] and choice.crop.box[3] <= content[0].box[3]
    assert choice.reason == "removes the border around the picture"
    for aspect in ("1:1", "16:9"):
        best = s.best(aspect)
        assert best is not None and best.box[1] >= content[0].box[1] and best.box[3] <= content[0].box[3]
    # suggest --json shows the picture as a subject of kind "content".
    res = CliRunner().invoke(cli, ["suggest", str(path), "--json", "--scorer", "heuristic"])
    assert res.exit_code == 0, res.output
    kinds = [x["kind"] for x in json.loads(res.stdout.splitlines()[0])["subjects"]]
    assert "content" in kinds


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(band=st.integers(8, 80), sides=st.sampled_from(["tb", "lr", "all"]), level=st.sampled_from([0, 16, 128, 255]),
       quality=st.sampled_from([70, 95]))
def test_no_suggestion_of_a_bordered_photo_shows_its_border(tmp_path_factory: pytest.TempPathFactory, band: int,
                                                             sides: str, level: int, quality: int) -> None:
    t = b = band if sides in ("tb", "all") else 0
    l_ = r = band if sides in ("lr", "all") else 0
    img = bordered(chelsea(), t, b, l_, r, level)
    path = tmp_path_factory.mktemp("border") / "photo.jpg"
    Image.fromarray(img).save(path, "JPEG", quality=quality)
    (s,) = suggest_paths([path], HeuristicScorer(), [parse_aspect(a) for a in ("1:1", "4:5", "16:9", "9:16")])
    h, w = img.shape[:2]
    picture = (l_, t, w - r, h - b)
    choice = s.choice("grid")
    shown = [choice.crop] if choice.crop is not None else []
    assert not choice.keep  # a photo showing bands is never kept as it is
    shown += [s.best(a) for a in ("1:1", "4:5", "16:9", "9:16")]
    for crop in shown:
        assert crop is not None
        x1, y1, x2, y2 = crop.box
        assert x1 >= picture[0] and y1 >= picture[1] and x2 <= picture[2] and y2 <= picture[3], (crop.aspect, crop.box)
