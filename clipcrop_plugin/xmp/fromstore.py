"""Rebuild a :class:`Suggestion` from the crop database, so ``xmp write`` need not score again.

The database keeps boxes in upright pixels plus the EXIF orientation; the stored size and whether
the file carries an orientation tag (which decides ``tiff:Orientation``) are read from the
photo's header, which also proves the file is still the one that was scored (content hash).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..hashing import content_hash
from ..imaging import stored_pixel_size
from ..results import Crop, PhotoInfo, Suggestion

if TYPE_CHECKING:
    from ..store import Store


def _orientation_tag(path: Path) -> tuple[bool, int, tuple[int, int]] | None:
    from ..raw import is_raw_file, read_header

    if is_raw_file(path):  # LibRaw's frame and flip, exactly as intake saw them
        try:
            header = read_header(path)
        except Exception:  # noqa: BLE001 - unreadable now: let the scorer report why
            return None
        return True, header.orientation, (header.stored_width, header.stored_height)
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            size = stored_pixel_size(im)
    except Exception:  # noqa: BLE001 - any decoder failure means "cannot use the stored scores"
        return None
    tag = 0x0112 in exif
    o = int(exif.get(0x0112, 1) or 1) if tag else 1
    return tag, (o if 1 <= o <= 8 else 1), size


def suggestion_from_store(store: Store, path: str | os.PathLike[str],
                          local: str | os.PathLike[str] | None = None) -> Suggestion | None:
    """The stored active-run suggestion for ``path``, or None when it is unknown, unscored or changed.

    ``local``: where this machine reads the file the store knows as ``path`` (a queue worker
    whose NAS mount differs); the suggestion keeps the store's ``path``.
    """
    from ..errors import StoreError

    if local is None:
        photo = Path(path).resolve()
        known = str(photo)
    else:
        known, photo = str(path), Path(local).resolve()
    try:
        detail = store.photo_detail(known)
    except StoreError:
        return None
    summary = detail.photo
    if detail.run is None or not detail.candidates or summary.width is None or summary.height is None:
        return None
    try:
        if summary.content_hash != content_hash(photo):
            return None
    except Exception:  # noqa: BLE001 - unreadable now: let the scorer report why
        return None
    header = _orientation_tag(photo)
    if header is None:
        return None
    tag, orientation, stored = header
    if orientation != (detail.orientation or 1):
        return None
    info = PhotoInfo(known, summary.width, summary.height, stored[0], stored[1], orientation, tag,
                     detail.format or "", summary.taken_at, summary.camera_make, summary.camera_model)
    crops = [Crop(c.aspect, tuple(c.box), c.score, c.rank, c.improvement, list(c.explanation),  # type: ignore[arg-type]
                  c.elements, c.changes) for c in detail.candidates]
    full = next((c for c in crops if c.aspect == "full"), None)
    return Suggestion(known, True, info=info, scorer=detail.run.scorer, weights_hash=detail.run.weights_hash,
                      device=detail.run.device, crops=crops, full_frame=full, subjects=list(detail.subjects))
