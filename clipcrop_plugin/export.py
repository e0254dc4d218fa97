"""Cropped copies of photos, with the original's EXIF carried over (piexif).

The original file is only ever read. The copy's EXIF gets Orientation 1 (its pixels are already
upright), PixelXDimension/PixelYDimension set to the copy's size, and no thumbnail (it would show
the uncropped photo). EXIF that piexif cannot re-encode is dropped with a note instead of failing
the export. An existing file is never overwritten: a free name is picked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import piexif
from PIL import Image, ImageOps

from .errors import ImageError
from .imaging import opened_image
from .raw import develop, is_raw_file
from .raw import exif_bytes as raw_exif_bytes
from .results import Box
from .safeio import AtomicFile, show

if TYPE_CHECKING:
    from .store import Store



@dataclass
class ExportResult:
    """Where a cropped copy went, its size, and a note when its EXIF could not be kept."""

    source: str
    path: Path
    width: int
    height: int
    exif_note: str | None = None


def _suffix_for(fmt: str | None) -> tuple[str, str]:
    if fmt == "PNG":
        return ".png", "PNG"
    return ".jpg", "JPEG"


def _exif_for_copy(raw: bytes | None, size: tuple[int, int]) -> tuple[bytes | None, str | None]:
    if not raw:
        return None, None
    try:
        exif = piexif.load(raw)
        exif["0th"][piexif.ImageIFD.Orientation] = 1
        exif["Exif"][piexif.ExifIFD.PixelXDimension] = size[0]
        exif["Exif"][piexif.ExifIFD.PixelYDimension] = size[1]
        exif["1st"] = {}
        exif["thumbnail"] = None
        # A maker note points into the original's byte layout; moved, it is garbage.
        exif["Exif"].pop(piexif.ExifIFD.MakerNote, None)
        return piexif.dump(exif), None
    except Exception as exc:  # noqa: BLE001 - piexif raises anything on odd EXIF; the copy matters more
        return None, f"EXIF not copied: piexif could not re-encode it ({type(exc).__name__}: {exc})"


def export_crop(source: str | os.PathLike[str], box: Box, out_dir: str | os.PathLike[str], *,
                name: str | None = None, max_size: int | None = None, quality: int = 92,
                expect_size: tuple[int, int] | None = None) -> ExportResult:
    """Write the ``box`` (upright pixels) of ``source`` as a new file in ``out_dir``.

    ``max_size`` bounds the long side of the copy. ``expect_size`` (upright width, height) guards
    against a file that changed since it was scored. Raises :class:`ImageError` on unreadable input.
    """
    src = Path(source)
    out = Path(out_dir)
    try:
        if is_raw_file(src):
            # Developed with LibRaw's defaults (as-shot white balance), written as a JPEG.
            upright, _header = develop(src)
            fmt, raw_exif, icc = "JPEG", raw_exif_bytes(src), None
        else:
            # The intake door: regular files only, the same pixel (bomb) limit as scoring.
            with opened_image(src, full_decode=True) as im:
                fmt = im.format
                raw_exif = im.info.get("exif")
                icc = im.info.get("icc_profile")
                upright = ImageOps.exif_transpose(im)
                upright.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{show(src)}: cannot read ({exc})", src) from None
    if expect_size is not None and upright.size != tuple(expect_size):
        raise ImageError(
            f"{src}: is {upright.width}x{upright.height} but was scored at {expect_size[0]}x{expect_size[1]};"
            " scan it again", src)
    x1, y1, x2, y2 = (int(v) for v in box)
    if not (0 <= x1 < x2 <= upright.width and 0 <= y1 < y2 <= upright.height):
        raise ImageError(f"{src}: crop {x1},{y1},{x2},{y2} is outside the {upright.width}x{upright.height} photo", src)
    crop = upright.crop((x1, y1, x2, y2))
    if max_size and max(crop.size) > max_size:
        crop.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    suffix, save_fmt = _suffix_for(fmt)
    if save_fmt == "JPEG" and crop.mode not in ("RGB", "L", "CMYK"):
        crop = crop.convert("RGB")
    exif_bytes, note = _exif_for_copy(raw_exif, crop.size)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create {show(out)}: {exc.strerror or exc}") from None
    target = out / f"{name or src.stem + '.crop'}{suffix}"
    params: dict[str, object] = {}
    if icc:
        params["icc_profile"] = icc
    if save_fmt == "JPEG":
        params["quality"] = quality
    # unique: the copy takes a free name (NAME-2, -3...), never replacing a file or following a link.
    atomic = AtomicFile(target, unique=True, error=ImageError)
    with atomic as fh:
        try:
            crop.save(fh, save_fmt, **params, **({"exif": exif_bytes} if exif_bytes else {}))
        except (ValueError, OSError) as exc:
            if exif_bytes is None:
                raise
            fh.seek(0)
            fh.truncate()
            crop.save(fh, save_fmt, **params)
            note = f"EXIF not copied: the encoder refused it ({exc})"
    return ExportResult(str(src), atomic.path, crop.width, crop.height, note)


def export_from_store(store: Store, photo: str | int, out_dir: str | os.PathLike[str], *,
                      aspect: str | None = None, max_size: int | None = None) -> ExportResult:
    """Export the stored best crop of ``photo`` (of set ``aspect`` when given)."""
    from .errors import StoreError

    detail = store.photo_detail(photo)
    crop = detail.best.get(aspect) if aspect else detail.photo.crop
    if crop is None:
        have = ", ".join(detail.best) or "none"
        raise StoreError(f"{detail.photo.path}: no stored crop" + (f" for aspect {aspect} (has: {have})" if aspect else ""))
    size = (detail.photo.width, detail.photo.height) if detail.photo.width and detail.photo.height else None
    tag = crop.aspect.replace(":", "x")
    return export_crop(detail.photo.path, crop.box, out_dir, name=f"{Path(detail.photo.path).stem}.crop-{tag}",
                       max_size=max_size, expect_size=size)
