"""Upright JPEG previews of library photos, generated once and kept in the data folder.

A thumbnail is keyed by the photo's content hash and the requested size bucket, so a moved or
renamed photo reuses its thumbnails and an edited one gets new ones. Sizes snap to a few buckets
so that a client (or a fuzzer) cannot fill the disk with one file per pixel size.

Photos are decoded through intake (:func:`~clipcrop_plugin.imaging.load_image`): regular files
only, the same decompression-bomb limit, JPEGs decoded at a reduced DCT scale. A photo that
cannot be previewed is remembered (per file state), so a page full of ``<img>`` tags pointing
at it costs one decode, not one per request.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from ..errors import ImageError
from ..imaging import load_image
from ..safeio import AtomicFile

SIZES: tuple[int, ...] = (256, 512, 1024, 1600)
QUALITY = 82
MAX_FAILURES = 4096  # remembered failures (oldest forgotten first)


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
        # (source, size, mtime_ns, bytes) -> the one-line reason; a changed file is tried again.
        self._failures: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()

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
            key = self._failure_key(Path(source), snap_size(size))
            with self._guard:
                known = self._failures.get(key) if key else None
            if known is not None:
                raise ImageError(known, source)
            try:
                self._render(Path(source), target, snap_size(size))
            except ImageError as exc:
                if key is not None:
                    with self._guard:
                        self._failures[key] = str(exc)
                        while len(self._failures) > MAX_FAILURES:
                            self._failures.popitem(last=False)
                raise
        return target

    @staticmethod
    def _failure_key(source: Path, size: int) -> tuple[str, int, int, int] | None:
        try:
            st = os.stat(source)
        except OSError:
            return None  # gone: nothing to remember, and the error says so
        return str(source), size, st.st_mtime_ns, st.st_size

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
            # Intake decodes upright RGB with the short side near ``size`` (JPEG draft: a 24 MP
            # photo never decodes in full) and refuses what scanning refuses.
            im = load_image(source, min_side=size).image
        except ImageError as exc:
            raise ImageError(f"cannot make a preview of {source.name}: {exc}", source) from None
        try:
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            if im.mode != "RGB":
                im = _flatten(im)
            target.parent.mkdir(parents=True, exist_ok=True)
            with AtomicFile(target, sync=False, error=ImageError) as fh:
                im.save(fh, "JPEG", quality=QUALITY, optimize=True, progressive=True)
        except (OSError, ValueError) as exc:
            raise ImageError(f"cannot make a preview of {source.name}: {exc}", source) from None


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
