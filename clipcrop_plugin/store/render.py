"""The ``clipcrop show --preview`` image: the photo with its stored crops, and a bar chart of the
best crop's element changes beside it."""

from __future__ import annotations

from PIL import Image, ImageDraw

from ..elements import BY_NAME, ELEMENT_NAMES
from ..errors import ImageError
from ..preview import draw_crops, label_font
from .store import PhotoDetail

PANEL_W = 440


def render_detail(detail: PhotoDetail, *, max_side: int = 900) -> Image.Image:
    """Photo (long side <= ``max_side``, outside the best crop dimmed, each set's best outlined)
    with a panel charting the ten element changes of the best crop against the full frame."""
    p = detail.photo
    best = p.crop
    if best is None or not p.width or not p.height:
        raise ImageError(f"{p.path}: no stored crop to draw (status {p.status})")
    best_of_sets = list(detail.best.items())
    # The crop objects of `detail.best` and `p.crop` differ; match the overall best by set and rank.
    best_drawn = next((c for a, c in best_of_sets if c.aspect == best.aspect and c.rank == best.rank), best)
    img = draw_crops(p.path, p.width, p.height, best_of_sets, best_drawn, max_side=max_side, subjects=detail.subjects)
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
