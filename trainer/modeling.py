"""The trainer's bridge to ``clipcrop_plugin.model``: building/loading networks, turning data
records into input tensors and boxes, and scoring whole data sets.

Images are decoded once per run into uint8 tensors at the trunk's input size (the paper's
224x224 by default) and normalised on the fly, so an epoch never re-decodes JPEGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from clipcrop_plugin.candidates import generate_candidates
from clipcrop_plugin.errors import ImageError
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.model import CLIPCropping, ModelConfig, build_model, load_checkpoint, pick_device
from clipcrop_plugin.model.weights import load_state_file

from .data import AnnotatedCrops, BestCropRecord, DataError


def tiny_config(image_size: int = 128, **overrides: Any) -> ModelConfig:
    """A tiny random ResNet CLIP (seconds per epoch on a CPU) for tests, demos and smoke runs.

    The model package's test tower at a larger input (a 4x4 trunk map at 128 px) so RoI/RoD
    features can see where a subject sits.
    """
    from clipcrop_plugin.model.testing import tiny_config as base

    values: dict[str, Any] = {"reddim": 8, "head_hidden": (64, 32), "knowledge_hidden": 32}
    values.update(overrides)
    return base(image_size, **values)


def new_model(config: ModelConfig, clip_weights: Path | None = None) -> CLIPCropping:
    """A fresh network; CLIP weights from ``clip_weights`` (safetensors or open_clip .pt) if given."""
    state = load_state_file(Path(clip_weights)) if clip_weights else None
    return build_model(config, state)


def load_model(checkpoint: str | Path, device: torch.device) -> tuple[CLIPCropping, Any]:
    """A trained checkpoint and its info (sidecar), on ``device``, in eval mode."""
    model, info = load_checkpoint(Path(checkpoint), "cpu")
    return model.to(device).eval(), info


def load_for_eval(checkpoint: str | Path, device: str = "auto") -> tuple[CLIPCropping, torch.device]:
    dev = pick_device(device)
    model, _ = load_model(checkpoint, dev)
    return model, dev


# ------------------------------------------------------------------------------------- inputs


@dataclass
class Prepared:
    """One image at trunk input size: uint8 pixels and the original (upright) size."""

    pixels: torch.Tensor  # (3, H_in, W_in) uint8
    width: int
    height: int

    def scale_boxes(self, boxes: np.ndarray) -> torch.Tensor:
        """Original-pixel x1 y1 x2 y2 -> input-tensor pixels (float32)."""
        h_in, w_in = self.pixels.shape[1:]
        s = np.asarray([w_in / self.width, h_in / self.height] * 2, dtype=np.float64)
        return torch.from_numpy(np.asarray(boxes, dtype=np.float64) * s).float()


def prepare_image(model: CLIPCropping, path: Path | None) -> Prepared:
    """Decode an image upright and resize it to the model's input size (bicubic, as CLIP)."""
    if path is None:
        raise DataError("this evaluation needs the images, but an image path is missing")
    try:
        loaded = load_image(path, min_side=model.config.image_size)
    except ImageError as exc:
        raise DataError(f"cannot use image {path}: {exc}") from None
    w, h = loaded.info.width, loaded.info.height
    size = model.input_size(w, h)
    img = loaded.image.convert("RGB")
    if img.size != size:
        from PIL import Image

        img = img.resize(size, Image.Resampling.BICUBIC)
    arr = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size[1], size[0], 3)
    return Prepared(arr.permute(2, 0, 1).contiguous(), w, h)


def normalize(model: CLIPCropping, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> the normalized float batch the trunk expects (same as model.preprocess)."""
    mean = torch.tensor(model.config.mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(model.config.std, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float().div(255.0) - mean) / std


def group_by_size(items: Sequence[Prepared], order: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of indices (in ``order``) whose images share one input size."""
    batches: list[list[int]] = []
    open_: dict[tuple[int, ...], list[int]] = {}
    for i in order:
        key = tuple(items[i].pixels.shape)
        cur = open_.setdefault(key, [])
        cur.append(i)
        if len(cur) == batch_size:
            batches.append(cur)
            open_[key] = []
    batches.extend(b for b in open_.values() if b)
    return batches


# ------------------------------------------------------------------------------------ scoring


@torch.no_grad()
def score_prepared(model: CLIPCropping, prepared: Prepared, boxes: np.ndarray, device: torch.device) -> np.ndarray:
    """Scores of ``boxes`` (original pixels) on one prepared image (one trunk pass)."""
    from clipcrop_plugin.model import autocast_for

    x = normalize(model, prepared.pixels.unsqueeze(0).to(device))
    with autocast_for(device):
        fm = model.features(x)
        (scores,) = model.score_crops(fm, [prepared.scale_boxes(boxes).to(device)])
    return scores.float().cpu().numpy().astype(np.float64)


def score_records(model: CLIPCropping, records: Sequence[AnnotatedCrops], device: torch.device, *,
                  progress: bool = False, prepared: Sequence[Prepared] | None = None) -> dict[str, list[float]]:
    """``{name: [score per annotation line]}`` (invalid lines get 0.0, they are never used)."""
    out: dict[str, list[float]] = {}
    model.eval()
    for i, rec in enumerate(tqdm(records, desc="scoring", disable=not progress, leave=False)):
        prep = prepared[i] if prepared is not None else prepare_image(model, rec.image_path)
        scores = np.zeros(len(rec))
        valid = rec.valid
        scores[valid] = score_prepared(model, prep, rec.boxes[valid], device)
        out[rec.name] = scores.tolist()
    return out


def best_boxes(model: CLIPCropping, records: Sequence[BestCropRecord], device: torch.device, *,
               progress: bool = False) -> dict[str, dict[str, Any]]:
    """FCDB: the top-scoring crop among the GAIC grid anchors (plus the full frame) per image.

    Unlike the paper's FCDB test (which scores the ground-truth crop among 21 candidates), the
    candidates never include the ground truth, as in bcmi's protocol.
    """
    out: dict[str, dict[str, Any]] = {}
    model.eval()
    for rec in tqdm(records, desc="scoring", disable=not progress, leave=False):
        prep = prepare_image(model, rec.image_path)
        cands = generate_candidates(prep.width, prep.height, grid=True)
        boxes = cands.boxes.astype(np.float64)
        scores = score_prepared(model, prep, boxes, device)
        best = boxes[int(np.argmax(scores))]
        out[rec.name] = {"box": best.tolist(), "width": prep.width, "height": prep.height}
    return out


@torch.no_grad()
def calibrate_batchnorm(model: CLIPCropping, prepared: Sequence[Prepared], device: torch.device,
                        limit: int = 64, batch_size: int = 16) -> int:
    """Set the trunk's BatchNorm statistics from (up to ``limit``) training images.

    Only for a trunk WITHOUT pretrained weights: open_clip initialises it with unit running
    statistics and zeroed residual gains, so activations fade layer by layer until every image
    yields the same embedding and the knowledge branches cannot learn. Returns the images used.
    """
    visual = model.clip.visual
    bns = [m for m in visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
        if bn.weight is not None and float(bn.weight.abs().sum()) == 0.0:
            bn.weight.fill_(1.0)  # wake zero-initialised residual branches
    used = list(range(min(limit, len(prepared))))
    visual.train()
    try:
        for group in group_by_size(prepared, used, batch_size):
            x = normalize(model, torch.stack([prepared[i].pixels for i in group]).to(device))
            trunk_pass = model.features(x)
            del trunk_pass
    finally:
        for bn in bns:
            bn.momentum = 0.1
        model.eval()
    return len(used)
