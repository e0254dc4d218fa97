"""crs crop values for all eight EXIF orientations, checked by exiftool and on the pixels."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from support.xmp import TO_STORED, TO_UPRIGHT, exiftool_json, info_for, make_suggestion, oriented_jpeg, transpose

from clipcrop_plugin.errors import MetadataError
from clipcrop_plugin.xmp import read_crop_metadata, write_crop_metadata
from clipcrop_plugin.xmp.orientation import box_to_crs, stored_size, stored_to_upright, upright_to_stored

UPRIGHT = (240, 160)  # landscape upright frame
SUBJECT = (150, 24, 222, 88)  # red square-ish subject, upright pixels (x2/y2 exclusive)


def upright_photo() -> Image.Image:
    im = Image.new("RGB", UPRIGHT, (128, 128, 128))
    im.paste((220, 20, 20), SUBJECT)
    im.paste((20, 20, 220), (8, 120, 40, 152))  # a second mark so flips are not symmetric
    return im


def test_table_round_trips_for_every_orientation() -> None:
    rng = random.Random(7)
    for o in range(1, 9):
        for _ in range(50):
            l, r = sorted(rng.random() for _ in range(2))
            t, b = sorted(rng.random() for _ in range(2))
            back = stored_to_upright(upright_to_stored((l, t, r, b), o), o)
            assert np.allclose(back, (l, t, r, b)), o
    assert stored_size(600, 400, 6) == (400, 600) and stored_size(600, 400, 3) == (600, 400)


def test_table_matches_pillow_transposes_on_pixels() -> None:
    """Every stored pixel inside the crs box lands inside the upright box after the transpose."""
    w, h = 7, 5
    for o, (x1, y1, x2, y2) in itertools.product(range(1, 9), [(1, 1, 4, 3), (0, 2, 7, 5), (3, 0, 6, 4)]):
        upright = np.zeros((h, w), np.uint8)
        upright[y1:y2, x1:x2] = 255
        stored = np.asarray(transpose(Image.fromarray(upright), TO_STORED[o]))
        sh, sw = stored.shape
        cl, ct, cr, cb = box_to_crs((x1, y1, x2, y2), w, h, o)
        ys, xs = np.nonzero(stored)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (
            round(cl * sw), round(ct * sh), round(cr * sw), round(cb * sh)), o


def test_bad_orientation_and_box_are_clear_errors() -> None:
    with pytest.raises(MetadataError, match="orientation"):
        upright_to_stored((0, 0, 1, 1), 9)
    with pytest.raises(MetadataError, match="outside"):
        box_to_crs((0, 0, 300, 10), 240, 160, 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sidecar_crop_selects_the_subject_in_the_stored_pixels(tmp_path: Path, exiftool: str, orientation: int) -> None:
    photo = oriented_jpeg(tmp_path / f"o{orientation}.jpg", upright_photo(), orientation)
    info = info_for(photo)
    assert (info.width, info.height) == UPRIGHT
    result = write_crop_metadata(photo, make_suggestion(photo, SUBJECT, info))
    assert result.path_written == tmp_path / f"o{orientation}.xmp" and result.mode_used == "sidecar"

    [tags] = exiftool_json(exiftool, "-n", "-XMP-crs:all", "-XMP-tiff:all", result.path_written)
    assert tags["HasCrop"] is True and tags["CropAngle"] == 0 and tags["AlreadyApplied"] is False
    assert tags["CropConstrainToWarp"] == 0
    with Image.open(photo) as stored_im:
        stored = stored_im.convert("RGB")
        upright = ImageOps.exif_transpose(stored_im).convert("RGB")
    assert (tags["ImageWidth"], tags["ImageHeight"]) == stored.size
    assert tags["Orientation"] == orientation

    # Apply the crs crop to the STORED pixels, then the orientation: the upright subject comes out.
    sw, sh = stored.size
    stored_box = tuple(round(v) for v in (tags["CropLeft"] * sw, tags["CropTop"] * sh,
                                           tags["CropRight"] * sw, tags["CropBottom"] * sh))
    got = np.asarray(transpose(stored.crop(stored_box), TO_UPRIGHT[orientation]))
    want = np.asarray(upright.crop(SUBJECT))
    assert got.shape == want.shape
    assert np.array_equal(got, want)
    red = got.reshape(-1, 3).mean(axis=0)
    assert red[0] > 180 and red[1] < 70 and red[2] < 70  # it is the subject, not some other region

    back = read_crop_metadata(photo)
    assert back is not None and back["ours"] and back["box"] == list(SUBJECT)
    assert np.allclose(back["upright"], (SUBJECT[0] / 240, SUBJECT[1] / 160, SUBJECT[2] / 240, SUBJECT[3] / 160),
                       atol=1e-6)


def test_no_orientation_tag_writes_no_tiff_orientation(tmp_path: Path, exiftool: str) -> None:
    photo = oriented_jpeg(tmp_path / "plain.jpg", upright_photo(), 1, tag=False)
    result = write_crop_metadata(photo, make_suggestion(photo, SUBJECT))
    [tags] = exiftool_json(exiftool, "-n", "-XMP-tiff:all", "-XMP-crs:all", result.path_written)
    assert "Orientation" not in tags
    assert (tags["ImageWidth"], tags["ImageHeight"]) == UPRIGHT
    assert tags["CropLeft"] == pytest.approx(150 / 240, abs=1e-6)


def test_real_pipeline_box_round_trips(tmp_path: Path, exiftool: str) -> None:
    """The foundation pipeline's own suggestion for a rotated photo maps back onto its pixels."""
    suggest = pytest.importorskip("clipcrop_plugin.suggest")
    registry = pytest.importorskip("clipcrop_plugin.scoring.registry")
    from clipcrop_plugin.config import Settings

    photo = oriented_jpeg(tmp_path / "rot6.jpg", upright_photo().resize((480, 320)), 6)
    scorer = registry.load_scorer("heuristic", settings=Settings(), device="cpu", weights=None)
    [s] = list(suggest.suggest_paths([photo], scorer))
    assert s.ok, s.error
    best = s.best()
    # The grid's best may not beat the full frame (then "keep as is" writes no crop): a negative
    # infinite keep margin always writes the best crop, which is what this round trip needs.
    result = write_crop_metadata(photo, s, keep_margin=float("-inf"))
    [tags] = exiftool_json(exiftool, "-n", "-XMP-crs:all", result.path_written)
    with Image.open(photo) as im:
        stored = im.convert("RGB")
        upright = ImageOps.exif_transpose(im).convert("RGB")
    sw, sh = stored.size
    box = tuple(round(v) for v in (tags["CropLeft"] * sw, tags["CropTop"] * sh, tags["CropRight"] * sw,
                                    tags["CropBottom"] * sh))
    got = np.asarray(transpose(stored.crop(box), TO_UPRIGHT[6]))
    assert np.array_equal(got, np.asarray(upright.crop(best.box)))
