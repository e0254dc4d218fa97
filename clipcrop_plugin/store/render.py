"""The ``clipcrop show --preview`` image: the photo with its stored crops, and a bar chart of the
best crop's element changes beside it."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from ..elements import BY_NAME, ELEMENT_NAMES
from ..errors import ImageError
from ..imaging import load_image
from .store import PhotoDetail

PALETTE = ((255, 204, 0), (0, 200, 255), (255, 80, 160), (120, 255, 90), (255, 140, 0), (190, 120, 255))
PANEL_W = 440


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def render_detail(detail: PhotoDetail, *, max_side: int = 900) -> Image.Image:
    """Photo (long side <= ``max_side``, outside the best crop dimmed, each set's best outlined)
    with a panel charting the ten element changes of the best crop against the full frame."""
    p = detail.photo
    best = p.crop
    if best is None or not p.width or not p.height:
        raise ImageError(f"{p.path}: no stored crop to draw (status {p.status})")
    short = max(1, round(max_side * min(p.width, p.height) / max(p.width, p.height)))
    loaded = load_image(p.path, min_side=short)
    if (loaded.info.width, loaded.info.height) != (p.width, p.height):
        raise ImageError(f"{p.path}: changed since it was scored; scan it again")
    img = loaded.image.convert("RGB")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    sx, sy = img.width / p.width, img.height / p.height

    def scaled(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = box
        return round(x1 * sx), round(y1 * sy), max(round(x1 * sx) + 1, round(x2 * sx) - 1), max(
            round(y1 * sy) + 1, round(y2 * sy) - 1)

    mask = Image.new("L", img.size, 120)
    ImageDraw.Draw(mask).rectangle(scaled(best.box), fill=0)
    img = Image.composite(Image.new("RGB", img.size, (0, 0, 0)), img, mask)
    draw = ImageDraw.Draw(img)
    lw = max(2, round(max(img.size) / 300))
    small = _font(13)
    for k, (aspect, crop) in enumerate(detail.best.items()):
        color = PALETTE[k % len(PALETTE)]
        box = scaled(crop.box)
        is_best = crop.aspect == best.aspect and crop.rank == best.rank
        draw.rectangle(box, outline=color, width=lw * (2 if is_best else 1))
        draw.text((box[0] + lw + 3, box[1] + lw + 2), f"{aspect} {crop.score:.3f} ({crop.improvement:+.3f})",
                  fill=color, font=small, stroke_width=2, stroke_fill=(0, 0, 0))

    height = max(img.height, 360)
    canvas = Image.new("RGB", (img.width + PANEL_W, height), (24, 24, 24))
    canvas.paste(img, (0, (height - img.height) // 2))
    d = ImageDraw.Draw(canvas)
    x0 = img.width + 16
    d.text((x0, 14), f"best crop: {best.aspect} #{best.rank}", fill=(235, 235, 235), font=_font(16))
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
