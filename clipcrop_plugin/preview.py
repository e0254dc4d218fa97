"""Preview images: the photo (upright, downsized) with its suggested crops drawn on it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from .errors import ImageError
from .imaging import load_image
from .results import Suggestion

# One colour per candidate set, in the order the sets appear; the overall best is drawn thickest.
PALETTE = ((255, 204, 0), (0, 200, 255), (255, 80, 160), (120, 255, 90), (255, 140, 0), (190, 120, 255))


def render_preview(source: str | os.PathLike[str], suggestion: Suggestion, *, max_side: int = 1200) -> Image.Image:
    """The upright photo (long side <= ``max_side``) with the best crop of each set outlined.

    Everything outside the overall best crop is dimmed, so the suggestion reads at a glance.
    """
    if not suggestion.ok or suggestion.info is None:
        raise ImageError(f"{suggestion.path}: no suggestion to draw ({suggestion.error})")
    info = suggestion.info
    # min_side is a short-side target: pick it so the long side lands near max_side.
    short_target = max(1, round(max_side * min(info.width, info.height) / max(info.width, info.height)))
    loaded = load_image(source, min_side=short_target)
    img = loaded.image.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    sx, sy = img.width / info.width, img.height / info.height

    def scaled(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = box
        return round(x1 * sx), round(y1 * sy), max(round(x1 * sx) + 1, round(x2 * sx) - 1), max(
            round(y1 * sy) + 1, round(y2 * sy) - 1
        )

    best = suggestion.best()
    if best is not None:
        shade = Image.new("RGB", img.size, (0, 0, 0))
        mask = Image.new("L", img.size, 110)
        ImageDraw.Draw(mask).rectangle(scaled(best.box), fill=0)
        img = Image.composite(shade, img, mask)
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    for k, aspect in enumerate(suggestion.aspects()):
        crop = suggestion.best(aspect)
        if crop is None:
            continue
        color = PALETTE[k % len(PALETTE)]
        box = scaled(crop.box)
        draw.rectangle(box, outline=color, width=width * (2 if crop is best else 1))
        label = f"{aspect} {crop.score:.3f} ({crop.improvement:+.3f})"
        tx, ty = box[0] + width + 2, box[1] + width + 2
        draw.rectangle((tx - 2, ty - 1, tx + 7 * len(label), ty + 12), fill=(0, 0, 0))
        draw.text((tx, ty), label, fill=color)
    return img


def save_preview(image: Image.Image, out: str | os.PathLike[str]) -> Path:
    """Write ``image`` as a JPEG at ``out`` atomically (temp file + rename); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".preview-", suffix=".jpg", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, "JPEG", quality=88)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
