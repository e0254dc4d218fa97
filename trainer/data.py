"""Readers for the training and evaluation data sets, in their official layouts and a plain CSV form.

Every reader returns plain dataclasses (paths, boxes, scores, labels); decoding images is left to
the stage that needs them, so evaluating a predictions file never touches an image.

Accepted forms (all boxes are returned as ``x1, y1, x2, y2`` in original pixels):

GAICD (cropping, stage 3 and evaluation)
    Official layout: ``ROOT/images/{train,test}/NAME.jpg`` and ``ROOT/annotations/{train,test}/NAME.txt``
    with one line per grid crop, ``y1 x1 y2 x2 score`` (row first, as in GAIC's ``croppingDataset.py``);
    ``score == -2`` marks an invalid crop, kept in the record (so predictions line up with the file)
    but masked out of training and metrics.
    CSV form: header ``image,x1,y1,x2,y2,score`` (x first), one row per crop; ``image`` is relative to
    the CSV's folder. Rows of one image are kept in file order.

FCDB (evaluation by IoU/Disp)
    ``ROOT/cropping_{training,testing}_set.json``: a list of ``{"url"|"image": ..., "crop": [x, y, w, h]}``
    (the ``yiling-chen/flickr-cropping-dataset`` form; the image file is the URL's basename) or
    ``ROOT/image_crop.json`` ``{name: [x, y, w, h]}`` with ``ROOT/data_split.json`` ``{"train": [...],
    "test": [...]}`` (the bcmi form). Images live in ``ROOT/images/`` (or ``ROOT/data/``).
    CSV form: header ``image,x,y,w,h``.

CADB (composition labels, stage 1)
    JSON ``{image name: [label, ...]}`` where labels name composition elements (``center``,
    ``rule_of_thirds``/``rule of thirds``/``RoT``, ``horizontal``, ``vertical``, ``curved``; others are
    ignored). Images live next to the JSON in ``images/``.
    CSV form: header ``image,center,rule_of_thirds,horizontal,vertical,curved`` with 0/1 values.

AADB (aesthetic attributes, stage 2)
    The official label folder: files ``imgList<Split>Regression_<Attr>.txt`` with lines ``NAME score``
    for Attr in ColorHarmony, Light, DoF, Object, Content (scores in [-1, 1]); images in ``ROOT/images/``
    (or ``ROOT/datasetImages_originalSize/``).
    CSV form: header ``image,color,lighting,depth_of_field,object_emphasis,interesting_content``
    (the AADB names ``ColorHarmony,Light,DoF,Object,Content`` are accepted as headers too).

A label > 0 makes the image a positive for that element's prompt (SPEC 4): CADB's 1 and AADB's
positive scores.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipcrop_plugin.elements import AESTHETIC_ELEMENTS, COMPOSITION_ELEMENTS
from clipcrop_plugin.errors import ConfigError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp", ".webp", ".tif", ".tiff")
INVALID_MOS = -2.0
SPLITS = ("train", "val", "test")


class DataError(ConfigError):
    """A data set is missing, malformed or empty; the message names the file (and line)."""


@dataclass
class CropRecord:
    """One image of a crop-scoring set (GAICD): every annotated box and its MOS."""

    name: str
    image_path: Path | None
    boxes: np.ndarray  # (N, 4) float64, x1 y1 x2 y2, original pixels
    mos: np.ndarray  # (N,) float64, -2 marks invalid
    source: str = ""

    @property
    def valid(self) -> np.ndarray:
        return self.mos != INVALID_MOS

    def __len__(self) -> int:
        return int(self.mos.shape[0])


@dataclass
class BestCropRecord:
    """One image of a best-crop set (FCDB): the ground-truth box."""

    name: str
    image_path: Path | None
    box: np.ndarray  # (4,) x1 y1 x2 y2


@dataclass
class ElementRecord:
    """One image of an element set (CADB/AADB): a score per element of one branch."""

    name: str
    image_path: Path
    labels: np.ndarray  # (5,) in the branch's element order
    branch: str

    @property
    def positives(self) -> np.ndarray:
        return self.labels > 0


@dataclass
class ElementSet:
    """Element records of one branch, plus where they came from."""

    branch: str
    records: list[ElementRecord] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.records)


def _find_image(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS:
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


def _require_image(path: Path, where: str) -> Path:
    if not path.is_file():
        raise DataError(f"missing image {path} (named in {where})")
    return path


# ---------------------------------------------------------------------------------------- GAICD


def parse_gaicd_annotation(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse one official GAICD ``NAME.txt``: returns x-first boxes (N, 4) and MOS (N,)."""
    boxes: list[list[float]] = []
    mos: list[float] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read annotation {path}: {exc}") from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 5:
                raise ValueError(f"expected 5 numbers 'y1 x1 y2 x2 score', got {len(parts)}")
            y1, x1, y2, x2, score = (float(p) for p in parts)
            if not all(np.isfinite([y1, x1, y2, x2, score])):
                raise ValueError("non-finite number")
            if score != INVALID_MOS and (x2 <= x1 or y2 <= y1):
                raise ValueError("empty box (x2 <= x1 or y2 <= y1)")
        except ValueError as exc:
            raise DataError(f"{path}:{lineno}: malformed GAICD line {line.strip()!r}: {exc}") from None
        boxes.append([x1, y1, x2, y2])
        mos.append(score)
    if not boxes:
        raise DataError(f"{path}: no annotation lines")
    return np.asarray(boxes, dtype=np.float64), np.asarray(mos, dtype=np.float64)


def read_gaicd(root: str | Path, split: str = "test", *, require_images: bool = True) -> list[CropRecord]:
    """Read split ``split`` of a GAICD-layout folder (sorted by name).

    With ``require_images=False`` only the annotation files are read (evaluating a predictions
    file); otherwise every annotation must have its image and vice versa.
    """
    root = Path(root)
    ann_dir = root / "annotations" / split
    img_dir = root / "images" / split
    if not ann_dir.is_dir():
        raise DataError(f"no GAICD annotations folder {ann_dir} (expected ROOT/annotations/{split}/NAME.txt)")
    ann_files = sorted(ann_dir.glob("*.txt"))
    if not ann_files:
        raise DataError(f"empty split: no *.txt annotation files in {ann_dir}")
    records: list[CropRecord] = []
    for ann in ann_files:
        image_path: Path | None = None
        if require_images:
            if not img_dir.is_dir():
                raise DataError(f"no GAICD images folder {img_dir}")
            image_path = _find_image(img_dir, ann.stem)
            if image_path is None:
                raise DataError(f"missing image for {ann}: no {ann.stem}.jpg/.png in {img_dir}")
        boxes, mos = parse_gaicd_annotation(ann)
        records.append(CropRecord(ann.stem, image_path, boxes, mos, source=str(ann)))
    if require_images:
        annotated = {a.stem for a in ann_files}
        orphans = sorted(p.name for p in img_dir.iterdir() if p.suffix in IMAGE_EXTS and p.stem not in annotated)
        if orphans:
            raise DataError(f"image {img_dir / orphans[0]} has no annotation file in {ann_dir}"
                            + (f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""))
    return records


def read_crops_csv(path: str | Path, *, require_images: bool = True) -> list[CropRecord]:
    """Read the plain CSV crop form ``image,x1,y1,x2,y2,score`` (one row per crop)."""
    path = Path(path)
    rows = _read_csv(path, ("image", "x1", "y1", "x2", "y2", "score"))
    grouped: dict[str, tuple[list[list[float]], list[float]]] = {}
    for lineno, row in rows:
        try:
            box = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
            score = float(row["score"])
            if score != INVALID_MOS and (box[2] <= box[0] or box[3] <= box[1]):
                raise ValueError("empty box (x2 <= x1 or y2 <= y1)")
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path}:{lineno}: malformed crop row: {exc}") from None
        boxes, scores = grouped.setdefault(row["image"], ([], []))
        boxes.append(box)
        scores.append(score)
    records = []
    for name, (boxes, scores) in grouped.items():
        image_path = path.parent / name
        if require_images:
            _require_image(image_path, str(path))
        records.append(CropRecord(Path(name).stem, image_path, np.asarray(boxes, dtype=np.float64),
                                  np.asarray(scores, dtype=np.float64), source=str(path)))
    return records


def load_crop_dataset(root: str | Path, split: str = "train", *, require_images: bool = True) -> list[CropRecord]:
    """A GAICD-layout folder or a crop CSV file, whichever ``root`` is."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return read_crops_csv(root, require_images=require_images)
    if not root.exists():
        raise DataError(f"no such data set: {root}")
    return read_gaicd(root, split, require_images=require_images)


# ----------------------------------------------------------------------------------------- FCDB


def _xywh(value: object, where: str) -> np.ndarray:
    try:
        x, y, w, h = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise DataError(f"{where}: crop must be [x, y, w, h], got {value!r}") from None
    if w <= 0 or h <= 0:
        raise DataError(f"{where}: crop has non-positive size {value!r}")
    return np.asarray([x, y, x + w, y + h], dtype=np.float64)


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def read_fcdb(root: str | Path, split: str = "test", *, require_images: bool = True) -> list[BestCropRecord]:
    """Read FCDB's ground-truth crops (official JSON, bcmi ``image_crop.json`` or CSV)."""
    root = Path(root)
    entries: list[tuple[str, object, str]] = []  # (image file name, crop, where)
    if root.is_file() and root.suffix.lower() == ".csv":
        for lineno, row in _read_csv(root, ("image", "x", "y", "w", "h")):
            entries.append((row["image"], [row[k] for k in "xywh"], f"{root}:{lineno}"))
        img_dirs = [root.parent]
    else:
        official = root / ("cropping_testing_set.json" if split == "test" else "cropping_training_set.json")
        bcmi = root / "image_crop.json"
        if official.is_file():
            data = _load_json(official)
            if not isinstance(data, list):
                raise DataError(f"{official}: expected a list of {{url, crop}} entries")
            for i, item in enumerate(data):
                where = f"{official} entry {i}"
                if not isinstance(item, dict) or "crop" not in item or not (item.get("url") or item.get("image")):
                    raise DataError(f"{where}: expected {{\"url\" or \"image\", \"crop\": [x, y, w, h]}}")
                name = str(item.get("image") or item["url"]).rstrip("/").rsplit("/", 1)[-1]
                entries.append((name, item["crop"], where))
        elif bcmi.is_file():
            data = _load_json(bcmi)
            if not isinstance(data, dict):
                raise DataError(f"{bcmi}: expected {{name: [x, y, w, h]}}")
            names = list(data)
            split_file = root / "data_split.json"
            if split_file.is_file():
                splits = _load_json(split_file)
                if not isinstance(splits, dict) or split not in splits:
                    raise DataError(f"{split_file}: no {split!r} list")
                names = [n for n in splits[split] if n in data]
            for name in names:
                entries.append((name, data[name], f"{bcmi} [{name!r}]"))
        else:
            raise DataError(f"no FCDB annotations in {root} (expected {official.name} or image_crop.json)")
        img_dirs = [root / "images", root / "data", root]
    if not entries:
        raise DataError(f"empty split {split!r} in FCDB data {root}")
    records = []
    for name, crop, where in entries:
        box = _xywh(crop, where)
        image_path = next((d / name for d in img_dirs if (d / name).is_file()), None)
        if require_images and image_path is None:
            raise DataError(f"missing image {name} (named in {where}; looked in {', '.join(map(str, img_dirs))})")
        records.append(BestCropRecord(Path(name).stem, image_path, box))
    return records


# ------------------------------------------------------------------------------------ CADB/AADB

COMPOSITION_NAMES = tuple(e.name for e in COMPOSITION_ELEMENTS)
AESTHETIC_NAMES = tuple(e.name for e in AESTHETIC_ELEMENTS)
AADB_ATTRS = {"ColorHarmony": "color", "Light": "lighting", "DoF": "depth_of_field",
              "Object": "object_emphasis", "Content": "interesting_content"}
_COMPOSITION_ALIASES = {"rot": "rule_of_thirds", "ruleofthirds": "rule_of_thirds", "rule_of_third": "rule_of_thirds",
                        "centre": "center", "curve": "curved", "curves": "curved"}


def _norm_label(label: str) -> str:
    key = label.strip().lower().replace("-", "_").replace(" ", "_")
    return _COMPOSITION_ALIASES.get(key, _COMPOSITION_ALIASES.get(key.replace("_", ""), key))


def _image_dirs(base: Path, extra: tuple[str, ...] = ()) -> list[Path]:
    return [base / "images", *(base / e for e in extra), base]


def _resolve_image(name: str, dirs: list[Path], where: str) -> Path:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise DataError(f"missing image {name} (named in {where}; looked in {', '.join(map(str, dirs))})")


def read_cadb(path: str | Path) -> ElementSet:
    """Composition labels: CADB-style JSON ``{image: [labels]}`` or the 0/1 CSV form."""
    path = Path(path)
    records: list[ElementRecord] = []
    if path.suffix.lower() == ".csv":
        for lineno, row in _read_csv(path, ("image", *COMPOSITION_NAMES)):
            labels = _numbers(row, COMPOSITION_NAMES, f"{path}:{lineno}")
            if not np.isin(labels, (0.0, 1.0)).all():
                raise DataError(f"{path}:{lineno}: composition labels must be 0 or 1")
            img = _resolve_image(row["image"], _image_dirs(path.parent), f"{path}:{lineno}")
            records.append(ElementRecord(Path(row["image"]).stem, img, labels, "composition"))
    else:
        data = _load_json(path)
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object {{image: [composition labels]}}")
        for name, labels in data.items():
            if isinstance(labels, str):
                labels = [labels]
            if not isinstance(labels, list):
                raise DataError(f"{path} [{name!r}]: expected a list of composition labels")
            vec = np.zeros(len(COMPOSITION_NAMES))
            for label in labels:
                key = _norm_label(str(label))
                if key in COMPOSITION_NAMES:
                    vec[COMPOSITION_NAMES.index(key)] = 1.0
            img = _resolve_image(name, _image_dirs(path.parent), f"{path} [{name!r}]")
            records.append(ElementRecord(Path(name).stem, img, vec, "composition"))
    if not records:
        raise DataError(f"empty data set: no images in {path}")
    return ElementSet("composition", records, str(path))


def read_aadb(path: str | Path, split: str = "train") -> ElementSet:
    """Aesthetic attributes: the AADB label folder (``imgList<Split>Regression_<Attr>.txt``) or CSV."""
    path = Path(path)
    records: list[ElementRecord] = []
    if path.is_file() and path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
        columns = [AADB_ATTRS.get(h.strip(), h.strip()) for h in header]
        rename = dict(zip(header, columns))
        for lineno, row in _read_csv(path, ("image",), rename=rename, need=AESTHETIC_NAMES):
            labels = _numbers(row, AESTHETIC_NAMES, f"{path}:{lineno}")
            if (np.abs(labels) > 1.0).any():
                raise DataError(f"{path}:{lineno}: AADB attribute scores must lie in [-1, 1]")
            img = _resolve_image(row["image"], _image_dirs(path.parent, ("datasetImages_originalSize",)),
                                 f"{path}:{lineno}")
            records.append(ElementRecord(Path(row["image"]).stem, img, labels, "aesthetic"))
    elif path.is_dir():
        scores: dict[str, dict[str, float]] = {}
        cap = split.capitalize()
        for attr, elem in AADB_ATTRS.items():
            f = path / f"imgList{cap}Regression_{attr}.txt"
            if not f.is_file():
                raise DataError(f"missing AADB label file {f}")
            for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split()
                try:
                    if len(parts) != 2:
                        raise ValueError("expected 'NAME score'")
                    value = float(parts[1])
                    if not -1.0 <= value <= 1.0:
                        raise ValueError("score outside [-1, 1]")
                except ValueError as exc:
                    raise DataError(f"{f}:{lineno}: malformed AADB line {line.strip()!r}: {exc}") from None
                scores.setdefault(parts[0], {})[elem] = value
        dirs = _image_dirs(path, ("datasetImages_originalSize",)) + _image_dirs(path.parent, ("datasetImages_originalSize",))
        for name, by_elem in sorted(scores.items()):
            missing = [e for e in AESTHETIC_NAMES if e not in by_elem]
            if missing:
                raise DataError(f"AADB image {name} lacks attribute(s) {', '.join(missing)} in {path}")
            img = _resolve_image(name, dirs, str(path))
            records.append(ElementRecord(Path(name).stem, img, np.asarray([by_elem[e] for e in AESTHETIC_NAMES]),
                                         "aesthetic"))
    else:
        raise DataError(f"no AADB data at {path} (expected a label folder or a .csv file)")
    if not records:
        raise DataError(f"empty data set: no images in {path}")
    return ElementSet("aesthetic", records, str(path))


def load_element_dataset(branch: str, path: str | Path, split: str = "train") -> ElementSet:
    """The CADB (composition) or AADB (aesthetic) reader for ``branch``."""
    if not Path(path).exists():
        raise DataError(f"no such data set: {path}")
    if branch == "composition":
        return read_cadb(path)
    if branch == "aesthetic":
        return read_aadb(path, split)
    raise DataError(f"unknown branch {branch!r}")


# -------------------------------------------------------------------------------------- helpers


def _read_csv(path: Path, required: tuple[str, ...], *, rename: dict[str, str] | None = None,
              need: tuple[str, ...] = ()) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields_ = [(rename or {}).get(f, f).strip() for f in (reader.fieldnames or [])]
            missing = [c for c in (*required, *need) if c not in fields_]
            if missing:
                raise DataError(f"{path}:1: CSV header lacks column(s) {', '.join(missing)}"
                                f" (expected {','.join((*required, *need))})")
            rows = []
            for row in reader:
                clean = {(rename or {}).get(k, k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
                if not any(clean.values()):
                    continue
                if None in row or any(clean.get(c, "") == "" for c in (*required, *need)):
                    raise DataError(f"{path}:{reader.line_num}: malformed CSV row (missing or extra fields)")
                rows.append((reader.line_num, clean))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not rows:
        raise DataError(f"empty data set: {path} has a header but no rows")
    return rows


def _numbers(row: dict[str, str], keys: tuple[str, ...], where: str) -> np.ndarray:
    try:
        return np.asarray([float(row[k]) for k in keys], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{where}: malformed number: {exc}") from None
