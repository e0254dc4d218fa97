"""Helpers shared by the XMP tests: synthetic oriented photos, suggestions, exiftool calls."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

from clipcrop_plugin.results import Crop, ElementChange, PhotoInfo, Suggestion

# Pillow's transpose that exif_transpose applies for each orientation (stored -> upright).
TO_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# ... and its inverse (upright -> stored): only the two quarter turns differ.
TO_STORED = dict(TO_UPRIGHT)
TO_STORED[6], TO_STORED[8] = Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def transpose(im: Image.Image, method: Image.Transpose | None) -> Image.Image:
    return im if method is None else im.transpose(method)


def oriented_jpeg(path: Path, upright: Image.Image, orientation: int, *, tag: bool = True, **exif0: object) -> Path:
    """Save ``upright`` as a JPEG whose stored pixels need EXIF ``orientation`` to look like it."""
    stored = transpose(upright, TO_STORED[orientation])
    zeroth: dict[int, object] = {piexif.ImageIFD.Make: b"ClipcropTest", piexif.ImageIFD.Model: b"Synthetic 1"}
    if tag:
        zeroth[piexif.ImageIFD.Orientation] = orientation
    zeroth.update(exif0)  # type: ignore[arg-type]
    exif = piexif.dump({"0th": zeroth, "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2024:05:06 07:08:09"}})
    stored.save(path, "JPEG", quality=92, exif=exif)
    return path


def info_for(path: Path) -> PhotoInfo:
    """What intake would record about ``path``: sizes, orientation, tag presence (header only)."""
    with Image.open(path) as im:
        sw, sh = im.size
        exif = im.getexif()
        tag = 0x0112 in exif
        o = int(exif.get(0x0112, 1)) if tag else 1
        o = o if 1 <= o <= 8 else 1
        fmt = im.format or ""
    w, h = (sh, sw) if o >= 5 else (sw, sh)
    return PhotoInfo(str(path), w, h, sw, sh, o, tag, fmt)


def make_suggestion(path: Path, box: tuple[int, int, int, int] | None = None, info: PhotoInfo | None = None,
                    *, score: float = 0.8, aspects: tuple[str, ...] = ("grid",)) -> Suggestion:
    """A scored suggestion whose best crop is ``box`` (default: the central 80%)."""
    info = info or info_for(path)
    w, h = info.width, info.height
    if box is None:
        box = (w // 10, h // 10, w - w // 10, h - h // 10)
    crops: list[Crop] = []
    for aspect in aspects:
        crops.append(Crop(aspect, box, score, 1, score - 0.5,
                          [ElementChange("rule_of_thirds", 0.12), ElementChange("lighting", -0.05),
                           ElementChange("center", 0.03)]))
        crops.append(Crop(aspect, (0, 0, max(1, w // 2), max(1, h // 2)), score - 0.1, 2, score - 0.6))
    crops.append(Crop("full", (0, 0, w, h), 0.5, 1, 0.0))
    return Suggestion(str(path), True, info=info, scorer="heuristic", weights_hash="0123abcd", crops=crops,
                      full_frame=crops[-1])


def exiftool_json(exiftool: str, *args: str | Path) -> list[dict]:
    out = subprocess.run([exiftool, "-j", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip(), out.stderr
    return json.loads(out.stdout)


def jpeg_segments(data: bytes) -> list[bytes]:
    """Raw header segments (each from its marker to its end) plus the scan-and-tail bytes, in order."""
    from clipcrop_plugin.xmp import jpeg

    segs, sos = jpeg.parse_segments(data)
    return [data[s.start:s.end] for s in segs] + [data[sos:]]


def decoded(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).tobytes()
