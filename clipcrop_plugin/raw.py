"""Camera RAW intake through LibRaw (``rawpy``, the ``[raw]`` extra).

A RAW is scored from its embedded JPEG preview when that preview is large enough (it decodes in
milliseconds and it is what the photographer saw on the camera), else from a half-size demosaic.
Either way the sizes and the orientation come from the RAW's own metadata: the *stored* frame is
LibRaw's visible sensor area (``sizes.width`` x ``sizes.height``, after its margins and crops) and
the orientation is LibRaw's ``sizes.flip`` (which LibRaw reads from the RAW's EXIF/maker notes)
turned into an EXIF value. Boxes are in the upright full-resolution frame like every other photo;
the working copy's scale against that frame is exact because a preview is only used when its
aspect ratio is the sensor's.

Nothing here imports ``rawpy`` at module load: without the extra, RAW files fail one by one with
a line that names the fix, and everything else keeps working.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import ImageError
from .photofiles import RAW_SUFFIXES  # lower-case, with the dot

__all__ = ["RAW_SUFFIXES", "RawHeader", "develop", "exif_bytes", "is_raw_file", "load", "load_raw", "preview_image",
           "raw_available", "read_header"]

INSTALL_HINT = "pip install 'clipcrop[raw]'"
# LibRaw's flip code -> EXIF Orientation (dcraw maps EXIF v to "50132467"[v & 7]; this is its inverse).
FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
# A preview whose aspect ratio differs from the sensor's by more than this is a different framing
# (16:9 previews, letterboxed ones): mapping boxes through it would misplace them.
ASPECT_TOLERANCE = 0.01
# Headers that say "RAW" even under an unknown extension (TIFF-based RAWs look like TIFFs and are
# recognised by extension only).
_SIGNATURES = (
    (0, b"FUJIFILMCCD-RAW"),  # RAF
    (0, b"IIRO"), (0, b"IIRS"), (0, b"MMOR"),  # ORF
    (0, b"IIU\x00"),  # RW2 / RWL
    (6, b"HEAPCCDR"),  # CRW
    (0, b"FOVb"),  # X3F
    (4, b"ftypcrx "),  # CR3
)
# What scanning the first bytes for IFD0's Make/Model/DateTime may read (TIFF-based RAWs keep IFD0
# and the EXIF IFD near the start of the file).
_HEADER_BYTES = 1 << 20
_rawpy: Any = None


def is_raw_file(path: Path, head: bytes = b"") -> bool:
    """Whether ``path`` is a camera RAW, by extension or by a RAW-only header signature."""
    if path.suffix.lower() in RAW_SUFFIXES:
        return True
    return any(head[off:off + len(sig)] == sig for off, sig in _SIGNATURES)


def rawpy_module() -> Any:
    """The imported ``rawpy``; :class:`ImportError` when the extra is not installed."""
    global _rawpy
    if _rawpy is None:
        import rawpy  # type: ignore[import-not-found]

        _rawpy = rawpy
    return _rawpy


def raw_available() -> bool:
    """Whether RAW files can be decoded here (``rawpy`` imports)."""
    try:
        rawpy_module()
    except Exception:  # noqa: BLE001 - a broken wheel means "no RAW decoder" just like a missing one
        return False
    return True


@dataclass(frozen=True)
class RawHeader:
    """What a RAW's metadata says, before any pixel is decoded."""

    stored_width: int  # LibRaw's visible sensor frame, before orientation
    stored_height: int
    orientation: int  # EXIF value 1..8 from LibRaw's flip
    taken_at: datetime | None
    make: str | None
    model: str | None
    format: str

    @property
    def upright_size(self) -> tuple[int, int]:
        if self.orientation in (5, 6, 7, 8):
            return self.stored_height, self.stored_width
        return self.stored_width, self.stored_height


def _libraw_version() -> str:
    try:
        return ".".join(str(v) for v in rawpy_module().libraw_version)
    except Exception:  # noqa: BLE001
        return "?"


def _error(path: Path, exc: BaseException) -> ImageError:
    """One line naming the cause and what to do, for every way LibRaw refuses a file."""
    rawpy = rawpy_module()
    detail = str(exc.args[0] if exc.args else exc)
    if detail.startswith("b'") or detail.startswith('b"'):
        detail = detail[2:-1]
    name = type(exc).__name__
    if isinstance(exc, rawpy.LibRawFileUnsupportedError):
        return ImageError(
            f"{path}: LibRaw {_libraw_version()} does not support this camera or RAW variant, or the file is no RAW "
            "(a newer rawpy may: pip install -U rawpy; or convert it with Adobe DNG Converter)", path)
    if isinstance(exc, (rawpy.LibRawIOError, rawpy.LibRawDataError)) or "truncat" in detail.lower():
        return ImageError(
            f"{path}: truncated or corrupt RAW data ({name}: {detail}); copy the file from the card again", path)
    if isinstance(exc, (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError, MemoryError)):
        return ImageError(f"{path}: RAW too large to decode in memory ({name})", path)
    if isinstance(exc, rawpy.LibRawError):
        return ImageError(f"{path}: LibRaw cannot read this RAW ({name}: {detail}); try pip install -U rawpy", path)
    return ImageError(f"{path}: cannot decode RAW ({name}: {detail})", path)


def _open(path: Path) -> Any:
    try:
        rawpy = rawpy_module()
    except Exception:  # noqa: BLE001
        raise ImageError(f"{path}: camera RAW needs the 'raw' extra (LibRaw): {INSTALL_HINT}", path) from None
    try:
        return rawpy.imread(os.fspath(path))
    except Exception as exc:  # noqa: BLE001 - LibRaw's error zoo becomes one line
        raise _error(path, exc) from None


def _ifd0_fields(path: Path) -> tuple[datetime | None, str | None, str | None]:
    """DateTimeOriginal/DateTime, Make and Model from a TIFF-based RAW's IFD0 (None elsewhere)."""
    from .imaging import _exif_fields  # the same rules as every other photo

    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_BYTES)
        if head[:4] not in (b"II*\x00", b"MM\x00*"):
            return None, None, None
        exif = Image.Exif()
        exif.load(head)
        return _exif_fields(exif)
    except Exception:  # noqa: BLE001 - odd EXIF gives no metadata, never a failure
        return None, None, None


def _header(raw: Any, path: Path) -> RawHeader:
    sizes = raw.sizes
    width, height = int(sizes.width), int(sizes.height)
    if width <= 0 or height <= 0:
        raise ImageError(f"{path}: zero-size RAW ({width}x{height})", path)
    orientation = FLIP_TO_ORIENTATION.get(int(sizes.flip) & 7, 1)
    taken, make, model = _ifd0_fields(path)
    if taken is None:
        try:
            stamp = raw.other.timestamp
            taken = stamp if stamp and stamp.year > 1970 else None
        except Exception:  # noqa: BLE001
            taken = None
    return RawHeader(width, height, orientation, taken, make, model, path.suffix.lstrip(".").upper() or "RAW")


def read_header(path: str | os.PathLike[str]) -> RawHeader:
    """The stored size, orientation and capture metadata of a RAW, without decoding its pixels."""
    p = Path(os.fspath(path))
    with _open(p) as raw:
        return _header(raw, p)


def _preview(raw: Any, header: RawHeader, min_side: int) -> tuple[Image.Image, bool] | None:
    """The embedded preview decoded near ``min_side`` and whether it is already upright; None when
    there is none, it is too small, or its framing is not the sensor's."""
    rawpy = rawpy_module()
    try:
        thumb = raw.extract_thumb()
    except Exception:  # noqa: BLE001 - no preview, or one LibRaw cannot hand out: demosaic instead
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            im = Image.open(io.BytesIO(thumb.data))
            if min(im.size) < min_side:
                return None
            full = im.size
            im.draft("RGB", (min_side, min_side))  # a 1/2..1/8 DCT decode, scaled below to the frame
            im.load()
            im = im.convert("RGB")
        except Exception:  # noqa: BLE001 - a broken preview: the sensor data may still be fine
            return None
    elif thumb.format == rawpy.ThumbFormat.BITMAP:
        arr = np.asarray(thumb.data)
        if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < min_side:
            return None
        im = Image.fromarray(arr.astype(np.uint8), "RGB")
        full = im.size
    else:
        return None
    sw, sh = header.stored_width, header.stored_height
    aspect = full[0] / full[1]
    if abs(aspect / (sw / sh) - 1) <= ASPECT_TOLERANCE:
        return im, False
    if header.orientation in (5, 6, 7, 8) and abs(aspect / (sh / sw) - 1) <= ASPECT_TOLERANCE:
        return im, True  # some cameras store the preview already turned
    return None


def _demosaic(raw: Any, path: Path, min_side: int) -> Image.Image:
    """The sensor data developed at half size (full size only when half would be below ``min_side``),
    in the stored frame (LibRaw's own flip switched off so both paths turn the same way)."""
    sizes = raw.sizes
    half = min(int(sizes.width), int(sizes.height)) // 2 >= min_side
    try:
        rgb = raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8, user_flip=0)
    except Exception as exc:  # noqa: BLE001
        raise _error(path, exc) from None
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def load_raw(path: Path, min_side: int) -> tuple[Image.Image, RawHeader, str]:
    """Decode ``path`` for scoring: (the upright RGB working image, the header, ``"preview"`` or
    ``"demosaic"``: which decoded it). Its short side is about ``min_side``, or the RAW's own if smaller."""
    from .imaging import ORIENTATION_TO_UPRIGHT, _check_bomb, _working_size

    with _open(path) as raw:
        header = _header(raw, path)
        got = _preview(raw, header, min_side)
        if got is not None:
            im, upright = got
            source = "preview"
        else:
            w, h = header.stored_width, header.stored_height
            _check_bomb(path, *((w // 2, h // 2) if min(w, h) // 2 >= min_side else (w, h)))
            im, upright, source = _demosaic(raw, path, min_side), False, "demosaic"
    # Scale to the working size of the frame the image is in, then turn it.
    frame = header.upright_size if upright else (header.stored_width, header.stored_height)
    target = _working_size(frame[0], frame[1], min_side)
    if im.size != target:
        im = im.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
    op = ORIENTATION_TO_UPRIGHT[header.orientation]
    if op is not None and not upright:
        im = im.transpose(op)
    # LibRaw hands out previews with an EXIF block of its own (Orientation included): the pixels
    # are upright now, and nothing downstream may turn them again.
    im.info = {}
    return im, header, source


def develop(path: str | os.PathLike[str]) -> tuple[Image.Image, RawHeader]:
    """The full-resolution upright development of a RAW (LibRaw's defaults, the camera's white
    balance): what ``export`` crops. Its size is the header's upright size."""
    p = Path(os.fspath(path))
    with _open(p) as raw:
        header = _header(raw, p)
        try:
            rgb = raw.postprocess(use_camera_wb=True, output_bps=8, user_flip=0)
        except Exception as exc:  # noqa: BLE001
            raise _error(p, exc) from None
    from .imaging import ORIENTATION_TO_UPRIGHT

    im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if im.size != (header.stored_width, header.stored_height):
        im = im.resize((header.stored_width, header.stored_height), Image.Resampling.LANCZOS)
    op = ORIENTATION_TO_UPRIGHT[header.orientation]
    return (im.transpose(op) if op is not None else im), header


def preview_image(path: str | os.PathLike[str], size: int) -> Image.Image:
    """An upright image whose long side is about ``size``, from the preview when it is large enough
    (the review page's thumbnails), else from a half-size demosaic."""
    p = Path(os.fspath(path))
    im, _header_, _source = load_raw(p, min_side=max(1, size))
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    return im


# IFD0 tags that describe the shot; the rest of a RAW's IFD0 describes its sensor data (strips,
# CFA layout, DNG colour tags) and would be nonsense in a JPEG's EXIF.
_DESCRIPTIVE_IFD0 = (0x010E, 0x010F, 0x0110, 0x0112, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132, 0x013B, 0x8298)


def exif_bytes(path: str | os.PathLike[str]) -> bytes | None:
    """The RAW's EXIF as bytes piexif can load, for exported copies: a TIFF-based RAW's IFD0
    (descriptive tags only), EXIF and GPS IFDs, else the EXIF of its embedded JPEG preview; None
    when there is neither."""
    import piexif

    p = Path(os.fspath(path))
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
        if head in (b"II*\x00", b"MM\x00*"):
            loaded = piexif.load(p.read_bytes())
            zeroth = {k: v for k, v in loaded.get("0th", {}).items() if k in _DESCRIPTIVE_IFD0}
            exif = {"0th": zeroth, "Exif": loaded.get("Exif", {}), "GPS": loaded.get("GPS", {}),
                    "1st": {}, "thumbnail": None}
            return piexif.dump(exif)
    except Exception:  # noqa: BLE001 - piexif raises anything on odd EXIF: try the preview's
        pass
    try:
        with _open(p) as raw:
            thumb = raw.extract_thumb()
        if thumb.format == rawpy_module().ThumbFormat.JPEG:
            with Image.open(io.BytesIO(thumb.data)) as im:
                return im.info.get("exif")
    except Exception:  # noqa: BLE001 - no EXIF to keep is a note, not a failure
        return None
    return None


def load(path: Path, min_side: int) -> Any:
    """:func:`clipcrop_plugin.imaging.load_image` for a RAW: a ``LoadedImage`` like any photo's."""
    from .imaging import LoadedImage
    from .results import PhotoInfo

    im, header, _source = load_raw(path, min_side)
    width, height = header.upright_size
    info = PhotoInfo(
        path=str(path),
        width=width,
        height=height,
        stored_width=header.stored_width,
        stored_height=header.stored_height,
        orientation=header.orientation,
        # LibRaw always settles the orientation, so the frame is always defined (tiff:Orientation).
        has_orientation_tag=True,
        format=header.format,
        taken_at=header.taken_at,
        camera_make=header.make,
        camera_model=header.model,
    )
    return LoadedImage(image=im, info=info)
