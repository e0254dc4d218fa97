"""Sidecar file naming (SPEC 6).

``naming="base"`` (the default) gives ``IMG_1234.xmp``: the name Lightroom, Camera Raw and
darktable's Lightroom import read crs: crops from (measured with darktable-cli 4.2: it applies the
crop from ``IMG_1234.xmp`` and ignores crs: values in ``IMG_1234.JPG.xmp``, which is darktable's
own history file). ``naming="ext"`` gives ``IMG_1234.JPG.xmp`` (digiKam's and Immich's default).

A ``NAME.xmp`` is shared by every file called NAME, and Lightroom treats it as the RAW's. Rule: a
non-RAW photo never gets ``NAME.xmp`` when a RAW (or any other photo) with the same basename sits
next to it, and a RAW never shares it with a second RAW; in those cases the writer falls back to
``NAME.EXT.xmp`` and says so in a note (the clash is reported, never settled by overwriting).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError

RAW_EXTENSIONS = frozenset(
    "cr2 cr3 crw nef nrw arw srf sr2 dng raf orf rw2 pef srw raw rwl iiq 3fr x3f erf mef mos kdc dcr".split()
)
PHOTO_EXTENSIONS = frozenset(
    "jpg jpeg jpe png tif tiff heic heif avif webp gif bmp jxl".split()
) | RAW_EXTENSIONS
_RAW_SORTED = tuple(sorted(RAW_EXTENSIONS))
_PHOTO_SORTED = tuple(sorted(PHOTO_EXTENSIONS))
NAMINGS = ("base", "ext")
DEFAULT_NAMING = "base"


def is_raw(path: Path) -> bool:
    """Whether ``path`` has a common camera-RAW extension."""
    return path.suffix.lower().lstrip(".") in RAW_EXTENSIONS


def is_sidecar_name(path: Path) -> bool:
    """Whether ``path`` looks like an XMP sidecar (``*.xmp`` in any case)."""
    return path.suffix.lower() == ".xmp"


def _check_naming(naming: str) -> None:
    if naming not in NAMINGS:
        raise ConfigError(f"sidecar naming must be 'base' or 'ext', not {naming!r}")


def _existing_variant(candidate: Path) -> Path:
    """``candidate`` itself, or an existing ``.XMP`` spelling of it (hosts on Windows write upper case)."""
    if candidate.exists():
        return candidate
    upper = candidate.with_name(candidate.name[:-4] + ".XMP")
    return upper if upper.exists() else candidate


def base_conflicts(photo: Path) -> list[Path]:
    """Siblings that would share ``NAME.xmp`` with ``photo`` and own it before it does."""
    # Probing known names (lower and upper case) costs a few dozen stat calls, where listing the
    # folder would cost O(folder size) per photo.
    # Plain strings and lexists: the pathlib objects cost more than the stat calls themselves.
    found: list[Path] = []
    own = photo.suffix.lower().lstrip(".")
    stem = os.fspath(photo)[: len(os.fspath(photo)) - len(photo.suffix)] + "."
    for ext in _RAW_SORTED if is_raw(photo) else _PHOTO_SORTED:
        if ext == own:
            continue
        for spelled in (ext, ext.upper()):
            if os.path.lexists(stem + spelled):
                found.append(Path(stem + spelled))
                break
    return found


def sidecar_path(photo: Path, naming: str = DEFAULT_NAMING) -> tuple[Path, str | None]:
    """The sidecar to write for ``photo`` and a note when the requested naming was not used."""
    _check_naming(naming)
    photo = Path(photo)
    ext_name = _existing_variant(photo.with_name(photo.name + ".xmp"))
    if naming == "ext":
        return ext_name, None
    conflicts = base_conflicts(photo)
    if conflicts:
        names = ", ".join(sorted(p.name for p in conflicts))
        return ext_name, (f"{photo.stem}.xmp belongs to {names}; wrote {ext_name.name} instead "
                          "(darktable and Lightroom do not read crops from that name)")
    return _existing_variant(photo.with_suffix(".xmp")), None


def sidecar_candidates(photo: Path) -> list[Path]:
    """Both sidecar names clipcrop could have written for ``photo`` (base naming first).

    ``NAME.xmp`` may belong to another file; callers check ``clipcrop:Source`` before touching it.
    """
    photo = Path(photo)
    return [_existing_variant(photo.with_suffix(".xmp")), _existing_variant(photo.with_name(photo.name + ".xmp"))]
