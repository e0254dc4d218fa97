"""Synthetic data sets in the official on-disk formats, for tests, demos and benchmarks.

Every generator follows a visual rule a network can learn, so "training works" is testable
without the real data sets:

* GAICD: a bright disc (the subject) on a textured background; a crop's MOS is high when the disc
  sits near the crop's centre and drops when the crop cuts into it. Annotations list every crop of
  GAIC's 12x12 anchor grid (256 lines), invalid ones (area <= 50% or aspect outside (0.5, 2)) with -2,
  as GAICD does. MOS is rounded to two decimals, so ties occur as in the real data.
* FCDB: same images; the ground-truth crop is the best grid crop under that rule.
* CADB: each image shows one or two composition patterns (disc at the centre / on a thirds point,
  horizontal bands, vertical bars, a sine curve) and is labelled with them.
* AADB: five independent factors (saturation, exposure, background blur, subject size, number of
  objects) are rendered and reported as the five attribute scores in [-1, 1].
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .data import AADB_ATTRS, AESTHETIC_NAMES, COMPOSITION_NAMES, INVALID_MOS


def gaic_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """All 256 boxes of GAIC's 12x12 anchor grid (x1, y1, x2, y2) and a validity mask.

    Valid as in GAIC's ``generate_bboxes``: area > 50% of the grid and aspect (w/h) in (0.5, 2).
    """
    bins = 12.0
    sw, sh = width / bins, height / bins
    boxes, valid = [], []
    for x1 in range(4):
        for y1 in range(4):
            for x2 in range(8, 12):
                for y2 in range(8, 12):
                    aspect = (x2 - x1) * sw / ((y2 - y1) * sh)
                    ok = (x2 - x1) * (y2 - y1) > 0.4999 * bins * bins and 0.5 < aspect < 2.0
                    boxes.append([sw * (0.5 + x1), sh * (0.5 + y1), sw * (0.5 + x2), sh * (0.5 + y2)])
                    valid.append(ok)
    return np.round(np.asarray(boxes)), np.asarray(valid)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    base = rng.uniform(40, 110, size=3)
    gy = np.linspace(0, 1, h)[:, None, None]
    gx = np.linspace(0, 1, w)[None, :, None]
    tilt = rng.uniform(-30, 30, size=3)
    img = base + tilt * (0.6 * gy + 0.4 * gx) + rng.normal(0, 6, size=(h, w, 3))
    return img


def _disc(img: np.ndarray, cx: float, cy: float, r: float, color: np.ndarray) -> None:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    img[mask] = color


def subject_mos(boxes: np.ndarray, cx: float, cy: float, r: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """The synthetic GAICD rule: MOS in [1, 5], highest when the subject is centred in the crop."""
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    dx = (cx - (boxes[:, 0] + boxes[:, 2]) / 2) / bw
    dy = (cy - (boxes[:, 1] + boxes[:, 3]) / 2) / bh
    d = np.sqrt(dx * dx + dy * dy)
    mos = 1.2 + 3.6 * np.exp(-(d ** 2) / (2 * 0.22 ** 2))
    # A crop that cuts the subject is bad whatever its centring.
    cut = (cx - r < boxes[:, 0]) | (cx + r > boxes[:, 2]) | (cy - r < boxes[:, 1]) | (cy + r > boxes[:, 3])
    mos = np.where(cut, mos - 1.0, mos)
    if rng is not None:
        mos = mos + rng.normal(0, 0.05, size=mos.shape)
    return np.round(np.clip(mos, 1.0, 5.0), 2)


def render_subject_image(rng: np.random.Generator, w: int, h: int) -> tuple[Image.Image, float, float, float]:
    """A textured background with one bright disc placed off-centre at random."""
    img = _background(rng, w, h)
    r = rng.uniform(0.07, 0.11) * min(w, h)
    cx = rng.uniform(0.25, 0.75) * w
    cy = rng.uniform(0.25, 0.75) * h
    _disc(img, cx, cy, r, rng.uniform(200, 255, size=3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), cx, cy, r


def _sizes(rng: np.random.Generator, size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    if rng.random() < 0.5:
        w, h = h, w
    return w, h


def write_gaicd(root: str | Path, n_train: int = 24, n_test: int = 8, seed: int = 0,
                size: tuple[int, int] = (160, 120)) -> Path:
    """Write a GAICD-layout data set (images/{train,test}, annotations/{train,test}); returns root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w, h = _sizes(rng, size)
            image, cx, cy, r = render_subject_image(rng, w, h)
            name = f"{split}_{i:04d}"
            image.save(root / "images" / split / f"{name}.jpg", quality=92)
            boxes, valid = gaic_grid(w, h)
            mos = np.where(valid, subject_mos(boxes, cx, cy, r, rng), INVALID_MOS)
            lines = [f"{int(b[1])} {int(b[0])} {int(b[3])} {int(b[2])} {m:.2f}" for b, m in zip(boxes, mos)]
            (root / "annotations" / split / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_fcdb(root: str | Path, n: int = 8, seed: int = 0, size: tuple[int, int] = (160, 120)) -> Path:
    """Write an FCDB-style set: ``images/`` and ``cropping_testing_set.json`` (url + [x, y, w, h])."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        w, h = _sizes(rng, size)
        image, cx, cy, r = render_subject_image(rng, w, h)
        name = f"{1000 + i}_synthetic.jpg"
        image.save(root / "images" / name, quality=92)
        boxes, valid = gaic_grid(w, h)
        mos = np.where(valid, subject_mos(boxes, cx, cy, r), -np.inf)
        b = boxes[int(np.argmax(mos))]
        entries.append({"url": f"http://farm1.example.invalid/{name}", "flickr_photo_id": 1000 + i,
                        "crop": [int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1])]})
    (root / "cropping_testing_set.json").write_text(json.dumps(entries), encoding="utf-8")
    return root


def write_fcdb_training(root: str | Path, n: int = 16, seed: int = 0, size: tuple[int, int] = (160, 120),
                        pairs: int = 10) -> Path:
    """Write FCDB's training files in their official shape: ``cropping_training_set.json`` and
    ``ranking_annotation.json`` (ten voted crop pairs per image), images in ``images/``.

    The synthetic rule of :func:`subject_mos` decides the votes (five raters, noise-free), so a
    model that learns the rule orders the pairs as the raters did.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    best, ranking = [], []
    for i in range(n):
        w, h = _sizes(rng, size)
        image, cx, cy, r = render_subject_image(rng, w, h)
        name = f"{5000 + i}_train.jpg"
        url = f"https://farm1.staticflickr.example.invalid/1/{name}"
        image.save(root / "images" / name, quality=92)
        boxes, valid = gaic_grid(w, h)
        boxes = boxes[valid]
        mos = subject_mos(boxes, cx, cy, r)
        b = boxes[int(np.argmax(mos))]
        best.append({"url": url, "flickr_photo_id": 5000 + i,
                     "crop": [int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1])]})
        crops = []
        for _ in range(pairs):
            j, k = rng.choice(len(boxes), size=2, replace=False)
            v0, v1 = (2, 2) if mos[j] == mos[k] else (4, 1) if mos[j] > mos[k] else (1, 4)
            xywh = [[int(v) for v in (bb[0], bb[1], bb[2] - bb[0], bb[3] - bb[1])] for bb in (boxes[j], boxes[k])]
            crops.append({"crop_0": xywh[0], "crop_1": xywh[1], "vote_for_0": v0, "vote_for_1": v1})
        ranking.append({"url": url, "crops": crops})
    (root / "cropping_training_set.json").write_text(json.dumps(best, indent=1), encoding="utf-8")
    (root / "ranking_annotation.json").write_text(json.dumps(ranking, indent=1), encoding="utf-8")
    return root


def write_cadb_official(root: str | Path, elements: dict[str, dict[str, list]], scores: dict[str, dict] | None = None,
                        test: int = 2, seed: int = 0, size: tuple[int, int] = (128, 96)) -> Path:
    """Write an unpacked ``CADB_Dataset/`` folder around real ``composition_elements.json`` entries.

    Each image is drawn with the composition classes its entry has (as keys), so stage 1 can
    learn them; ``split.json`` puts the last ``test`` images in the test split.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name, classes in elements.items():
        kinds = [k for k in classes if k in COMPOSITION_NAMES] or ["center"]
        _composition_image(rng, *size, kinds).save(root / "images" / name, quality=92)
    names = list(elements)
    (root / "composition_elements.json").write_text(json.dumps(elements), encoding="utf-8")
    (root / "composition_scores.json").write_text(json.dumps(scores or {}), encoding="utf-8")
    (root / "split.json").write_text(json.dumps({"train": names[:-test] if test else names, "test": names[-test:] if test else []}),
                                     encoding="utf-8")
    return root


def _composition_image(rng: np.random.Generator, w: int, h: int, kinds: list[str]) -> Image.Image:
    img = _background(rng, w, h)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    light = tuple(int(v) for v in rng.uniform(190, 255, size=3))
    for kind in kinds:
        if kind in ("center", "rule_of_thirds"):
            r = rng.uniform(0.1, 0.14) * min(w, h)
            if kind == "center":
                cx, cy = w / 2, h / 2
            else:
                cx, cy = w * rng.choice([1 / 3, 2 / 3]), h * rng.choice([1 / 3, 2 / 3])
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=light)
        elif kind == "horizontal":
            for _ in range(int(rng.integers(2, 4))):
                y = rng.uniform(0.1, 0.9) * h
                draw.rectangle([0, y, w, y + rng.uniform(2, 5)], fill=light)
        elif kind == "vertical":
            for _ in range(int(rng.integers(2, 4))):
                x = rng.uniform(0.1, 0.9) * w
                draw.rectangle([x, 0, x + rng.uniform(2, 5), h], fill=light)
        elif kind == "curved":
            phase, amp = rng.uniform(0, 2 * math.pi), rng.uniform(0.15, 0.3) * h
            pts = [(x, h / 2 + amp * math.sin(phase + 2 * math.pi * x / w * 1.2)) for x in range(0, w + 1, 2)]
            draw.line(pts, fill=light, width=4)
    return pil


def write_cadb(root: str | Path, n: int = 40, seed: int = 0, size: tuple[int, int] = (128, 96),
               csv_form: bool = False) -> Path:
    """Write composition-labelled images; returns the labels file (JSON, or CSV with ``csv_form``)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    labels: dict[str, list[str]] = {}
    line_kinds = ["horizontal", "vertical", "curved"]
    for i in range(n):
        w, h = size
        kinds = [COMPOSITION_NAMES[i % 5]]
        # Some images carry a second pattern, as real photos do (one InfoNCE term per positive).
        if rng.random() < 0.3:
            extra = str(rng.choice(line_kinds if kinds[0] in ("center", "rule_of_thirds") else ["center", "rule_of_thirds"]))
            if extra not in kinds:
                kinds.append(extra)
        name = f"cadb_{i:04d}.jpg"
        _composition_image(rng, w, h, kinds).save(root / "images" / name, quality=92)
        labels[name] = kinds
    if csv_form:
        path = root / "composition.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", *COMPOSITION_NAMES])
            for name, kinds in labels.items():
                writer.writerow([f"images/{name}", *(int(k in kinds) for k in COMPOSITION_NAMES)])
        return path
    path = root / "composition_labels.json"
    path.write_text(json.dumps(labels, indent=1), encoding="utf-8")
    return path


def _aesthetic_image(rng: np.random.Generator, w: int, h: int, f: np.ndarray) -> Image.Image:
    """Render factors f in [-1, 1]: color, lighting, depth of field, object emphasis, content."""
    color, light, dof, obj, content = (float(v) for v in f)
    img = _background(rng, w, h) + rng.normal(0, 25, size=(h, w, 3))  # busy texture, blurred if dof > 0
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if dof > 0:
        pil = pil.filter(ImageFilter.GaussianBlur(1 + 3 * dof))
    draw = ImageDraw.Draw(pil)
    n_objects = 1 + int(round((content + 1) * 2.5))  # 1..6 shapes
    for _ in range(n_objects - 1):
        x, y, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 10)
        draw.rectangle([x, y, x + s, y + s], fill=tuple(int(v) for v in rng.uniform(0, 255, 3)))
    r = (0.08 + 0.12 * (obj + 1) / 2) * min(w, h)
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(235, 90, 60))
    arr = np.asarray(pil).astype(np.float64)
    gray = arr.mean(axis=2, keepdims=True)
    sat = 0.1 + 1.4 * (color + 1) / 2  # grey-ish ... vivid
    arr = gray + (arr - gray) * sat
    arr = arr * (0.35 + 0.75 * (light + 1) / 2)  # dark ... well exposed
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_aadb(root: str | Path, n: int = 40, seed: int = 0, size: tuple[int, int] = (128, 96),
               split: str = "train", csv_form: bool = False) -> Path:
    """Write AADB-style images and labels; returns the label folder (or the CSV with ``csv_form``)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    factors: dict[str, np.ndarray] = {}
    for i in range(n):
        # Mostly negative scores (each attribute positive for about 30% of images), as in AADB where
        # most photos are average: an image has one or two positive attributes, rarely all five.
        f = np.round(rng.uniform(-1, 0.45, size=5), 2)
        f[f == 0] = 0.01
        name = f"aadb_{i:04d}.jpg"
        _aesthetic_image(rng, *size, f).save(root / "images" / name, quality=92)
        factors[name] = f
    if csv_form:
        path = root / "aesthetic.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", *AESTHETIC_NAMES])
            for name, f in factors.items():
                writer.writerow([name, *(f"{v:.2f}" for v in f)])
        return path
    cap = split.capitalize()
    for k, attr in enumerate(AADB_ATTRS):
        lines = [f"{name} {f[k]:.2f}" for name, f in factors.items()]
        (root / f"imgList{cap}Regression_{attr}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
