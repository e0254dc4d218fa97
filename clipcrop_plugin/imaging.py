"""Image intake: open a photo with Pillow, make it upright, small enough to score, and RGB.

:func:`load_image` is the only door through which pixels enter clipcrop. It applies the EXIF
orientation (IFD0 only), decodes JPEGs with ``Image.draft`` at the smallest DCT scale that still
covers ``min_side`` (a 24 MP JPEG is never decoded at full size to be scored), converts every
Pillow mode to RGB and turns every failure into one :class:`~clipcrop_plugin.errors.ImageError`
with a one-line reason.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin, TiffImagePlugin, UnidentifiedImageError

from . import heif as _heif
from . import raw as _raw
from .errors import ImageError
from .results import PhotoInfo
from .safeio import open_regular, show

ORIENTATION_TAG = 0x0112
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003
_DATETIME = 0x0132
_MAKE = 0x010F
_MODEL = 0x0110

# The Pillow transpose that turns the stored pixel array into the displayed (upright) image,
# per EXIF Orientation value; same table as PIL.ImageOps.exif_transpose.
ORIENTATION_TO_UPRIGHT: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Inverse of the above: upright -> stored (only 6 and 8 are not their own inverse).
ORIENTATION_TO_STORED: dict[int, Image.Transpose | None] = {
    **ORIENTATION_TO_UPRIGHT,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}

_HEIF_SUFFIXES = {".heic", ".heif", ".hif", ".avif"}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
_heif_state: bool | None = None  # None: not tried yet


@dataclass
class LoadedImage:
    """An upright RGB working copy of a photo plus what intake learned about the file.

    ``image`` may be smaller than the photo (JPEG draft decoding, downscaling): boxes are always
    expressed in full-resolution upright pixels (``info.width`` x ``info.height``), and
    ``scale`` converts them to ``image`` pixels.
    """

    image: Image.Image
    info: PhotoInfo

    @property
    def scale(self) -> float:
        """``image`` pixels per full-resolution upright pixel (<= 1)."""
        return self.image.width / self.info.width

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Horizontal and vertical scale separately (rounding makes them differ slightly)."""
        return self.image.width / self.info.width, self.image.height / self.info.height


def heif_available() -> bool:
    """Register pillow-heif's opener once if it is installed; report whether HEIC can be read."""
    global _heif_state
    if _heif_state is None:
        try:
            import pillow_heif  # type: ignore[import-not-found]

            pillow_heif.register_heif_opener()
            _heif_state = True
        except Exception:  # any failure (missing, broken wheel) just means "no HEIC decoder"
            _heif_state = False
    return _heif_state


def _looks_like_heif(path: Path, head: bytes) -> bool:
    return path.suffix.lower() in _HEIF_SUFFIXES or (head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS)


def _header_zero_size(head: bytes) -> tuple[int, int] | None:
    """(w, h) from a PNG/GIF/BMP header when one of them is 0 (Pillow refuses such files as unidentified)."""
    import struct

    size = None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        size = struct.unpack(">II", head[16:24])
    elif head[:4] in (b"GIF8",) and len(head) >= 10:
        size = struct.unpack("<HH", head[6:10])
    elif head[:2] == b"BM" and len(head) >= 26:
        size = struct.unpack("<ii", head[18:26])
    if size is not None and (size[0] == 0 or size[1] == 0):
        return int(size[0]), int(size[1])
    return None


def _read_orientation(exif: Image.Exif) -> tuple[int, bool]:
    """Orientation from IFD0 only: some cameras put a different value in the IFD1 thumbnail."""
    try:
        raw = exif.get(ORIENTATION_TAG)
    except Exception:
        return 1, False
    if raw is None:
        return 1, False
    try:
        value = int(raw[0] if isinstance(raw, (tuple, list)) else raw)
    except (TypeError, ValueError, IndexError):
        return 1, True
    return (value if 1 <= value <= 8 else 1), True


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _parse_exif_datetime(value: object) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    return None


def _exif_fields(exif: Image.Exif) -> tuple[datetime | None, str | None, str | None]:
    """DateTimeOriginal (else DateTime), Make, Model; odd EXIF gives ``None``, never an exception."""
    taken = None
    try:
        taken = _parse_exif_datetime(exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL))
    except Exception:
        taken = None
    if taken is None:
        try:
            taken = _parse_exif_datetime(exif.get(_DATETIME))
        except Exception:
            taken = None
    make = model = None
    try:
        make = _text(exif.get(_MAKE))
        model = _text(exif.get(_MODEL))
    except Exception:
        pass
    return taken, make, model


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P" and "transparency" in im.info or mode in ("PA", "RGBa", "La"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        # 16/32-bit integer or float: map the data's own range to 8 bits.
        arr = np.asarray(im, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[..., 0]
        finite = arr[np.isfinite(arr)]
        hi = float(finite.max()) if finite.size else 0.0
        lo = float(finite.min()) if finite.size else 0.0
        if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535 and hi > 255):
            arr = arr / 257.0
        elif mode == "F" and lo >= 0 and hi <= 1.0:
            arr = arr * 255.0
        elif hi > 255 or lo < 0:
            arr = (arr - lo) * (255.0 / max(hi - lo, 1e-6))
        arr = np.nan_to_num(np.clip(arr, 0, 255), nan=0.0).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    return im.convert("RGB")


def _check_bomb(path: Path, width: int, height: int) -> None:
    """Refuse to decode more than Pillow's MAX_IMAGE_PIXELS (its decompression-bomb limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise ImageError(
            f"{show(path)}: refused as a possible decompression bomb ({width}x{height} exceeds {limit} pixels)", path
        )


def _working_size(width: int, height: int, min_side: int) -> tuple[int, int]:
    """(w, h) with the short side about ``min_side``, aspect kept; never upscales."""
    short = min(width, height)
    if short <= min_side:
        return width, height
    f = min_side / short
    return max(1, round(width * f)), max(1, round(height * f))


MAX_FILE_BYTES = 4 << 30  # no photo clipcrop reads is larger; a bigger "photo" is refused unread


@contextmanager
def opened_image(source: str | os.PathLike[str], *, full_decode: bool = False) -> Iterator[Image.Image]:
    """Pillow's lazy image of ``source``, opened through the one intake door.

    Only a regular file is opened (a FIFO, a device or a directory is refused before Pillow sees
    it), its size is bounded, and more pixels than Pillow's ``MAX_IMAGE_PIXELS`` are refused -
    except for a JPEG, whose limit :func:`load_image` applies after ``draft`` picked the decoded
    size (``full_decode=True``: the caller decodes every pixel, so a JPEG is checked too). Every failure is one :class:`ImageError`; the file is closed when the block ends.
    """
    path = Path(os.fspath(source))
    if not os.path.lexists(path):
        raise ImageError(f"{show(path)}: no such file", path)
    fh = open_regular(path, max_bytes=MAX_FILE_BYTES, error=lambda msg: ImageError(msg, path))
    with fh:
        try:
            head = fh.read(32)
            fh.seek(0)
        except OSError as exc:
            raise ImageError(f"{show(path)}: cannot read ({exc.strerror or exc})", path) from None
        if not head:
            raise ImageError(f"{show(path)}: empty file (0 bytes)", path)
        heif = _looks_like_heif(path, head)
        if heif:
            heif_available()
        try:
            with warnings.catch_warnings():
                # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; the limit is enforced
                # below, on the pixels that will actually be decoded (a JPEG at up to 1/8 scale).
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(fh)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"{show(path)}: refused as a possible decompression bomb ({exc})", path) from None
        except UnidentifiedImageError:
            zero = _header_zero_size(head)
            if zero:
                raise ImageError(f"{show(path)}: zero-size image ({zero[0]}x{zero[1]})", path) from None
            if heif and not heif_available():
                raise ImageError(
                    f"{show(path)}: HEIC/HEIF is not supported without a decoder (pip install pillow-heif)", path
                ) from None
            raise ImageError(f"{show(path)}: not an image or an unsupported format", path) from None
        except OSError as exc:
            raise ImageError(f"{show(path)}: cannot open ({exc})", path) from None
        except Exception as exc:  # Pillow plugins raise a zoo of types on hostile headers
            raise ImageError(f"{show(path)}: cannot open ({type(exc).__name__}: {exc})", path) from None
        with im:
            stored_w, stored_h = im.size
            if stored_w <= 0 or stored_h <= 0:
                raise ImageError(f"{show(path)}: zero-size image ({stored_w}x{stored_h})", path)
            if full_decode or not isinstance(im, JpegImagePlugin.JpegImageFile):
                _check_bomb(path, stored_w, stored_h)
            yield im


def load_image(source: str | os.PathLike[str], *, min_side: int = 256) -> LoadedImage:
    """Open ``source`` and return its upright RGB working copy (short side about ``min_side``).

    Raises :class:`ImageError` with a one-line reason for a missing or unreadable path, a
    directory, a FIFO or device, an empty file, truncated data, something that is not an image,
    an unsupported format (HEIC without pillow-heif), a decompression bomb or a zero-size image.
    """
    path = Path(os.fspath(source))
    # Camera RAW goes to LibRaw (which opens the file by path itself), after the same door:
    # only a regular, non-empty file is looked at.
    if not os.path.lexists(path):
        raise ImageError(f"{show(path)}: no such file", path)
    with open_regular(path, max_bytes=MAX_FILE_BYTES, error=lambda msg: ImageError(msg, path)) as fh:
        try:
            head = fh.read(32)
        except OSError as exc:
            raise ImageError(f"{show(path)}: cannot read ({exc.strerror or exc})", path) from None
    if head and _raw.is_raw_file(path, head):
        return _raw.load(path, min_side)
    with opened_image(path) as im:
        return _load_opened(im, path, min_side)


def stored_pixel_size(im: Image.Image) -> tuple[int, int]:
    """The stored (pre-orientation) pixel size of an opened image. For a TIFF it comes from the
    header: Pillow >= 11 reports (and loads) TIFFs already turned by their orientation tag,
    where every other format keeps the stored frame."""
    if isinstance(im, TiffImagePlugin.TiffImageFile):
        w, h = im.tag_v2.get(256), im.tag_v2.get(257)
        if isinstance(w, int) and isinstance(h, int):
            return w, h
    return im.size


def _load_opened(im: Image.Image, path: Path, min_side: int) -> LoadedImage:
    stored_w, stored_h = stored_pixel_size(im)
    if stored_w <= 0 or stored_h <= 0:
        raise ImageError(f"{path}: zero-size image ({stored_w}x{stored_h})", path)
    is_jpeg = isinstance(im, JpegImagePlugin.JpegImageFile)  # JPEG and MPO (phone multi-picture files)
    if not is_jpeg:
        _check_bomb(path, stored_w, stored_h)
    try:
        exif = im.getexif()
    except Exception:
        exif = Image.Exif()
    orientation, has_tag = _read_orientation(exif)
    taken_at, make, model = _exif_fields(exif)
    fmt = im.format or path.suffix.lstrip(".").upper() or "unknown"
    upright_w, upright_h = (stored_h, stored_w) if orientation in (5, 6, 7, 8) else (stored_w, stored_h)

    target_w, target_h = _working_size(stored_w, stored_h, min_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if is_jpeg:
                # draft picks the largest DCT scale (1/2, 1/4, 1/8) keeping both sides >= the request.
                im.draft("RGB", (target_w, target_h))
                _check_bomb(path, *im.size)
            # HEIF: its thumbnail when that is large enough, instead of decoding the whole primary.
            small = _heif.smallest_thumbnail(str(path), min_short=min_side, primary_size=(stored_w, stored_h)) \
                if im.format in ("HEIF", "HEIC") and os.path.isfile(path) else None
            if small is None:
                im.load()
            work = _to_rgb(small if small is not None else im)
            if has_tag and isinstance(im, TiffImagePlugin.TiffImageFile) and ORIENTATION_TAG not in im.tag_v2:
                # Pillow turned it upright on load (and dropped the tag): back to the stored frame,
                # so the sizes and the single transpose below hold for every format.
                op_back = ORIENTATION_TO_STORED[orientation]
                work = work if op_back is None else work.transpose(op_back)
            if work.size != (target_w, target_h) and min(work.size) > min_side:
                work = work.resize((target_w, target_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
            op = ORIENTATION_TO_UPRIGHT[orientation]
            if op is not None:
                work = work.transpose(op)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({exc})", path) from None
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise ImageError(f"{path}: truncated image data ({msg})", path) from None
        raise ImageError(f"{path}: cannot decode ({msg})", path) from None
    except MemoryError:
        raise ImageError(f"{path}: too large to decode in memory", path) from None
    except Exception as exc:
        raise ImageError(f"{path}: cannot decode ({type(exc).__name__}: {exc})", path) from None
    if work.width <= 0 or work.height <= 0:
        raise ImageError(f"{path}: zero-size image", path)

    info = PhotoInfo(
        path=str(path),
        width=upright_w,
        height=upright_h,
        stored_width=stored_w,
        stored_height=stored_h,
        orientation=orientation,
        has_orientation_tag=has_tag,
        format=fmt,
        taken_at=taken_at,
        camera_make=make,
        camera_model=model,
    )
    return LoadedImage(image=work, info=info)


def working_box(loaded: LoadedImage, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Map a full-resolution upright box to ``loaded.image`` pixels (outward rounding)."""
    sx, sy = loaded.scale_xy
    x1, y1, x2, y2 = box
    return (
        int(math.floor(x1 * sx)),
        int(math.floor(y1 * sy)),
        min(loaded.image.width, int(math.ceil(x2 * sx))),
        min(loaded.image.height, int(math.ceil(y2 * sy))),
    )
