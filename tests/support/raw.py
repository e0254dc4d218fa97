"""Real DNG files for the RAW tests, made here from a public-domain photo.

The photo is scikit-image's ``rocket.jpg`` (SpaceX, released into the public domain). It is
turned into linear light, sampled through an RGGB Bayer filter into 12-bit sensor values and
written by ``pidng`` as an uncompressed CFA DNG that LibRaw and darktable read. An optional
embedded JPEG preview is added the way cameras do it: a second IFD (NewSubfileType 1, JPEG
compression) holding a smaller rendering of the same frame, in the stored orientation.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def source_photo() -> Image.Image:
    """The public-domain photo every test DNG is made from (RGB, 640x427)."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) holds the public-domain photo")
    return Image.open(Path(skdata.__file__).parent / "rocket.jpg").convert("RGB")


def stored_rgb(size: tuple[int, int] = (1280, 852)) -> np.ndarray:
    """The frame the sensor records (float RGB 0..1, gamma-encoded), ``size`` = (w, h)."""
    return np.asarray(source_photo().resize(size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0


def _preview_ifd(buf: bytearray, jpeg: bytes, size: tuple[int, int]) -> None:
    """Append ``jpeg`` and an IFD describing it as the reduced-resolution preview, chained after IFD0."""
    n0 = struct.unpack_from("<H", buf, 8)[0]
    next_ptr = 8 + 2 + n0 * 12
    while len(buf) % 4:
        buf.append(0)
    jpeg_at = len(buf)
    buf += jpeg
    while len(buf) % 4:
        buf.append(0)
    ifd_at = len(buf)
    # (tag, type, value): 3 = SHORT, 4 = LONG; all single values, stored inline.
    tags = [(254, 4, 1), (256, 4, size[0]), (257, 4, size[1]), (258, 3, 8), (259, 3, 7), (262, 3, 6),
            (273, 4, jpeg_at), (277, 3, 3), (278, 4, size[1]), (279, 4, len(jpeg))]
    entries = struct.pack("<H", len(tags))
    for tag, typ, value in tags:
        entries += struct.pack("<HHIHH", tag, typ, 1, value, 0) if typ == 3 else struct.pack("<HHII", tag, typ, 1, value)
    buf += entries + struct.pack("<I", 0)
    struct.pack_into("<I", buf, next_ptr, ifd_at)


def make_dng(path: Path, orientation: int = 1, *, preview: tuple[int, int] | None = None,
             size: tuple[int, int] = (1280, 852), taken: str | None = "2024:05:17 10:11:12",
             maker_note: bytes | None = None, preview_upright: bool = False, margins: tuple[int, int] = (0, 0)) -> Path:
    """Write a real CFA DNG of the rocket photo at ``path`` (stored frame ``size``), with EXIF
    Orientation ``orientation`` and, when ``preview`` = (w, h), an embedded JPEG preview.
    ``margins`` = (x, y) masks that many sensor columns/rows on each side (DNG ActiveArea: what
    LibRaw and darktable both cut off; the preview shows the rest). ``preview_upright`` stores the preview already turned (some cameras do). ``maker_note`` goes into DNGPrivateData as Adobe's ``MakN`` block (the DNG home of maker notes)."""
    pidng_core = pytest.importorskip("pidng.core", reason="pidng (dev extra) writes the test DNGs")
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation
    from pidng.dng import DNGTags, Tag

    rgb = stored_rgb(size)
    linear = rgb ** 2.2
    h, w = linear.shape[:2]
    bayer = np.empty((h, w), np.float32)
    bayer[0::2, 0::2] = linear[0::2, 0::2, 0]
    bayer[0::2, 1::2] = linear[0::2, 1::2, 1]
    bayer[1::2, 0::2] = linear[1::2, 0::2, 1]
    bayer[1::2, 1::2] = linear[1::2, 1::2, 2]
    black, white = 256, 4095
    sensor = (black + bayer * (white - black)).round().astype(np.uint16)
    identity = [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]
    t = DNGTags()
    t.set(Tag.ImageWidth, w)
    t.set(Tag.ImageLength, h)
    t.set(Tag.TileWidth, w)
    t.set(Tag.TileLength, h)
    t.set(Tag.Orientation, orientation)
    t.set(Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array)
    t.set(Tag.SamplesPerPixel, 1)
    t.set(Tag.BitsPerSample, 12)
    t.set(Tag.CFARepeatPatternDim, [2, 2])
    t.set(Tag.CFAPattern, CFAPattern.RGGB)
    t.set(Tag.BlackLevel, black)
    t.set(Tag.WhiteLevel, white)
    t.set(Tag.ColorMatrix1, identity)
    t.set(Tag.CalibrationIlluminant1, CalibrationIlluminant.D65)
    t.set(Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]])
    t.set(Tag.BaselineExposure, [[0, 1]])
    t.set(Tag.Make, "clipcrop")
    t.set(Tag.Model, "Test DNG")
    t.set(Tag.UniqueCameraModel, "clipcrop Test DNG")
    if taken:
        t.set(Tag.DateTime, taken)
    mx, my = margins
    if mx or my:
        t.set(Tag.ActiveArea, [my, mx, h - my, w - mx])
    if maker_note is not None:
        # "Adobe\0MakN", length, original byte order, original offset, then the maker note itself.
        block = b"MM" + struct.pack(">I", 1234) + maker_note
        t.set(Tag.DNGPrivateData, list(b"Adobe\x00MakN" + struct.pack(">I", len(block)) + block))
        t.set(Tag.MakerNoteSafety, 1)
    t.set(Tag.DNGVersion, DNGVersion.V1_4)
    t.set(Tag.DNGBackwardVersion, DNGVersion.V1_2)
    writer = pidng_core.RAW2DNG()
    writer.options(t, path="", compress=False)
    buf = bytearray(writer.convert(sensor, filename=""))
    if preview:
        rendering = Image.fromarray((rgb[my:h - my, mx:w - mx] * 255).round().astype(np.uint8))
        if preview_upright:
            rendering = upright(rendering, orientation)
        rendering = rendering.resize(preview, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        rendering.save(out, "JPEG", quality=90)
        _preview_ifd(buf, out.getvalue(), preview)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(buf))
    return path


def upright(im: Image.Image, orientation: int) -> Image.Image:
    """``im`` (stored frame) as displayed for EXIF ``orientation``."""
    from clipcrop_plugin.imaging import ORIENTATION_TO_UPRIGHT

    op = ORIENTATION_TO_UPRIGHT[orientation]
    return im.transpose(op) if op is not None else im


def correlation(a: Image.Image, b: Image.Image, size: tuple[int, int] = (48, 48)) -> float:
    """Pearson correlation of two images' grey levels at a common small size (structure, not colour)."""
    x = np.asarray(a.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float64).ravel()
    y = np.asarray(b.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float64).ravel()
    x -= x.mean()
    y -= y.mean()
    return float((x @ y) / (np.sqrt((x @ x) * (y @ y)) + 1e-12))
