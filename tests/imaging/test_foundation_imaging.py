"""Image intake: bad input gives one typed, one-line error; every mode becomes RGB; EXIF is applied."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from datetime import datetime
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image, JpegImagePlugin
from support.photos import save_with_orientation, subject_photo

from clipcrop_plugin.errors import ImageError
from clipcrop_plugin.imaging import load_image


def _assert_one_line_error(path: Path, *fragments: str) -> str:
    with pytest.raises(ImageError) as info:
        load_image(path)
    msg = str(info.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg.lower(), msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path / "nope.jpg", "no such file")


def test_directory(tmp_path: Path) -> None:
    _assert_one_line_error(tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    _assert_one_line_error(p, "empty")


def test_truncated_jpeg(tmp_path: Path) -> None:
    full = tmp_path / "full.jpg"
    subject_photo(640, 480).save(full, "JPEG", quality=90)
    data = full.read_bytes()
    p = tmp_path / "truncated.jpg"
    p.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(p, "truncated")


def test_text_named_jpg(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("this is not a photo\n" * 20)
    _assert_one_line_error(p, "not an image")


def test_zero_size_png(tmp_path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    p = tmp_path / "zero.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)) + chunk(b"IEND", b""))
    _assert_one_line_error(p, "zero-size")


def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.png"
    Image.new("RGB", (200, 200), (10, 20, 30)).save(p)
    # Between 1x and 2x the limit Pillow only warns: that must be an error too.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)
    _assert_one_line_error(p, "decompression bomb")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    _assert_one_line_error(p, "decompression bomb")


def test_decompression_limit_applies_to_what_a_jpeg_decodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.jpg"
    subject_photo(2400, 1600).save(p, "JPEG")
    # 3.84 MP stored (over a 2 MP limit), but decoded at 1/8 scale (300x200): accepted...
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000_000)
    assert load_image(p, min_side=192).image.size == (288, 192)
    # ...while a request that needs the full-size decode is refused.
    _assert_one_line_error_kw(p, {"min_side": 1600}, "decompression bomb")


def _assert_one_line_error_kw(path: Path, kw: dict[str, int], *fragments: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and all(f in msg.lower() for f in fragments), msg


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads anything")
def test_unreadable_file(tmp_path: Path) -> None:
    p = tmp_path / "locked.jpg"
    subject_photo(64, 64).save(p, "JPEG")
    p.chmod(0)
    try:
        _assert_one_line_error(p, "cannot read")
    finally:
        p.chmod(0o644)


def test_permission_denied_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same check as above but works as root too: the open itself is refused."""
    import clipcrop_plugin.safeio as safeio

    p = tmp_path / "locked.jpg"
    subject_photo(64, 64).save(p, "JPEG")
    real_open = os.open

    def refuse(path: object, *args: object, **kwargs: object) -> object:
        if os.fspath(path) == os.fspath(p):  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(safeio.os, "open", refuse)
    _assert_one_line_error(p, "cannot read", "permission denied")


def test_working_box_maps_to_working_pixels(tmp_path: Path) -> None:
    from clipcrop_plugin.imaging import working_box

    p = tmp_path / "w.jpg"
    subject_photo(1000, 600).save(p, "JPEG")
    li = load_image(p, min_side=150)
    assert li.image.size == (250, 150)
    assert working_box(li, (0, 0, 1000, 600)) == (0, 0, 250, 150)
    assert working_box(li, (100, 60, 501, 300)) == (25, 15, 126, 75)


def test_heic_without_decoder_says_so(tmp_path: Path, corpus_dir: Path) -> None:
    heic = corpus_dir / "heic" / "IMG_5195.HEIC"
    code = (
        "import sys; sys.modules['pillow_heif'] = None\n"
        "from clipcrop_plugin.imaging import load_image\n"
        "from clipcrop_plugin.errors import ImageError\n"
        f"try:\n    load_image({str(heic)!r})\nexcept ImageError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEIC/HEIF is not supported" in out.stdout and "pillow-heif" in out.stdout
    assert "Traceback" not in out.stderr


def test_heic_with_decoder(corpus_dir: Path) -> None:
    pytest.importorskip("pillow_heif")
    li = load_image(corpus_dir / "heic" / "IMG_5195.HEIC")
    assert li.image.mode == "RGB" and li.info.format == "HEIF"
    assert min(li.image.size) == 256


@pytest.mark.parametrize(
    "mode",
    ["CMYK", "I;16", "P", "LA", "RGBA", "L", "1", "F", "I"],
)
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    rgb = subject_photo(120, 80)
    if mode == "I;16":
        arr = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        src = Image.fromarray(arr)
        assert src.mode.startswith("I;16")
        path = tmp_path / "img.png"
    elif mode == "F":
        src = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0)
        path = tmp_path / "img.tif"
    elif mode == "I":
        src = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.int32) * 1000)
        path = tmp_path / "img.tif"
    elif mode == "CMYK":
        src = rgb.convert("CMYK")
        path = tmp_path / "img.jpg"
    else:
        src = rgb.convert(mode)
        path = tmp_path / "img.png"
    src.save(path)
    li = load_image(path)
    assert li.image.mode == "RGB"
    assert li.image.size == (120, 80)
    arr = np.asarray(li.image, dtype=np.float32)
    assert arr.max() > 100, "data range lost in conversion"
    if mode == "1":
        assert set(np.unique(arr).tolist()) == {0.0, 255.0}
    else:
        # The subject (red disc) still differs from the background after any conversion.
        assert np.abs(arr[32, 81] - arr[5, 5]).max() > 5


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (50, 40), (0, 0, 0, 0))
    img.paste((0, 0, 255, 255), (10, 10, 20, 20))
    p = tmp_path / "alpha.png"
    img.save(p)
    arr = np.asarray(load_image(p).image)
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[15, 15]) == (0, 0, 255)


def test_palette_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (30, 30), 0)
    img.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    img.paste(1, (10, 10, 20, 20))
    p = tmp_path / "pal.gif"
    img.save(p, transparency=0)
    arr = np.asarray(load_image(p).image)
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[15, 15]) == (200, 0, 0)


def test_large_jpeg_is_drafted_not_decoded_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.jpg"
    subject_photo(3000, 2000).save(p, "JPEG", quality=85)
    decoded: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.load

    def spy(self: JpegImagePlugin.JpegImageFile) -> object:
        decoded.append(self.size)
        return original(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    li = load_image(p, min_side=256)
    assert decoded and max(decoded[0]) <= 3000 // 4, decoded  # 1/4 or 1/8 DCT scale, never full size
    assert min(li.image.size) == 256 and li.image.size == (384, 256)
    assert (li.info.width, li.info.height) == (3000, 2000)
    assert li.scale == pytest.approx(256 / 2000, rel=0.01)


def test_small_image_is_not_upscaled(tmp_path: Path) -> None:
    p = tmp_path / "small.jpg"
    subject_photo(100, 60).save(p, "JPEG")
    li = load_image(p)
    assert li.image.size == (100, 60) and li.scale == 1.0


def test_photo_info_from_exif(tmp_path: Path) -> None:
    p = tmp_path / "exif.jpg"
    exif = piexif.dump(
        {
            "0th": {piexif.ImageIFD.Make: b"Acme\x00", piexif.ImageIFD.Model: b"Snap 1", piexif.ImageIFD.Orientation: 6},
            "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2021:07:04 10:11:12"},
        }
    )
    subject_photo(300, 200).save(p, "JPEG", exif=exif)
    info = load_image(p).info
    assert (info.width, info.height, info.stored_width, info.stored_height) == (200, 300, 300, 200)
    assert info.orientation == 6 and info.has_orientation_tag
    assert info.taken_at == datetime(2021, 7, 4, 10, 11, 12)
    assert (info.camera_make, info.camera_model, info.format) == ("Acme", "Snap 1", "JPEG")


def test_odd_exif_does_not_crash(tmp_path: Path) -> None:
    p = tmp_path / "odd.jpg"
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 42, piexif.ImageIFD.Make: b"\xff\xfe"}})
    subject_photo(80, 60).save(p, "JPEG", exif=exif)
    info = load_image(p).info
    assert info.orientation == 1 and info.has_orientation_tag


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_gives_upright_pixels(tmp_path: Path, orientation: int) -> None:
    upright = subject_photo(240, 160)
    p = save_with_orientation(upright, tmp_path / f"o{orientation}.jpg", orientation)
    li = load_image(p)
    assert li.image.size == (240, 160) and (li.info.width, li.info.height) == (240, 160)
    diff = np.abs(np.asarray(li.image, dtype=np.int16) - np.asarray(upright, dtype=np.int16))
    assert diff.mean() < 4


def test_panasonic_thumbnail_orientation_is_ignored(corpus_dir: Path) -> None:
    info = load_image(corpus_dir / "jpg" / "Panasonic_DMC-FZ30.jpg").info
    assert info.orientation == 1 and (info.width, info.height) == (info.stored_width, info.stored_height)


@pytest.mark.slow
def test_24mp_jpeg_is_scored_without_a_full_decode(tmp_path: Path) -> None:
    """SPEC 2: a 24 MP JPEG is never decoded at full size to be scored; peak memory stays small."""
    big = tmp_path / "24mp.jpg"
    subject_photo(750, 500).resize((6000, 4000), Image.Resampling.BILINEAR).save(big, "JPEG", quality=85)
    code = (
        "import json\n"
        "from PIL import JpegImagePlugin\n"
        "sizes = []\n"
        "orig = JpegImagePlugin.JpegImageFile.load\n"
        "def spy(self):\n    sizes.append(self.size)\n    return orig(self)\n"
        "JpegImagePlugin.JpegImageFile.load = spy\n"
        "from clipcrop_plugin.candidates import parse_aspect\n"
        "from clipcrop_plugin.imaging import load_image\n"
        "from clipcrop_plugin.scoring.heuristic import HeuristicScorer\n"
        "from clipcrop_plugin.suggest import suggest_images\n"
        f"li = load_image({str(big)!r}, min_side=HeuristicScorer.min_side)\n"
        "(s,) = suggest_images([li], HeuristicScorer(), [parse_aspect('1:1')])\n"
        "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "print(json.dumps({'decoded': sizes[0], 'working': li.image.size, 'hwm_kb': hwm, 'ok': s.ok}))\n"
    )
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the peak resident set size")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    import json

    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["ok"] and tuple(res["decoded"]) == (750, 500)  # 1/8 DCT scale
    assert min(res["working"]) == 192
    assert res["hwm_kb"] < 150 * 1024, res  # a full RGB decode alone would be 72 MB on top of imports


def test_16_bit_rgb_and_float_tiff(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    rgb16 = (np.asarray(subject_photo(80, 60), dtype=np.uint16) * 257).astype(np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16)
    tifffile.imwrite(tmp_path / "f32.tif", rgb16[..., 0].astype(np.float32) / 65535)
    for name in ("rgb16.tif", "f32.tif"):
        li = load_image(tmp_path / name)
        arr = np.asarray(li.image, dtype=np.float32)
        assert li.image.mode == "RGB" and li.image.size == (80, 60)
        assert abs(float(arr[..., 0].mean()) - float(rgb16[..., 0].mean()) / 257) < 3, name
