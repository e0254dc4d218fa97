"""Helpers shared by the foundation tests: synthetic photos with a clear subject."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import piexif
from PIL import Image, ImageDraw

from clipcrop_plugin.imaging import ORIENTATION_TO_STORED


def subject_photo(width: int = 480, height: int = 320, center: tuple[float, float] = (0.68, 0.4)) -> Image.Image:
    """A muted, slightly noisy background with one bright, detailed subject at ``center``."""
    rng = np.random.default_rng(7)
    base = np.zeros((height, width, 3), dtype=np.float32)
    base[...] = (96, 110, 120)
    base += rng.normal(0, 3, size=base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    cx, cy = int(center[0] * width), int(center[1] * height)
    r = min(width, height) // 7
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(230, 40, 30))
    for k in range(-r, r, 6):
        d.line((cx + k, cy - r // 2, cx + k + 3, cy + r // 2), fill=(255, 230, 60), width=2)
    return img


def save_with_orientation(upright: Image.Image, path: Path, orientation: int, **save_kw: object) -> Path:
    """Store ``upright`` rotated/flipped as a camera would, tagged with EXIF ``orientation``."""
    op = ORIENTATION_TO_STORED[orientation]
    stored = upright.transpose(op) if op is not None else upright
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: orientation}})
    stored.save(path, "JPEG", quality=95, exif=exif, **save_kw)
    return path
