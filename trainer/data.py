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

FCDB (evaluation by IoU/Disp; stage-3 training from its training split)
    For training, ``ROOT/cropping_training_set.json`` (the best crop of each image) and
    ``ROOT/ranking_annotation.json`` (``[{"url", "crops": [{"crop_0": [x, y, w, h], "crop_1": [...],
    "vote_for_0": n, "vote_for_1": n}, ...]}, ...]``) become one record per training image whose
    boxes are the best crop and every ranked crop, with preference pairs (the crop with more votes
    over the other; the annotated best crop over every ranked crop) instead of MOS.
    ``ROOT/cropping_{training,testing}_set.json``: a list of ``{"url"|"image": ..., "crop": [x, y, w, h]}``
    (the ``yiling-chen/flickr-cropping-dataset`` form; the image file is the URL's basename) or
    ``ROOT/image_crop.json`` ``{name: [x, y, w, h]}`` with ``ROOT/data_split.json`` ``{"train": [...],
    "test": [...]}`` (the bcmi form). Images live in ``ROOT/images/`` (or ``ROOT/data/``).
    CSV form: header ``image,x,y,w,h``.

CADB (composition labels, stage 1)
    Official layout: the unpacked ``CADB_Dataset/`` folder (or its ``composition_elements.json``):
    ``composition_elements.json`` ``{image: {class: [geometry, ...], ...}}`` where an image HAS a
    class when the class is a key of its dict (the geometry is not used); ``split.json``
    ``{"train": [...], "test": [...]}`` selects the split; ``composition_scores.json`` is checked to
    be readable but not used by stage 1; images in ``images/``. Of CADB's 13 classes the composition
    branch uses center, rule_of_thirds, horizontal, vertical and curved; the others are ignored.
    Plain JSON form: ``{image name: [label, ...]}`` where labels name composition elements (``center``,
    ``rule_of_thirds``/``rule of thirds``/``RoT``, ``horizontal``, ``vertical``, ``curved``; others are
    ignored). Images live next to the JSON in ``images/``.
    CSV form: header ``image,center,rule_of_thirds,horizontal,vertical,curved`` with 0/1 values.

AADB (aesthetic attributes, stage 2)
    The official label folder ``imgListFiles_label``: files ``imgList<Split>Regression_<Attr>.txt``
    (Split: Train, Validation, Test) with lines ``NAME score`` for Attr in VividColor, Light, DoF,
    Object, Content (scores in [-1, 1]; the paper's "vibrant color" element is AADB's VividColor, not
    ColorHarmony); images in ``ROOT/images/`` or ``datasetImages_originalSize/`` beside the folder.
    CSV form: header ``image,color,lighting,depth_of_field,object_emphasis,interesting_content``
    (the AADB names ``VividColor,Light,DoF,Object,Content`` are accepted as headers too).

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
class AnnotatedCrops:
    """One image of a crop-scoring set (GAICD): every annotated box and its MOS."""

    name: str
    image_path: Path | None
    boxes: np.ndarray  # (N, 4) float64, x1 y1 x2 y2, original pixels
    mos: np.ndarray  # (N,) float64, -2 marks invalid
    source: str = ""
    pairs: np.ndarray | None = None  # (K, 2) box indices (better, worse): a preference set (FCDB), no MOS

    @property
    def ranked(self) -> bool:
        """True for a record trained from preference pairs rather than MOS."""
        return self.pairs is not None

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


def read_gaicd(root: str | Path, split: str = "test", *, require_images: bool = True) -> list[AnnotatedCrops]:
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
    records: list[AnnotatedCrops] = []
    for ann in ann_files:
        image_path: Path | None = None
        if require_images:
            if not img_dir.is_dir():
                raise DataError(f"no GAICD images folder {img_dir}")
            image_path = _find_image(img_dir, ann.stem)
            if image_path is None:
                raise DataError(f"missing image for {ann}: no {ann.stem}.jpg/.png in {img_dir}")
        boxes, mos = parse_gaicd_annotation(ann)
        records.append(AnnotatedCrops(ann.stem, image_path, boxes, mos, source=str(ann)))
    if require_images:
        annotated = {a.stem for a in ann_files}
        orphans = sorted(p.name for p in img_dir.iterdir() if p.suffix in IMAGE_EXTS and p.stem not in annotated)
        if orphans:
            raise DataError(f"image {img_dir / orphans[0]} has no annotation file in {ann_dir}"
                            + (f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""))
    return records


def read_crops_csv(path: str | Path, *, require_images: bool = True) -> list[AnnotatedCrops]:
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
        records.append(AnnotatedCrops(Path(name).stem, image_path, np.asarray(boxes, dtype=np.float64),
                                  np.asarray(scores, dtype=np.float64), source=str(path)))
    return records


def is_fcdb(root: str | Path) -> bool:
    """True for a folder holding FCDB's official JSON files."""
    root = Path(root)
    return root.is_dir() and any((root / f).is_file() for f in (FCDB_TRAIN, FCDB_TEST, FCDB_RANKING))


def load_crop_dataset(root: str | Path, split: str = "train", *, require_images: bool = True) -> list[AnnotatedCrops]:
    """A GAICD-layout folder, an FCDB folder (preference pairs) or a crop CSV file, whichever ``root`` is."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return read_crops_csv(root, require_images=require_images)
    if not root.exists():
        raise DataError(f"no such data set: {root}")
    if is_fcdb(root) and not (root / "annotations").is_dir():
        return read_fcdb_pairs(root, split, require_images=require_images)
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


FCDB_TRAIN, FCDB_TEST, FCDB_RANKING = "cropping_training_set.json", "cropping_testing_set.json", "ranking_annotation.json"


def _url_name(item: dict, where: str) -> str:
    if not isinstance(item, dict) or not (item.get("url") or item.get("image")):
        raise DataError(f"{where}: expected an object with \"url\" (or \"image\")")
    return str(item.get("image") or item["url"]).rstrip("/").rsplit("/", 1)[-1]


def _box_index(boxes: list[np.ndarray], index: dict[tuple[float, ...], int], value: object, where: str) -> int:
    """Index of the [x, y, w, h] ``value`` in ``boxes``, appending it when new."""
    box = _xywh(value, where)
    key = tuple(float(v) for v in box)
    if key not in index:
        index[key] = len(boxes)
        boxes.append(box)
    return index[key]


def read_fcdb_pairs(root: str | Path, split: str = "train", *, require_images: bool = True) -> list[AnnotatedCrops]:
    """FCDB as a preference set for stage 3: best crop + ranked crop pairs per image (see module doc)."""
    root = Path(root)
    best = {r.name: r for r in read_fcdb(root, split, require_images=require_images)}
    ranking = root / FCDB_RANKING
    if not ranking.is_file():
        raise DataError(f"no {FCDB_RANKING} in {root}: FCDB training needs its crop ranking pairs")
    data = _load_json(ranking)
    if not isinstance(data, list):
        raise DataError(f"{ranking}: expected a list of {{\"url\", \"crops\": [...]}} entries")
    records: list[AnnotatedCrops] = []
    for i, item in enumerate(data):
        where = f"{ranking} entry {i}"
        name = Path(_url_name(item, where)).stem
        if name not in best:
            continue  # an image of the other split (or one whose photo is gone)
        crops = item.get("crops")
        if not isinstance(crops, list):
            raise DataError(f"{where} [\"crops\"]: expected a list of {{crop_0, crop_1, vote_for_0, vote_for_1}}")
        rec = best.pop(name)
        boxes: list[np.ndarray] = [rec.box]
        index: dict[tuple[float, ...], int] = {tuple(float(v) for v in rec.box): 0}
        pairs: list[tuple[int, int]] = []

        for j, pair in enumerate(crops):
            if not isinstance(pair, dict) or not {"crop_0", "crop_1", "vote_for_0", "vote_for_1"} <= set(pair):
                raise DataError(f"{where} [\"crops\"][{j}]: expected {{\"crop_0\", \"crop_1\", \"vote_for_0\", "
                                "\"vote_for_1\"}")
            a, b = (_box_index(boxes, index, pair[key], f'{where} ["crops"][{j}]["{key}"]') for key in ("crop_0", "crop_1"))
            try:
                va, vb = float(pair["vote_for_0"]), float(pair["vote_for_1"])
            except (TypeError, ValueError):
                raise DataError(f"{where} [\"crops\"][{j}]: votes must be numbers") from None
            if va != vb and a != b:
                pairs.append((a, b) if va > vb else (b, a))
        # The annotated best crop is the crowd's chosen crop: preferred over every ranked one.
        pairs += [(0, k) for k in range(1, len(boxes))]
        if not pairs:
            continue
        records.append(AnnotatedCrops(rec.name, rec.image_path, np.stack(boxes), np.zeros(len(boxes)), source=str(ranking),
                                  pairs=np.asarray(sorted(set(pairs)), dtype=np.int64)))
    if not records:
        raise DataError(f"{ranking}: no ranked crops for any image of the {split!r} split of {root}")
    return records


def read_fcdb(root: str | Path, split: str = "test", *, require_images: bool = True) -> list[BestCropRecord]:
    """Read FCDB's ground-truth crops (official JSON, bcmi ``image_crop.json`` or CSV)."""
    root = Path(root)
    entries: list[tuple[str, object, str]] = []  # (image file name, crop, where)
    if root.is_file() and root.suffix.lower() == ".csv":
        for lineno, row in _read_csv(root, ("image", "x", "y", "w", "h")):
            entries.append((row["image"], [row[k] for k in "xywh"], f"{root}:{lineno}"))
        img_dirs = [root.parent]
    else:
        official = root / (FCDB_TEST if split == "test" else FCDB_TRAIN)
        bcmi = root / "image_crop.json"
        if official.is_file():
            data = _load_json(official)
            if not isinstance(data, list):
                raise DataError(f"{official}: expected a list of {{url, crop}} entries")
            for i, item in enumerate(data):
                where = f"{official} entry {i}"
                if not isinstance(item, dict) or "crop" not in item or not (item.get("url") or item.get("image")):
                    raise DataError(f"{where}: expected {{\"url\" or \"image\", \"crop\": [x, y, w, h]}}")
                entries.append((_url_name(item, where), item["crop"], f"{where} [\"crop\"]"))
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
AADB_ATTRS = {"VividColor": "color", "Light": "lighting", "DoF": "depth_of_field",
              "Object": "object_emphasis", "Content": "interesting_content"}
AADB_LABEL_DIR = "imgListFiles_label"
AADB_SPLITS = {"train": "Train", "val": "Validation", "validation": "Validation", "test": "Test"}
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


CADB_ELEMENTS, CADB_SCORES, CADB_SPLIT = "composition_elements.json", "composition_scores.json", "split.json"


def read_cadb(path: str | Path, split: str = "train") -> ElementSet:
    """Composition labels: the official ``CADB_Dataset/`` folder, a plain JSON ``{image: [labels]}`` or the 0/1 CSV."""
    path = Path(path)
    if path.is_dir() or path.name == CADB_ELEMENTS:
        return read_cadb_official(path if path.is_dir() else path.parent, split)
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
            if isinstance(labels, dict):
                raise DataError(f"{path} [{name!r}]: this is CADB's composition_elements.json form "
                                f"({{image: {{class: geometry}}}}); name the file {CADB_ELEMENTS} or pass its folder")
            if isinstance(labels, str):
                labels = [labels]
            if not isinstance(labels, list):
                raise DataError(f"{path} [{name!r}]: expected a list of composition labels, got {type(labels).__name__}")
            img = _resolve_image(name, _image_dirs(path.parent), f"{path} [{name!r}]")
            records.append(ElementRecord(Path(name).stem, img, _composition_vector(labels), "composition"))
    if not records:
        raise DataError(f"empty data set: no images in {path}")
    return ElementSet("composition", records, str(path))


def _composition_vector(labels: object) -> np.ndarray:
    vec = np.zeros(len(COMPOSITION_NAMES))
    for label in labels:  # type: ignore[attr-defined]
        key = _norm_label(str(label))
        if key in COMPOSITION_NAMES:
            vec[COMPOSITION_NAMES.index(key)] = 1.0
    return vec


def cadb_splits(root: Path) -> dict[str, list[str]] | None:
    """``split.json`` of a CADB folder ({split: [image, ...]}), or None when the folder has none."""
    f = Path(root) / CADB_SPLIT
    if not f.is_file():
        return None
    data = _load_json(f)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DataError(f"{f}: expected {{\"train\": [image, ...], \"test\": [image, ...]}}")
    return {str(k): [str(n) for n in v] for k, v in data.items()}


def read_cadb_official(root: str | Path, split: str = "train") -> ElementSet:
    """The unpacked ``CADB_Dataset/`` folder: a class is present when it is a key of the image's dict."""
    root = Path(root)
    elements = root / CADB_ELEMENTS
    if not elements.is_file():
        raise DataError(f"no {CADB_ELEMENTS} in {root} (expected the unpacked CADB_Dataset/ folder)")
    data = _load_json(elements)
    if not isinstance(data, dict):
        raise DataError(f"{elements}: expected a JSON object {{image: {{class: [geometry, ...]}}}}")
    scores = root / CADB_SCORES
    if scores.is_file() and not isinstance(_load_json(scores), dict):
        raise DataError(f"{scores}: expected a JSON object {{image: {{\"scores\", \"dist\", \"mean\"}}}}")
    splits = cadb_splits(root)
    if splits is not None:
        if split not in splits:
            raise DataError(f"{root / CADB_SPLIT}: no {split!r} list (it has {', '.join(sorted(splits)) or 'none'})")
        names = splits[split]
    else:
        names = list(data)
    records: list[ElementRecord] = []
    for name in names:
        where = f"{elements} [{name!r}]"
        if name not in data:
            raise DataError(f"{root / CADB_SPLIT} lists {name!r} but {elements} has no entry for it")
        classes = data[name]
        if not isinstance(classes, dict):
            raise DataError(f"{where}: expected an object {{class: [geometry, ...]}}, got {type(classes).__name__}")
        img = _resolve_image(name, [root / "images", root], where)
        records.append(ElementRecord(Path(name).stem, img, _composition_vector(classes), "composition"))
    if not records:
        raise DataError(f"empty data set: no images in the {split!r} split of {root}")
    return ElementSet("composition", records, str(root))


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
        if (path / AADB_LABEL_DIR).is_dir():  # the AADB root rather than its label folder
            path = path / AADB_LABEL_DIR
        scores: dict[str, dict[str, float]] = {}
        cap = AADB_SPLITS.get(split.lower(), split.capitalize())
        for attr, elem in AADB_ATTRS.items():
            f = path / f"imgList{cap}Regression_{attr}.txt"
            if not f.is_file():
                raise DataError(f"missing AADB label file {f} (expected imgList<Train|Validation|Test>Regression_"
                                f"<Attr>.txt for {', '.join(AADB_ATTRS)})")
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
        return read_cadb(path, split)
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
