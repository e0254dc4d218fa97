"""Map crops between the upright (EXIF-applied) frame and the stored pixel frame (SPEC 6).

Camera Raw ``crs:Crop*`` values are fractions of the STORED pixel array, while every box clipcrop
scores lives in the upright frame. The table below is SPEC 6's; the inverse exists so a sidecar
written here (or by Lightroom) can be shown on the upright image again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import MetadataError

if TYPE_CHECKING:
    from ..imaging import LoadedImage

Fractions = tuple[float, float, float, float]  # left, top, right, bottom in 0..1

# upright (l, t, r, b) -> stored (CropLeft, CropTop, CropRight, CropBottom), SPEC 6 table.
_TO_STORED: dict[int, Callable[[float, float, float, float], Fractions]] = {
    1: lambda l, t, r, b: (l, t, r, b),
    2: lambda l, t, r, b: (1 - r, t, 1 - l, b),
    3: lambda l, t, r, b: (1 - r, 1 - b, 1 - l, 1 - t),
    4: lambda l, t, r, b: (l, 1 - b, r, 1 - t),
    5: lambda l, t, r, b: (t, l, b, r),
    6: lambda l, t, r, b: (t, 1 - r, b, 1 - l),
    7: lambda l, t, r, b: (1 - b, 1 - r, 1 - t, 1 - l),
    8: lambda l, t, r, b: (1 - b, l, 1 - t, r),
}

# Rotating 90 degrees one way is undone by rotating the other way; the six other orientations
# (identity, flips, 180, transpose, transverse) are their own inverses.
_INVERSE = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


def _check(orientation: int) -> int:
    try:
        o = int(orientation)
    except (TypeError, ValueError):
        raise MetadataError(f"invalid EXIF orientation {orientation!r}") from None
    if o not in _TO_STORED:
        raise MetadataError(f"invalid EXIF orientation {orientation!r} (expected 1..8)")
    return o


def _clamp(v: float) -> float:
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else v


def upright_to_stored(fractions: Fractions, orientation: int) -> Fractions:
    """Upright-frame crop fractions -> ``crs`` stored-frame fractions for EXIF ``orientation``."""
    l, t, r, b = (_clamp(float(v)) for v in fractions)
    return _TO_STORED[_check(orientation)](l, t, r, b)


def stored_to_upright(fractions: Fractions, orientation: int) -> Fractions:
    """``crs`` stored-frame fractions -> upright-frame fractions (inverse of :func:`upright_to_stored`)."""
    l, t, r, b = (_clamp(float(v)) for v in fractions)
    return _TO_STORED[_INVERSE[_check(orientation)]](l, t, r, b)


def stored_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """The stored pixel array's (width, height) given the upright size: 5..8 swap the axes."""
    return (height, width) if _check(orientation) >= 5 else (width, height)


def box_to_crs(box: tuple[int, int, int, int], width: int, height: int, orientation: int) -> Fractions:
    """An upright pixel box (x2/y2 exclusive) of a ``width`` x ``height`` upright image -> crs fractions."""
    if width <= 0 or height <= 0:
        raise MetadataError(f"invalid image size {width}x{height}")
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise MetadataError(f"crop box {tuple(box)} lies outside the {width}x{height} image")
    return upright_to_stored((x1 / width, y1 / height, x2 / width, y2 / height), orientation)


def reorient(loaded: LoadedImage, orientation: int) -> LoadedImage:
    """``loaded`` turned into the frame EXIF ``orientation`` gives its stored pixels.

    For a photo whose host keeps the rotation in XMP (``tiff:Orientation`` in a sidecar, no EXIF
    tag, or one the user changed in Lightroom), so the crop is scored on what the host shows.
    ``info.has_orientation_tag`` still says whether the file itself has the tag.
    """
    from dataclasses import replace

    from ..imaging import ORIENTATION_TO_STORED, ORIENTATION_TO_UPRIGHT

    o = _check(orientation)
    info = loaded.info
    if o == info.orientation:
        return loaded
    image = loaded.image
    for op in (ORIENTATION_TO_STORED[info.orientation], ORIENTATION_TO_UPRIGHT[o]):
        if op is not None:
            image = image.transpose(op)
    width, height = stored_size(info.stored_width, info.stored_height, o)
    return type(loaded)(image=image, info=replace(info, orientation=o, width=width, height=height))
