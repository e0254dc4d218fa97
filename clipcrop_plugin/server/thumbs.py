"""Upright JPEG previews of library photos, generated once and kept in the data folder.

A thumbnail is keyed by the photo's content hash and the requested size bucket, so a moved or
renamed photo reuses its thumbnails and an edited one gets new ones. Sizes snap to a few buckets
so that a client (or a fuzzer) cannot fill the disk with one file per pixel size.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from PIL import Image, ImageOps

from .. import heif as _heif
from .. import raw as _raw
from ..errors import ImageError

SIZES: tuple[int, ...] = (256, 512, 1024, 1600)
QUALITY = 82


def snap_size(size: int) -> int:
    """The smallest bucket that is at least ``size`` (the largest bucket for anything bigger)."""
    for bucket in SIZES:
        if size <= bucket:
            return bucket
    return SIZES[-1]


class ThumbnailCache:
    """Makes and finds thumbnails under ``root`` (``<data dir>/cache/thumbs`` by default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path_for(self, content_hash: str, size: int) -> Path:
        key = "".join(ch for ch in content_hash.lower() if ch.isalnum())[:64] or "nohash"
        return self.root / key[:2] / f"{key}-{snap_size(size)}.jpg"

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def get(self, source: Path, content_hash: str, size: int) -> Path:
        """The cached thumbnail of ``source``, generating it first when it is missing.

        Raises :class:`ImageError` when the photo cannot be decoded (or has gone).
        """
        target = self.path_for(content_hash, size)
        if target.exists():
            return target
        with self._lock(str(target)):
            if target.exists():  # another request made it while we waited
                return target
            self._render(Path(source), target, snap_size(size))
        return target

    def read(self, source: Path, content_hash: str, size: int) -> bytes:
        """The thumbnail's JPEG bytes (made first if needed; remade if it vanished meanwhile)."""
        for _ in range(3):
            try:
                return self.get(source, content_hash, size).read_bytes()
            except FileNotFoundError:
                continue
        raise ImageError(f"cannot keep a preview of {Path(source).name} in {self.root}", source)

    @staticmethod
    def _render(source: Path, target: Path, size: int) -> None:
        try:
            with _open_small(source, size) as im:
                # draft() lets libjpeg decode at 1/2..1/8 scale: a 24 MP photo never decodes in full.
                im.draft("RGB", (size, size))
                im = ImageOps.exif_transpose(im)
                im.thumbnail((size, size), Image.Resampling.LANCZOS)
                if im.mode != "RGB":
                    im = _flatten(im)
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        im.save(fh, "JPEG", quality=QUALITY, optimize=True, progressive=True)
                    os.replace(tmp, target)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"cannot make a preview of {source.name}: {exc}", source) from exc


def _open_small(source: Path, size: int) -> Image.Image:
    """The photo, or a smaller image of it that still covers ``size``: a RAW's embedded preview, a
    HEIF's thumbnail; everything else as Pillow opens it (JPEGs then draft-decode)."""
    if _raw.is_raw_file(source):
        return _raw.preview_image(source, size)
    if source.suffix.lower() in (".heic", ".heif", ".hif"):
        small = _heif.smallest_thumbnail(source, min_long=size)
        if small is not None:
            return small
    return Image.open(source)


def _flatten(im: Image.Image) -> Image.Image:
    """RGB for any mode: alpha over white, 16-bit and palette images converted."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        return im.point(lambda v: v / 256).convert("RGB")
    return im.convert("RGB")
