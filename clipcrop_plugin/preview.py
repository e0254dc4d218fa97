"""Preview images: the photo (upright, downsized) with its suggested crops drawn on it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .errors import ImageError
from .imaging import load_image
from .results import Crop, Subject, Suggestion

# One colour per candidate set, in the order the sets appear; the overall best is drawn thickest.
PALETTE = ((255, 204, 0), (0, 200, 255), (255, 80, 160), (120, 255, 90), (255, 140, 0), (190, 120, 255))
# Subjects are drawn thin, in colours of their own, so they never read as crops.
SUBJECT_COLORS = {"face": (255, 255, 255), "profile_face": (255, 255, 255), "person": (170, 255, 230),
                  "salient": (200, 200, 200)}


def label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` px (no font files needed on the machine)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def draw_crops(source: str | os.PathLike[str], width: int, height: int, crops: Sequence[tuple[str, Crop]],
               best: Crop | None, *, max_side: int, subjects: Sequence[Subject] = ()) -> Image.Image:
    """The upright photo (long side <= ``max_side``), dimmed outside ``best``, each crop outlined.

    ``width``/``height`` are the upright full-resolution size the boxes refer to; a file whose
    size no longer matches (edited since it was scored) is refused rather than drawn wrongly.
    ``crops`` are ``(set name, crop)`` pairs; ``best`` is drawn thickest. ``subjects`` are drawn
    first, with a thin outline and their kind, so the crops stay on top.
    """
    # min_side is a short-side target: pick it so the long side lands near max_side.
    short_target = max(1, round(max_side * min(width, height) / max(width, height)))
    loaded = load_image(source, min_side=short_target)
    if (loaded.info.width, loaded.info.height) != (width, height):
        raise ImageError(f"{os.fspath(source)}: changed since it was scored; score it again")
    img = loaded.image.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    sx, sy = img.width / width, img.height / height

    def scaled(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = box
        return round(x1 * sx), round(y1 * sy), max(round(x1 * sx) + 1, round(x2 * sx) - 1), max(
            round(y1 * sy) + 1, round(y2 * sy) - 1
        )

    if best is not None:
        mask = Image.new("L", img.size, 115)
        ImageDraw.Draw(mask).rectangle(scaled(best.box), fill=0)
        img = Image.composite(Image.new("RGB", img.size, (0, 0, 0)), img, mask)
    draw = ImageDraw.Draw(img)
    lw = max(2, round(max(img.size) / 300))
    font = label_font(13)
    small = label_font(11)
    for sub in subjects:
        color = SUBJECT_COLORS.get(sub.kind, (200, 200, 200))
        box = scaled(sub.box)
        draw.rectangle(box, outline=color, width=1)
        label = f"{sub.kind.replace('_', ' ')} {sub.score:.2f}"
        ty = box[3] - 15 if box[3] - 15 > box[1] else box[3] + 2  # inside the bottom edge, else below
        draw.text((box[0] + 3, ty), label, fill=color, font=small, stroke_width=2, stroke_fill=(0, 0, 0))
    for k, (aspect, crop) in enumerate(crops):
        color = PALETTE[k % len(PALETTE)]
        box = scaled(crop.box)
        draw.rectangle(box, outline=color, width=lw * (2 if crop is best else 1))
        draw.text((box[0] + lw + 3, box[1] + lw + 2), f"{aspect} {crop.score:.3f} ({crop.improvement:+.3f})",
                  fill=color, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    return img


def render_preview(source: str | os.PathLike[str], suggestion: Suggestion, *, max_side: int = 1200) -> Image.Image:
    """The upright photo (long side <= ``max_side``) with the best crop of each set outlined.

    Everything outside the overall best crop is dimmed, so the suggestion reads at a glance; the
    photo's subjects are outlined thinly with their kind.
    """
    if not suggestion.ok or suggestion.info is None:
        raise ImageError(f"{suggestion.path}: no suggestion to draw ({suggestion.error})")
    crops = [(a, c) for a in suggestion.aspects() if (c := suggestion.best(a)) is not None]
    return draw_crops(source, suggestion.info.width, suggestion.info.height, crops, suggestion.best(),
                      max_side=max_side, subjects=suggestion.subjects)


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
