"""Personalization (SPEC 12): fine-tune the cropping head on the user's own labels.

Labels become preference pairs (better box, worse box) within one photo:

* ``prefer``: the preferred box over the other one;
* ``accept`` / ``box`` (a user-drawn crop): that box over the GAIC grid anchors that overlap it
  little (IoU < 0.5), and over any rejected box of the same photo;
* ``reject``: the grid anchors that overlap it little over the rejected box.

Pairs are split BY PHOTO into training and held-out photos, so the reported agreement (share of
held-out pairs the model orders correctly) measures generalisation to photos it did not see.
Training starts from the active checkpoint, updates F_fusion + F_MLP (and optionally the trunk's
last stage) with a margin hinge, and the result is registered as a new model version whose parent
is the starting checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from clipcrop_plugin.candidates import generate_candidates
from clipcrop_plugin.config import load_settings
from clipcrop_plugin.errors import ConfigError, WeightsError
from clipcrop_plugin.model import CLIPCropping, pick_device, save_checkpoint
from clipcrop_plugin.model.checkpoints import (
    active_checkpoint,
    checkpoint_dir,
    may_activate,
    read_checkpoint_info,
    set_active,
)
from clipcrop_plugin.store import Store

from . import modeling
from .losses import preference_hinge
from .metrics import box_iou

log = logging.getLogger("clipcrop.trainer")

MIN_LABELS = 20  # below this, held-out agreement is noise
MIN_HELDOUT_PAIRS = 5
NEGATIVES_PER_LABEL = 4


class NotEnoughLabels(ConfigError):
    """Too few labels to train and to measure held-out agreement."""


@dataclass
class PersonalizeSettings:
    db_url: str | None = None
    checkpoint: Path | None = None
    out: Path | None = None
    holdout: float = 0.25
    epochs: int = 30
    lr: float = 1e-4
    weight_decay: float = 0.0
    margin: float = 0.5
    train_trunk_stage: bool = False
    activate: bool = False
    seed: int = 0
    device: str = "auto"
    model_dir: Path | None = None


@dataclass
class PersonalizeResult:
    checkpoint: Path
    sha256: str
    parent_sha256: str
    version_id: int
    activated: bool
    labels: int
    train_pairs: int
    heldout_pairs: int
    agreement_before: float
    agreement_after: float
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checkpoint"] = str(self.checkpoint)
        return out

    def summary(self) -> str:
        lines = [f"held-out agreement: {100 * self.agreement_before:.1f}% before -> {100 * self.agreement_after:.1f}% after "
                 f"({self.heldout_pairs} held-out pairs, {self.train_pairs} training pairs from {self.labels} labels)",
                 f"new model version {self.version_id}: {self.checkpoint} (sha256 {self.sha256[:12]}, "
                 f"parent {self.parent_sha256[:12]})"]
        lines.append("activated" if self.activated else
                     f"not active; switch to it with: clipcrop models use {self.checkpoint.stem} "
                     f"(after `clipcrop models import {self.checkpoint}` if it is outside the model folder)")
        return "\n".join(lines)


@dataclass
class Pair:
    photo: str
    better: tuple[float, float, float, float]
    worse: tuple[float, float, float, float]


def label_pairs(labels: list[Any], sizes: dict[str, tuple[int, int]]) -> list[Pair]:
    """Preference pairs from store labels (see the module doc); ``sizes`` maps path -> (w, h)."""
    pairs: list[Pair] = []
    by_photo: dict[str, list[Any]] = {}
    for lab in labels:
        by_photo.setdefault(lab.path, []).append(lab)
    for path, labs in by_photo.items():
        w, h = sizes[path]
        grid = generate_candidates(w, h, grid=True).boxes.astype(float).tolist()
        rejected = [tuple(lab.box) for lab in labs if lab.kind == "reject" and lab.box]
        for lab in labs:
            if lab.box is None:
                continue
            box = tuple(float(v) for v in lab.box)
            if lab.kind == "prefer" and lab.other_box is not None:
                pairs.append(Pair(path, box, tuple(float(v) for v in lab.other_box)))  # type: ignore[arg-type]
                continue
            far = [tuple(c) for c in grid if box_iou(c, box) < 0.5]
            # Deterministic spread over the grid rather than random picks (reproducible runs).
            picks = far[:: max(1, len(far) // NEGATIVES_PER_LABEL)][:NEGATIVES_PER_LABEL]
            if lab.kind in ("accept", "box"):
                pairs.extend(Pair(path, box, c) for c in picks)  # type: ignore[arg-type]
                pairs.extend(Pair(path, box, tuple(float(v) for v in r)) for r in rejected)  # type: ignore[arg-type]
            elif lab.kind == "reject":
                pairs.extend(Pair(path, c, box) for c in picks)  # type: ignore[arg-type]
    return pairs


def _starting_checkpoint(s: PersonalizeSettings, store: Store, model_dir: Path) -> tuple[Path, Any]:
    if s.checkpoint is not None:
        return Path(s.checkpoint), None
    active = store.active_model_version()
    if active is not None and Path(active.checkpoint_path).is_file():
        return Path(active.checkpoint_path), active
    info = active_checkpoint(model_dir)
    if info is None:
        raise WeightsError(f"no trained checkpoint to start from: none is active in the database and {checkpoint_dir(model_dir)} "
                           "is empty; import one with `clipcrop models import FILE` or pass --checkpoint")
    return info.path, None


class _Scorer:
    """Head scoring on cached trunk features (layer3, or layer4 when the trunk stays frozen)."""

    def __init__(self, model: CLIPCropping, device: torch.device, train_trunk: bool) -> None:
        self.model, self.device, self.train_trunk = model, device, train_trunk
        self.cache: dict[str, tuple[torch.Tensor, modeling.Prepared]] = {}

    @torch.no_grad()
    def add(self, path: str, prepared: modeling.Prepared) -> None:
        v = self.model.clip.visual
        x = modeling.normalize(self.model, prepared.pixels.unsqueeze(0).to(self.device)).to(v.conv1.weight.dtype)
        x = v.layer3(v.layer2(v.layer1(v.stem(x))))
        if not self.train_trunk:
            x = v.layer4(x)
        self.cache[path] = (x, prepared)

    def scores(self, path: str, boxes: list[tuple[float, ...]]) -> torch.Tensor:
        fm, prep = self.cache[path]
        if self.train_trunk:
            fm = self.model.clip.visual.layer4(fm)
        (s,) = self.model.score_crops(fm, [prep.scale_boxes(np.asarray(boxes)).to(self.device)])
        return s.float()

    def agreement(self, pairs: list[Pair]) -> float:
        if not pairs:
            return float("nan")
        with torch.no_grad():
            good = 0.0
            for p in pairs:
                b, w = self.scores(p.photo, [p.better, p.worse]).tolist()
                good += 1.0 if b > w else 0.5 if b == w else 0.0
        return good / len(pairs)


def personalize(s: PersonalizeSettings, *, progress: bool = True, store: Store | None = None) -> PersonalizeResult:
    """Fine-tune from the active checkpoint on the user's labels; register (and maybe activate) the result."""
    own_store = store is None
    store = store or Store.open(s.db_url)
    try:
        return _personalize(s, store, progress)
    finally:
        if own_store:
            store.close()


def _personalize(s: PersonalizeSettings, store: Store, progress: bool) -> PersonalizeResult:
    settings = load_settings()
    model_dir = Path(s.model_dir) if s.model_dir else settings.resolved_model_dir()
    labels = [lab for lab in store.labels() if lab.box is not None]
    if len(labels) < MIN_LABELS:
        raise NotEnoughLabels(f"personalization needs at least {MIN_LABELS} labels and the database has {len(labels)}: "
                              f"label {MIN_LABELS - len(labels)} more crops (clipcrop label PHOTO --accept/--reject/--box, "
                              "or the review page)")
    photos = sorted({lab.path for lab in labels})
    if len(photos) < 2:
        raise NotEnoughLabels("personalization needs labels on at least 2 photos (some are held out); label another photo")
    device = pick_device(s.device)
    start, start_version = _starting_checkpoint(s, store, model_dir)
    model, info = modeling.load_model(start, device)
    torch.manual_seed(s.seed)
    prepared = {p: modeling.prepare_image(model, Path(p)) for p in tqdm(photos, desc="loading photos", disable=not progress, leave=False)}
    pairs = label_pairs(labels, {p: (prep.width, prep.height) for p, prep in prepared.items()})
    order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(s.seed)).tolist()
    n_held = min(len(photos) - 1, max(1, int(round(len(photos) * s.holdout))))
    held_photos = {photos[i] for i in order[:n_held]}
    heldout = [p for p in pairs if p.photo in held_photos]
    train = [p for p in pairs if p.photo not in held_photos]
    if len(heldout) < MIN_HELDOUT_PAIRS or not train:
        raise NotEnoughLabels(f"the labels give {len(train)} training and {len(heldout)} held-out preference pairs; "
                              f"need at least {MIN_HELDOUT_PAIRS} held out: label more photos")

    for p in model.parameters():
        p.requires_grad_(False)
    modules: list[torch.nn.Module] = [model.reduce, model.head]
    if s.train_trunk_stage:
        modules.append(model.clip.visual.layer4)
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    model.eval()  # frozen BatchNorm statistics, as in training
    scorer = _Scorer(model, device, s.train_trunk_stage)
    for path, prep in prepared.items():
        scorer.add(path, prep)
    before = scorer.agreement(heldout)
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    by_photo: dict[str, list[Pair]] = {}
    for p in train:
        by_photo.setdefault(p.photo, []).append(p)
    train_photos = sorted(by_photo)
    history = []
    for epoch in tqdm(range(s.epochs), desc="personalizing", disable=not progress, leave=False):
        perm = torch.randperm(len(train_photos), generator=torch.Generator().manual_seed(s.seed * 7919 + epoch)).tolist()
        total = 0.0
        for i in perm:
            photo_pairs = by_photo[train_photos[i]]
            boxes = [b for p in photo_pairs for b in (p.better, p.worse)]
            sc = scorer.scores(train_photos[i], boxes).view(-1, 2)
            loss = preference_hinge(sc[:, 0], sc[:, 1], s.margin)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        history.append(total / len(train_photos))
    after = scorer.agreement(heldout)

    parent_info = info if info is not None else read_checkpoint_info(start)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(s.out) if s.out else checkpoint_dir(model_dir) / f"personal-{stamp}.safetensors"
    if out.suffix != ".safetensors":
        out = out / f"personal-{stamp}.safetensors"
    if out.exists():
        raise ConfigError(f"{out} already exists; choose another --out")
    kinds = {k: sum(1 for lab in labels if lab.kind == k) for k in ("accept", "reject", "box", "prefer")}
    metrics = {"heldout_agreement_before": before, "heldout_agreement_after": after,
               "heldout_pairs": len(heldout), "train_pairs": len(train)}
    provenance = {"stage": "personalize", "data": {"labels": len(labels), "photos": len(photos), "kinds": kinds,
                                                    "heldout_photos": len(held_photos)},
                  "hyperparameters": {"lr": s.lr, "epochs": s.epochs, "margin": s.margin, "holdout": s.holdout,
                                      "train_trunk_stage": s.train_trunk_stage, "seed": s.seed, "optimizer": "AdamW"},
                  "metrics": metrics, "parent": str(start), "parent_sha256": parent_info.sha256}
    new_info = save_checkpoint(model.to("cpu"), out, provenance=provenance, parent_sha256=parent_info.sha256)
    activate = may_activate(s.activate, before, after)
    parent_id = start_version.id if start_version is not None else store.register_model_version(
        parent_info.name, str(parent_info.path), parent_info.sha256, data_summary=parent_info.provenance.get("data")
        if isinstance(parent_info.provenance.get("data"), dict) else None,
        metrics=parent_info.provenance.get("metrics"))
    version_id = store.register_model_version(new_info.name, str(new_info.path), new_info.sha256, parent_id=parent_id,
                                              data_summary=provenance["data"], metrics=metrics, activate=activate)
    if activate and new_info.can_score and new_info.path.parent == checkpoint_dir(model_dir):
        set_active(model_dir, new_info.name)
    return PersonalizeResult(new_info.path, new_info.sha256, parent_info.sha256, version_id, activate, len(labels),
                             len(train), len(heldout), before, after, history)
