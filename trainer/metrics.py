"""The official evaluation protocols: GAIC (Acc_K/N, Acc^w_K/N, SRCC, PLCC) and FCDB (IoU, Disp).

GAIC follows ``TestAccuracy.py`` of HuiZeng/Grid-Anchor-based-Image-Cropping-Pytorch line by line:

* invalid crops (MOS == -2) are dropped before anything else;
* both rankings are Python's stable descending ``sorted(..., reverse=True)``: equal MOS (or equal
  predictions) keep annotation order; this decides the GT rank of tied crops and so Acc^w;
* Acc_K/N counts a returned crop as a hit when ``MOS >= MOS[N-th best]`` (ties with the N-th count);
* Acc^w_K/N sorts the GT ranks r of the K returned crops ascending and weights each hit
  (r_j <= N-1) by ``exp(-(r_j - j) / N)``;
* SRCC and PLCC are computed per image over its valid crops, then averaged over images.

Deviation, only where the official code would crash or poison the mean: an image with fewer than
10 valid crops uses its last crop as the N-th best, and a correlation that is undefined (constant
scores) counts as 0. Neither happens on GAICD, whose images have at least 54 valid crops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr

from clipcrop_plugin.results import box_iou

KS = (1, 2, 3, 4)
NS = (5, 10)

# Paper numbers (CLIPCropping, Tables 1-3; SPEC 9) shown beside ours.
PAPER = {
    "gaicd-1236": {"srcc": 0.866, "acc1_5": 70.0, "acc2_5": 66.7, "acc3_5": 63.0, "acc4_5": 60.0, "acc5": 64.9,
                   "acc1_10": 87.5, "acc2_10": 83.7, "acc3_10": 80.5, "acc4_10": 78.5, "acc10": 82.5},
    "gaicd-3336": {"acc1_5": 72.0, "acc2_5": 70.1, "acc3_5": 66.5, "acc4_5": 63.4, "acc5": 68.0,
                   "acc1_10": 87.2, "acc2_10": 87.4, "acc3_10": 85.2, "acc4_10": 83.5, "acc10": 85.8,
                   "srcc": 0.910, "plcc": 0.920},
    "fcdb": {"iou": 0.764, "disp": 0.061},
}

GAIC_KEYS: tuple[str, ...] = (
    *(f"acc{k}_{n}" for n in NS for k in KS), "acc5", "acc10",
    *(f"wacc{k}_{n}" for n in NS for k in KS), "wacc5", "wacc10",
    "srcc", "plcc",
)


def stable_desc_order(values: Sequence[float] | np.ndarray) -> list[int]:
    """Indices sorted by value, largest first; equal values keep their original order."""
    vals = [float(v) for v in values]
    return sorted(range(len(vals)), key=lambda i: vals[i], reverse=True)


def _corr(fn, a: np.ndarray, b: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return 0.0
    value = float(fn(a, b)[0])
    return 0.0 if math.isnan(value) else value


def gaic_image_metrics(mos: Sequence[float] | np.ndarray, pred: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Per-image terms of the GAIC protocol over the VALID crops of one image (fractions, not %)."""
    mos = np.asarray(mos, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if mos.shape != pred.shape or mos.ndim != 1:
        raise ValueError(f"need one prediction per valid crop: {pred.shape} vs {mos.shape}")
    n_crops = len(mos)
    if n_crops < max(KS):
        raise ValueError(f"the GAIC protocol needs at least {max(KS)} valid crops per image, got {n_crops}")
    id_mos = stable_desc_order(mos)
    id_out = stable_desc_order(pred)
    out: dict[str, float] = {}
    for n in NS:
        threshold = mos[id_mos[min(n, n_crops) - 1]]
        for k in KS:
            hits = sum(1.0 for j in range(k) if mos[id_out[j]] >= threshold)
            out[f"acc{k}_{n}"] = hits / k
            ranks = sorted(id_mos.index(id_out[j]) for j in range(k))
            wsum = sum(math.exp(-(r - j) / n) for j, r in enumerate(ranks) if r <= n - 1)
            out[f"wacc{k}_{n}"] = wsum / k
    out["srcc"] = _corr(spearmanr, mos, pred)
    out["plcc"] = _corr(pearsonr, mos, pred)
    return out


def gaic_metrics(pairs: Iterable[tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]]) -> dict[str, float]:
    """Average the per-image terms over images. Accuracies in percent, SRCC/PLCC as fractions.

    ``pairs`` yields ``(mos, pred)`` for each image over its valid crops only.
    """
    per_image = [gaic_image_metrics(m, p) for m, p in pairs]
    if not per_image:
        raise ValueError("no images to evaluate")
    result: dict[str, float] = {}
    for key in per_image[0]:
        mean = float(np.mean([d[key] for d in per_image]))
        result[key] = mean * 100.0 if "acc" in key else mean
    for prefix in ("acc", "wacc"):
        for n in NS:
            result[f"{prefix}{n}"] = float(np.mean([result[f"{prefix}{k}_{n}"] for k in KS]))
    result["images"] = float(len(per_image))
    return {k: result[k] for k in (*GAIC_KEYS, "images")}




def box_disp(pred: Sequence[float], gt: Sequence[float], width: float, height: float) -> float:
    """Un-quartered displacement: ``(|dx1|+|dx2|)/W + (|dy1|+|dy2|)/H`` (divide the mean by 4)."""
    return ((abs(pred[0] - gt[0]) + abs(pred[2] - gt[2])) / width
            + (abs(pred[1] - gt[1]) + abs(pred[3] - gt[3])) / height)


def fcdb_metrics(items: Iterable[tuple[Sequence[float], Sequence[float], float, float]]) -> dict[str, float]:
    """Mean IoU and Disp over ``(pred_box, gt_box, width, height)``; Disp is the mean divided by 4."""
    ious, disps = [], []
    for pred, gt, w, h in items:
        ious.append(box_iou(pred, gt))
        disps.append(box_disp(pred, gt, w, h))
    if not ious:
        raise ValueError("no images to evaluate")
    return {"iou": float(np.mean(ious)), "disp": float(np.mean(disps)) / 4.0, "images": float(len(ious))}


def pairwise_agreement(pairs: Iterable[tuple[float, float]]) -> float:
    """Fraction of (preferred score, other score) pairs the model orders the same way; ties count half."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no pairs")
    return float(np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs]))
