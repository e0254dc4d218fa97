"""HEIC through libheif's thumbnail when it is large enough: the same upright picture and frame as
the full decode, on a real iPhone file of the EXIF sample corpus (read in place, never copied)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from support.raw import correlation

from clipcrop_plugin import heif as heif_mod
from clipcrop_plugin.imaging import heif_available, load_image

pytest.importorskip("pillow_heif", reason="the [heic] extra (pillow-heif) decodes HEIC")


@pytest.fixture
def iphone(corpus_dir: Path) -> Path:
    path = corpus_dir / "heic" / "mobile" / "iphone_13_pro_max.HEIC"
    if not path.is_file():
        pytest.skip(f"{path} is not in the corpus")
    assert heif_available()
    return path


def test_scoring_size_is_decoded_from_the_thumbnail_with_the_primarys_frame(iphone: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    used: list[Image.Image | None] = []
    real = heif_mod.smallest_thumbnail

    def spy(*a, **kw):  # type: ignore[no-untyped-def]
        used.append(real(*a, **kw))
        return used[-1]

    monkeypatch.setattr(heif_mod, "smallest_thumbnail", spy)
    small = load_image(iphone, min_side=192)
    assert used and used[-1] is not None and used[-1].size == (240, 320)  # the iPhone's 320 px thumbnail
    monkeypatch.setattr(heif_mod, "smallest_thumbnail", lambda *a, **kw: None)
    full = load_image(iphone, min_side=192)  # today's path: the whole 12 MP primary
    assert small.info == full.info and (small.info.width, small.info.height) == (3024, 4032)
    assert small.image.size == full.image.size == (192, 256)
    assert correlation(small.image, full.image) > 0.95  # the same picture, the same way up


def test_a_thumbnail_too_small_for_the_request_is_not_used(iphone: Path) -> None:
    assert heif_mod.smallest_thumbnail(iphone, min_short=256) is None  # 240 px short side
    assert heif_mod.smallest_thumbnail(iphone, min_long=320) is not None


def test_review_thumbnail_of_a_heic_comes_from_its_thumbnail(iphone: Path, tmp_path: Path) -> None:
    from clipcrop_plugin.server.thumbs import ThumbnailCache

    data = ThumbnailCache(tmp_path / "t").read(iphone, "cd" * 32, 256)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (192, 256)
        ref = load_image(iphone, min_side=192).image
        assert correlation(im, ref) > 0.95
