"""Evaluation on GAICD (official GAIC protocol) and FCDB (IoU / Disp), from a checkpoint or from
a predictions file.

Predictions files (JSON) let researchers score any method without images:

* GAICD: ``{image name: [score per annotation line]}`` - one score for EVERY line of
  ``annotations/<split>/NAME.txt`` in file order, invalid (-2) lines included (their scores are
  ignored). The name is the file stem (``"211965"``) or the file name (``"211965.jpg"``).
* FCDB: ``{image name: [x1, y1, x2, y2]}`` (the predicted best crop in original pixels; the image
  is opened only to read its size) or ``{image name: {"box": [x1, y1, x2, y2], "width": W,
  "height": H}}`` (no image needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .data import AnnotatedCrops, BestCropRecord, DataError, read_fcdb, read_gaicd
from .metrics import GAIC_KEYS, PAPER, fcdb_metrics, gaic_metrics

DATASETS = ("gaicd", "fcdb")

# The FCDB protocol the paper's numbers (metrics.PAPER["fcdb"]) were measured under: the best of
# the GAIC grid anchors, scored by the trained model, against the annotated crop of each of FCDB's
# 348 test images; IoU and boundary displacement averaged over the images.
PAPER_FCDB_IMAGES = 348
OUR_FCDB_CANDIDATES = "gaic-grid"


def fcdb_caveats(images: int, candidates: str) -> list[str]:
    """How this FCDB run differs from the paper's protocol (empty when it does not)."""
    notes = []
    if images != PAPER_FCDB_IMAGES:
        notes.append(f"{images} test images, the paper used {PAPER_FCDB_IMAGES} (the published test JSON lists 345 "
                     "and photos with dead Flickr URLs drop out)")
    if candidates != OUR_FCDB_CANDIDATES:
        notes.append("boxes from a predictions file: their candidate crops are not the GAIC grid the paper scored")
    return notes


def _load_predictions(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read predictions {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: predictions must be a JSON object {{image name: ...}}")
    # Accept keys with or without an extension.
    return {Path(k).stem: v for k, v in data.items()}


def gaicd_from_scores(records: list[AnnotatedCrops], scores: dict[str, Any], where: str = "predictions") -> dict[str, float]:
    """GAIC metrics for ``scores[name]`` = one score per annotation line of each record."""
    pairs = []
    for rec in records:
        if rec.name not in scores:
            raise DataError(f"{where}: no scores for image {rec.name!r}")
        try:
            pred = np.asarray(scores[rec.name], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(f"{where}: scores of {rec.name!r} must be a list of numbers") from None
        if pred.shape[0] != len(rec):
            raise DataError(f"{where}: {rec.name!r} has {pred.shape[0]} scores but {rec.source} has {len(rec)} lines")
        valid = rec.valid
        if not np.isfinite(pred[valid]).all():
            raise DataError(f"{where}: {rec.name!r} has a non-finite score for a valid crop")
        pairs.append((rec.mos[valid], pred[valid]))
    try:
        return gaic_metrics(pairs)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _image_size(path: Path | None, name: str) -> tuple[int, int]:
    if path is None:
        raise DataError(f"FCDB prediction for {name!r} has no width/height and its image was not found")
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def fcdb_from_boxes(records: list[BestCropRecord], boxes: dict[str, Any], where: str = "predictions") -> dict[str, float]:
    """IoU / Disp for predicted best boxes (see the module doc for the accepted forms)."""
    items = []
    for rec in records:
        if rec.name not in boxes:
            raise DataError(f"{where}: no box for image {rec.name!r}")
        entry = boxes[rec.name]
        try:
            if isinstance(entry, dict):
                box = [float(v) for v in entry["box"]]
                w, h = float(entry["width"]), float(entry["height"])
            else:
                box = [float(v) for v in entry]
                w, h = _image_size(rec.image_path, rec.name)
            if len(box) != 4:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: {rec.name!r} must be [x1, y1, x2, y2] or "
                            "{\"box\": [...], \"width\": W, \"height\": H}") from None
        items.append((box, rec.box, w, h))
    return fcdb_metrics(items)


def evaluate_predictions(dataset: str, root: str | Path, predictions: str | Path, split: str = "test") -> dict[str, float]:
    """Evaluate a predictions JSON against ``root`` (only annotation files are read for GAICD)."""
    preds = _load_predictions(predictions)
    if dataset == "gaicd":
        return gaicd_from_scores(read_gaicd(root, split, require_images=False), preds, str(predictions))
    if dataset == "fcdb":
        result = fcdb_from_boxes(read_fcdb(root, split, require_images=False), preds, str(predictions))
        return {**result, "caveats": fcdb_caveats(int(result["images"]), "predictions")}  # type: ignore[dict-item]
    raise DataError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")


def evaluate_checkpoint(dataset: str, root: str | Path, checkpoint: str | Path, split: str = "test",
                        device: str = "auto", progress: bool = True) -> dict[str, float]:
    """Score the data set with a trained checkpoint, then evaluate as above."""
    from .modeling import best_boxes, load_for_eval, score_records

    model, dev = load_for_eval(checkpoint, device)
    if dataset == "gaicd":
        records = read_gaicd(root, split)
        scores = score_records(model, records, dev, progress=progress)
        return gaicd_from_scores(records, scores, str(checkpoint))
    if dataset == "fcdb":
        records_f = read_fcdb(root, split)
        boxes = best_boxes(model, records_f, dev, progress=progress)
        result = fcdb_from_boxes(records_f, boxes, str(checkpoint))
        return {**result, "caveats": fcdb_caveats(int(result["images"]), OUR_FCDB_CANDIDATES)}  # type: ignore[dict-item]
    raise DataError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")


_LABELS = {"srcc": "SRCC", "plcc": "PLCC", "iou": "IoU", "disp": "Disp"}


def _label(key: str) -> str:
    if key in _LABELS:
        return _LABELS[key]
    prefix = "Acc^w" if key.startswith("w") else "Acc"
    rest = key.lstrip("w")[3:]
    return prefix + rest.replace("_", "/")


def format_table(result: dict[str, float], dataset: str) -> str:
    """Our numbers beside the paper's (Tables 1-3); '-' where the paper gives none."""
    if dataset == "fcdb":
        keys: tuple[str, ...] = ("iou", "disp")
        columns = [("FCDB (paper)", PAPER["fcdb"])]
    else:
        keys = GAIC_KEYS
        columns = [("GAICD-1236 (paper)", PAPER["gaicd-1236"]), ("GAICD-3336 (paper)", PAPER["gaicd-3336"])]
    header = f"{'metric':<10} {'ours':>9}" + "".join(f" {name:>19}" for name, _ in columns)
    lines = [header, "-" * len(header)]
    for key in keys:
        fmt = "{:9.1f}" if "acc" in key else "{:9.3f}"
        row = f"{_label(key):<10} " + fmt.format(result[key])
        for _, paper in columns:
            row += f" {(fmt.format(paper[key]).strip() if key in paper else '-'):>19}"
        lines.append(row)
    unit = "; accuracies in percent" if dataset != "fcdb" else ""
    lines.append(f"({int(result.get('images', 0))} images{unit})")
    for note in result.get("caveats") or []:  # type: ignore[union-attr]
        lines.append(f"caveat: not the paper's protocol: {note}")
    return "\n".join(lines)
