"""Preview images: the photo (upright, downsized) with its suggested crops drawn on it, and the
``clipcrop show --preview`` image of a stored photo with its element-change chart."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from .elements import BY_NAME, ELEMENT_NAMES
from .errors import ImageError
from .imaging import load_image
from .results import Crop, Subject, Suggestion
from .safeio import AtomicFile

if TYPE_CHECKING:
    from .store import PhotoDetail

# One colour per candidate set, in the order the sets appear; the overall best is drawn thickest.
PALETTE = ((255, 204, 0), (0, 200, 255), (255, 80, 160), (120, 255, 90), (255, 140, 0), (190, 120, 255))
# Subjects are drawn thin, in colours of their own, so they never read as crops.
SUBJECT_COLORS = {"face": (255, 255, 255), "profile_face": (255, 255, 255), "person": (170, 255, 230),
                  "salient": (200, 200, 200), "content": (120, 120, 120)}


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
    for k, (_aspect, crop) in enumerate(crops):
        color = PALETTE[k % len(PALETTE)]
        draw.rectangle(scaled(crop.box), outline=color, width=lw * (2 if crop is best else 1))
    return _with_legend(img, [(PALETTE[k % len(PALETTE)], f"{aspect}  {crop.score:.3f} ({crop.improvement:+.3f})"
                               + ("  best" if crop is best else "")) for k, (aspect, crop) in enumerate(crops)], font)


def _with_legend(img: Image.Image, entries: Sequence[tuple[tuple[int, int, int], str]],
                 font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> Image.Image:
    """The image with a legend band below it: one colour swatch and label per crop set.

    Labels on the photo itself overlap once three or four sets are drawn; in a band they never do.
    """
    if not entries:
        return img
    row_h, pad, swatch = 18, 6, 12
    measure = ImageDraw.Draw(img)
    widths = [swatch + 6 + int(measure.textlength(text, font=font)) + 18 for _, text in entries]
    rows: list[list[int]] = [[]]
    x = pad
    for i, w in enumerate(widths):
        if rows[-1] and x + w > img.width - pad:
            rows.append([])
            x = pad
        rows[-1].append(i)
        x += w
    out = Image.new("RGB", (img.width, img.height + len(rows) * row_h + pad), (24, 24, 24))
    out.paste(img, (0, 0))
    draw = ImageDraw.Draw(out)
    for r, row in enumerate(rows):
        x, y = pad, img.height + pad // 2 + r * row_h
        for i in row:
            color, text = entries[i]
            draw.rectangle((x, y + 3, x + swatch, y + 3 + swatch), fill=color)
            draw.text((x + swatch + 6, y + 1), text, fill=(235, 235, 235), font=font)
            x += widths[i]
    return out


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
    """Write ``image`` as a JPEG at ``out`` atomically (temp file + rename); returns the path.

    Never through a symbolic link; raises :class:`ImageError` with a one-line reason.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    with AtomicFile(out, error=ImageError) as fh:
        image.save(fh, "JPEG", quality=88)
    return out


PANEL_W = 440


def render_detail(detail: PhotoDetail, *, max_side: int = 900) -> Image.Image:
    """The ``clipcrop show --preview`` image of a stored photo: photo (long side <= ``max_side``, outside the best crop dimmed, each set's best outlined)
    with a panel charting the ten element changes of the best crop against the full frame."""
    p = detail.photo
    best = p.crop
    if best is None or not p.width or not p.height:
        raise ImageError(f"{p.path}: no stored crop to draw (status {p.status})")
    best_of_sets = list(detail.best.items())
    # The crop objects of `detail.best` and `p.crop` differ; match the overall best by set and rank.
    best_drawn = next((c for a, c in best_of_sets if c.aspect == best.aspect and c.rank == best.rank), best)
    img = draw_crops(p.path, p.width, p.height, best_of_sets, best_drawn, max_side=max_side,
                     subjects=detail.subjects)
    small = label_font(13)

    height = max(img.height, 360)
    canvas = Image.new("RGB", (img.width + PANEL_W, height), (24, 24, 24))
    canvas.paste(img, (0, (height - img.height) // 2))
    d = ImageDraw.Draw(canvas)
    x0 = img.width + 16
    d.text((x0, 14), f"best crop: {best.aspect} #{best.rank}", fill=(235, 235, 235), font=label_font(16))
    d.text((x0, 36), f"score {best.score:.3f}, {best.improvement:+.3f} vs full frame", fill=(200, 200, 200), font=small)
    changes = best.changes
    if changes is None:
        d.text((x0, 70), "this scorer gives no element explanation", fill=(200, 200, 200), font=small)
        return canvas
    label_w, bar_w = 200, PANEL_W - 200 - 32
    centre = x0 + label_w + bar_w // 2
    span = max(1e-6, max(abs(v) for v in changes))
    top, row_h = 72, max(18, min(28, (height - 100) // len(ELEMENT_NAMES)))
    d.line((centre, top - 4, centre, top + row_h * len(ELEMENT_NAMES)), fill=(120, 120, 120))
    for i, (name, value) in enumerate(zip(ELEMENT_NAMES, changes)):
        y = top + i * row_h
        d.text((x0, y + 2), BY_NAME[name].label, fill=(220, 220, 220), font=small)
        length = round(value / span * (bar_w // 2 - 4))
        color = (90, 200, 110) if value >= 0 else (230, 90, 90)
        d.rectangle((min(centre, centre + length), y + 3, max(centre, centre + length), y + row_h - 5), fill=color)
        d.text((x0 + 150, y + 2), f"{value:+.3f}", fill=(160, 160, 160), font=small)
    return canvas
