"""Thumbnail cache: upright RGB JPEGs for every kind of photo, made once, keyed by hash and size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.server import make_photo

from clipcrop_plugin.errors import ImageError
from clipcrop_plugin.server.thumbs import SIZES, ThumbnailCache, snap_size


def _made(cache: ThumbnailCache, src: Path, size: int = 256) -> Image.Image:
    out = cache.get(src, "ab" * 32, size)
    im = Image.open(out)
    im.load()
    return im


def test_sizes_snap_to_a_few_buckets() -> None:
    assert [snap_size(s) for s in (1, 256, 257, 600, 1024, 5000)] == [256, 256, 512, 1024, 1024, 1600]
    assert SIZES == (256, 512, 1024, 1600)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("rgba.png", lambda: Image.new("RGBA", (400, 300), (255, 0, 0, 0))),
        ("gray16.png", lambda: Image.fromarray((np.arange(300 * 400, dtype=np.uint16) % 65535).reshape(300, 400))),
        ("palette.gif", lambda: Image.new("P", (400, 300), 3)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (400, 300), (0, 255, 255, 0))),
        ("la.png", lambda: Image.new("LA", (400, 300), (128, 255))),
    ],
)
def test_every_mode_becomes_an_rgb_jpeg(tmp_path: Path, name: str, make) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / name
    make().save(src)
    im = _made(ThumbnailCache(tmp_path / "cache"), src)
    assert im.format == "JPEG" and im.mode == "RGB" and im.size == (256, 192)
    if name == "rgba.png":  # transparent pixels over white, not black
        assert im.getpixel((128, 96))[0] > 240 and im.getpixel((128, 96))[1] > 240


def test_orientation_is_applied_and_large_jpegs_are_drafted(tmp_path: Path) -> None:
    src = make_photo(tmp_path / "big.jpg", 2, size=(2400, 1800), orientation=6)
    cache = ThumbnailCache(tmp_path / "cache")
    im = _made(cache, src, 512)
    assert im.size == (384, 512)  # stored landscape, shown portrait
    again = cache.get(src, "ab" * 32, 400)  # same bucket: no new file
    assert again == cache.path_for("ab" * 32, 512) and len(list(cache.root.rglob("*.jpg"))) == 1


def test_unreadable_files_raise_one_line_errors(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "cache")
    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"hello")
    with pytest.raises(ImageError, match="cannot make a preview of not-an-image.jpg"):
        cache.get(bad, "cd" * 32, 256)
    with pytest.raises(ImageError):
        cache.get(tmp_path / "gone.jpg", "ef" * 32, 256)
    assert not list((tmp_path / "cache").rglob("*.jpg"))
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # no half-written files left behind


def test_hash_cannot_escape_the_cache_folder(tmp_path: Path) -> None:
    cache = ThumbnailCache(tmp_path / "cache")
    p = cache.path_for("../../../etc/passwd", 256)
    assert p.resolve().is_relative_to((tmp_path / "cache").resolve())
