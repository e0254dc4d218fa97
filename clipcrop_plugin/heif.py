"""HEIC/HEIF through the smallest image that is large enough (the ``[heic]`` extra, pillow-heif).

Phones store a 12-48 MP primary image as a grid of HEVC tiles, and most also store a thumbnail
(an iPhone's is 320x240). Scoring needs a short side of 192-224 px and the review page 256 px
thumbnails, so when a thumbnail is that large it is decoded instead of the primary image: tens of
milliseconds and a few MB instead of seconds and hundreds of MB. libheif applies the same
rotation/mirror properties to a thumbnail as to its primary image, and a thumbnail is only used
when its aspect ratio is the primary's, so boxes map to the full frame exactly as from the primary.
"""

from __future__ import annotations

import os
from typing import Any

from PIL import Image

ASPECT_TOLERANCE = 0.01


def smallest_thumbnail(path: str | os.PathLike[str], *, min_short: int = 0, min_long: int = 0,
                       primary_size: tuple[int, int] | None = None) -> Image.Image | None:
    """The HEIF's smallest thumbnail whose short side is >= ``min_short`` and long side >= ``min_long``,
    decoded as a Pillow image; None when there is none (or pillow-heif is missing, or the file is odd),
    so that the caller decodes the primary image as before."""
    try:
        import pillow_heif  # type: ignore[import-not-found]

        heif: Any = pillow_heif.open_heif(os.fspath(path), convert_hdr_to_8bit=True)
        primary = heif[heif.primary_index]
        pw, ph = primary_size or primary.size
        choices = []
        for i in range(len(primary.info.get("thumbnails") or [])):
            thumb = primary.get_thumbnail(i)
            tw, th = thumb.size
            if min(tw, th) < min_short or max(tw, th) < min_long:
                continue
            if abs((tw / th) / (pw / ph) - 1) > ASPECT_TOLERANCE:
                continue  # a different framing: boxes would not map back
            choices.append((tw * th, i, thumb))
        if not choices:
            return None
        _area, _i, best = min(choices, key=lambda c: c[:2])
        im = best.to_pillow()
        im.info.pop("exif", None)  # the primary's EXIF describes the frame; never turn twice
        return im
    except Exception:  # noqa: BLE001 - any trouble means "decode the primary image as before"
        return None
