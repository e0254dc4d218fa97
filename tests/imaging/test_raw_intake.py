"""RAW intake: real DNGs (pidng, from a public-domain photo) through LibRaw, preview and demosaic paths,
orientations 1/3/6/8, exact box mapping, and every bad-input line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image
from support.raw import correlation, make_dng, source_photo, stored_rgb, upright

from clipcrop_plugin import raw as rawmod
from clipcrop_plugin.errors import ImageError
from clipcrop_plugin.imaging import load_image, working_box

pytest.importorskip("rawpy", reason="the [raw] extra (rawpy) decodes camera RAW")

STORED = (1280, 852)


@pytest.fixture(scope="module")
def dngs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, bool], Path]:
    root = tmp_path_factory.mktemp("dng")
    return {(o, pv): make_dng(root / f"IMG_o{o}{'_pv' if pv else ''}.dng", o, preview=(640, 426) if pv else None)
            for o in (1, 3, 6, 8) for pv in (False, True)}


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("with_preview", [False, True])
def test_dng_loads_upright_with_sizes_from_the_raw(dngs, orientation: int, with_preview: bool) -> None:  # type: ignore[no-untyped-def]
    path = dngs[(orientation, with_preview)]
    loaded = load_image(path, min_side=256)
    info = loaded.info
    assert (info.stored_width, info.stored_height) == STORED
    assert info.orientation == orientation and info.has_orientation_tag
    assert (info.width, info.height) == (STORED[::-1] if orientation in (6, 8) else STORED)
    assert info.format == "DNG" and info.camera_make == "clipcrop" and info.camera_model == "Test DNG"
    assert info.taken_at is not None and info.taken_at.year == 2024
    assert min(loaded.image.size) == 256
    assert loaded.image.width / loaded.image.height == pytest.approx(info.width / info.height, rel=0.01)
    # The working copy shows the photo upright: it matches the upright source, not another turn.
    src = source_photo()
    right = correlation(loaded.image, upright(src, orientation))
    assert right > 0.9
    for wrong in {1, 3, 6, 8} - {orientation}:
        candidate = upright(src, wrong)
        if candidate.size == upright(src, orientation).size:  # the turn of the same shape
            assert correlation(loaded.image, candidate) < right - 0.2


@pytest.mark.parametrize("preview, expected", [((640, 426), "preview"), ((160, 106), "demosaic"),
                                               ((640, 360), "demosaic"), (None, "demosaic")])
def test_preview_is_used_only_when_large_enough_and_framed_like_the_sensor(tmp_path: Path, preview, expected) -> None:  # type: ignore[no-untyped-def]
    path = make_dng(tmp_path / "IMG.dng", 6, preview=preview)
    im, header, source = rawmod.load_raw(path, min_side=256)
    assert source == expected
    assert im.size == (256, 385)  # upright working size whichever path decoded it
    assert correlation(im, upright(source_photo(), 6)) > 0.9


def test_preview_already_turned_by_the_camera_is_not_turned_twice(tmp_path: Path) -> None:
    path = make_dng(tmp_path / "IMG.dng", 8, preview=(426, 640), preview_upright=True)
    im, header, source = rawmod.load_raw(path, min_side=256)
    assert source == "preview" and im.size == (256, 385)
    assert correlation(im, upright(source_photo(), 8)) > 0.9


def test_boxes_map_exactly_from_the_preview_to_the_full_frame(dngs) -> None:  # type: ignore[no-untyped-def]
    for orientation in (1, 6):
        loaded = load_image(dngs[(orientation, True)], min_side=256)
        full = upright(Image.fromarray((stored_rgb(STORED) * 255).astype("uint8")), orientation)
        assert full.size == (loaded.info.width, loaded.info.height)
        w, h = full.size
        box = (w // 10, h // 5, w // 10 + w // 3, h // 5 + h // 3)  # an off-centre box
        crop_work = loaded.image.crop(working_box(loaded, box))
        assert correlation(crop_work, full.crop(box)) > 0.9
        # The exact box matches better than the same box moved by 3% either way.
        dx, dy = w * 3 // 100, h * 3 // 100
        scores = {(ox, oy): correlation(crop_work, full.crop((box[0] + ox, box[1] + oy, box[2] + ox, box[3] + oy)))
                  for ox in (-dx, 0, dx) for oy in (-dy, 0, dy)}
        assert max(scores, key=scores.get) == (0, 0), scores


def test_suggest_scores_a_dng_with_boxes_in_the_upright_frame(dngs) -> None:  # type: ignore[no-untyped-def]
    from clipcrop_plugin.scoring.heuristic import HeuristicScorer
    from clipcrop_plugin.suggest import suggest_paths

    [s] = list(suggest_paths([dngs[(6, True)]], HeuristicScorer()))
    assert s.ok, s.error
    assert (s.info.width, s.info.height) == (852, 1280)
    for c in s.crops:
        x1, y1, x2, y2 = c.box
        assert 0 <= x1 < x2 <= 852 and 0 <= y1 < y2 <= 1280


def test_raw_extensions_are_photos_when_walking_a_folder(tmp_path: Path) -> None:
    from clipcrop_plugin.suggest import is_photo_name, iter_photo_paths

    for name in ("IMG_1.CR2", "a.cr3", "b.NEF", "c.arw", "d.RAF", "e.orf", "f.rw2", "g.pef", "h.dng"):
        assert is_photo_name(name), name
    assert not is_photo_name("IMG_1.xmp")
    (tmp_path / "IMG_1.CR2").write_bytes(b"x")
    (tmp_path / "IMG_1.xmp").write_text("<x/>")
    assert [p.name for p in iter_photo_paths([tmp_path])] == ["IMG_1.CR2"]


# -- bad input: one line naming the cause and the fix, and the batch goes on -----------------------

def _one_line(exc: ImageError) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_truncated_raw_is_one_line(dngs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = dngs[(1, False)].read_bytes()
    cut = tmp_path / "IMG_cut.dng"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as err:
        load_image(cut)
    assert "truncated or corrupt RAW data" in _one_line(err.value) and "copy the file" in str(err.value)


def test_unsupported_camera_is_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "IMG_1.NEF"
    Image.new("RGB", (64, 48), "red").save(fake, "TIFF")  # a TIFF no camera wrote: LibRaw refuses it
    with pytest.raises(ImageError) as err:
        load_image(fake)
    text = _one_line(err.value)
    assert "does not support this camera" in text and "pip install -U rawpy" in text


def test_unparseable_maker_notes_do_not_stop_the_photo(tmp_path: Path) -> None:
    import subprocess

    path = make_dng(tmp_path / "IMG_mn.dng", 3, preview=(640, 426),
                    maker_note=b"II" + b"\xff" * 64)  # garbage where a maker note's IFD should be
    out = subprocess.run(["exiftool", "-a", str(path)], capture_output=True, text=True).stdout
    assert "Maker notes could not be parsed" in out  # the reference reader agrees they are broken
    loaded = load_image(path)
    assert loaded.info.orientation == 3 and (loaded.info.width, loaded.info.height) == STORED


def test_raw_without_the_extra_names_the_install(monkeypatch, dngs) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "rawpy", None)  # "import rawpy" raises ImportError
    monkeypatch.setattr(rawmod, "_rawpy", None)
    with pytest.raises(ImageError) as err:
        load_image(dngs[(1, True)])
    assert "pip install 'clipcrop[raw]'" in _one_line(err.value)
    assert not rawmod.raw_available()


def test_a_batch_goes_on_past_bad_raws(dngs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from clipcrop_plugin.scoring.heuristic import HeuristicScorer
    from clipcrop_plugin.suggest import suggest_paths

    data = dngs[(1, False)].read_bytes()
    (tmp_path / "a_cut.dng").write_bytes(data[: len(data) // 3])
    Image.new("RGB", (64, 48), "red").save(tmp_path / "b_fake.CR2", "TIFF")
    good = tmp_path / "c_good.dng"
    good.write_bytes(dngs[(8, True)].read_bytes())
    results = {Path(s.path).name: s for s in suggest_paths([tmp_path], HeuristicScorer())}
    assert not results["a_cut.dng"].ok and "truncated" in results["a_cut.dng"].error
    assert not results["b_fake.CR2"].ok and "does not support" in results["b_fake.CR2"].error
    assert results["c_good.dng"].ok and results["c_good.dng"].info.orientation == 8
