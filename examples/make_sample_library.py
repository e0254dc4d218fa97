"""Write a small sample photo library from the public-domain/CC0 photos bundled with scikit-image.

Usage: python examples/make_sample_library.py OUT_DIR

Some photos are stored rotated or mirrored with an EXIF Orientation other than 1 (written with
piexif), exactly as a phone or camera would store them, so the demo exercises EXIF rotation:
every viewer (and clipcrop) shows them upright. Re-running overwrites only the files listed
below; nothing else in OUT_DIR is touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import piexif
from PIL import Image

# (file name, skimage.data loader, EXIF orientation to store it with)
PHOTOS: tuple[tuple[str, str, int], ...] = (
    ("astronaut.jpg", "astronaut", 1),
    ("coffee.jpg", "coffee", 8),
    ("chelsea.jpg", "chelsea", 3),
    ("rocket.jpg", "rocket", 6),
    ("hubble_deep_field.jpg", "hubble_deep_field", 1),
    ("retina.jpg", "retina", 1),
    ("camera.jpg", "camera", 2),
    ("coins.jpg", "coins", 1),
)

# Upright -> stored pixel array for each orientation: the inverse of what a viewer applies.
TO_STORED: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _exif(orientation: int, name: str) -> bytes:
    zeroth = {
        piexif.ImageIFD.Orientation: orientation,
        piexif.ImageIFD.Make: b"scikit-image",
        piexif.ImageIFD.Model: b"skimage.data",
        piexif.ImageIFD.ImageDescription: f"skimage.data.{name}".encode(),
    }
    exif = {piexif.ExifIFD.DateTimeOriginal: b"2024:06:01 12:00:00"}
    return piexif.dump({"0th": zeroth, "Exif": exif})


def make_library(out_dir: Path) -> list[Path]:
    """Write the sample photos into ``out_dir``; return their paths."""
    try:
        from skimage import data
    except ImportError:
        sys.exit("error: scikit-image is needed for the sample photos (pip install 'clipcrop[demo]')")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for filename, loader, orientation in PHOTOS:
        pixels = np.asarray(getattr(data, loader)())
        upright = Image.fromarray(pixels).convert("RGB")
        op = TO_STORED[orientation]
        stored = upright.transpose(op) if op is not None else upright
        path = out_dir / filename
        stored.save(path, "JPEG", quality=92, exif=_exif(orientation, loader))
        written.append(path)
        print(f"wrote {path}  {upright.width}x{upright.height} upright, stored {stored.width}x{stored.height} "
              f"with EXIF orientation {orientation}  (skimage.data.{loader})")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the sample photos into")
    args = parser.parse_args(argv)
    make_library(args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
