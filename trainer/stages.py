"""The three training stages of the paper's Algorithm 1, resumable and reproducible.

* ``composition`` (stage 1): CLIP visual + CKE + composition prompt learner, InfoNCE on CADB labels.
* ``aesthetic`` (stage 2): CLIP visual + AKE + aesthetic prompt learner, InfoNCE on AADB attributes.
* ``cropping`` (stage 3): CLIP visual + F_fusion + F_MLP, SmoothL1 on z-normalised MOS + ranking hinge.

Everything else is frozen (CLIP's text tower, its logit scale, the other branches). BatchNorm
statistics stay frozen (the network runs in eval mode), as GAIC trains with one image per step.

A run folder holds ``resume.pt`` (model, optimizer, AMP scaler, epoch, RNG state, history; written
atomically after every epoch) and, at the end, ``<stage>-<folder name>.safetensors`` with its JSON sidecar. The data
order of epoch ``e`` depends only on ``(seed, e)``, so an interrupted run that resumes from its last
finished epoch ends with exactly the weights an uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from clipcrop_plugin.errors import ClipcropError
from clipcrop_plugin.model import CLIPCropping, ModelConfig, pick_device, save_checkpoint
from clipcrop_plugin.model.weights import sha256_file
from clipcrop_plugin.safeio import AtomicFile

from . import modeling
from .data import AnnotatedCrops, DataError, ElementSet, load_crop_dataset, load_element_dataset
from .defaults import DEFAULTS, STAGES
from .losses import cropping_loss, element_logits, info_nce, preference_hinge
from .metrics import gaic_metrics

log = logging.getLogger("clipcrop.trainer")

RESUME_FILE = "resume.pt"
BRANCH_OF = {"composition": "composition", "aesthetic": "aesthetic"}


@dataclass
class StageSettings:
    """One stage run. Defaults are the paper's (see :mod:`trainer.defaults`)."""

    stage: str
    data: Path
    out: Path
    val: Path | None = None
    init: Path | None = None
    clip_weights: Path | None = None
    random_init: bool = False
    model_dir: Path | None = None  # where to look for CLIP weights (default: the configured model folder)
    model_config: Path | ModelConfig | None = None
    lr: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    split: str = "train"
    fresh: bool = False
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise DataError(f"unknown stage {self.stage!r}; use one of {', '.join(STAGES)}")
        d = DEFAULTS[self.stage]
        self.lr = float(d["lr"] if self.lr is None else self.lr)
        self.epochs = int(d["epochs"] if self.epochs is None else self.epochs)
        self.batch_size = int(d["batch_size"] if self.batch_size is None else self.batch_size)
        self.data, self.out = Path(self.data), Path(self.out)
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise DataError("epochs and batch size must be >= 1 and lr > 0")
        if self.random_init and self.clip_weights is not None:
            raise DataError("give --clip-weights or --random-init, not both")

    def hyperparameters(self) -> dict[str, Any]:
        """What goes into the checkpoint's provenance."""
        return {"lr": self.lr, "epochs": self.epochs, "batch_size": self.batch_size, "optimizer": "AdamW",
                "weight_decay": self.weight_decay, "seed": self.seed, "amp": self.amp, "augmentation": "none"}


@dataclass
class StageResult:
    """What a finished (or paused) run produced."""

    stage: str
    checkpoint: Path | None
    sha256: str
    epochs: int
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    finished: bool = True

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        return out


# ------------------------------------------------------------------------------------- data


def _split_holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, int(round(n * fraction))) if n > 1 else 0
    return sorted(order[k:]), sorted(order[:k])


def _load_data(s: StageSettings) -> tuple[list[Any], list[Any], str]:
    """Train and held-out records, and a provenance description of the data."""
    if s.stage == "cropping":
        train: list[Any] = load_crop_dataset(s.data, s.split)
        if s.val is not None:
            val: list[Any] = load_crop_dataset(s.val, "test")
            desc = f"{s.data} [{s.split}] / val {s.val}"
        elif s.data.is_dir() and (s.data / "annotations" / "test").is_dir() and s.split != "test":
            val = load_crop_dataset(s.data, "test")
            desc = f"{s.data} [{s.split}] / val [test]"
        else:
            tr, va = _split_holdout(len(train), s.val_fraction, s.seed)
            train, val = [train[i] for i in tr], [train[i] for i in va]
            desc = f"{s.data} [{s.split}] / val {len(val)} held out (seed {s.seed})"
        return train, val, desc
    branch = BRANCH_OF[s.stage]
    ds: ElementSet = load_element_dataset(branch, s.data, s.split)
    if s.val is not None:
        val_set = load_element_dataset(branch, s.val, _held_out_split(branch, Path(s.val), s.split))
        return ds.records, val_set.records, f"{s.data} / val {s.val}"
    official_test = _official_test_split(branch, s.data, s.split)
    if official_test is not None:
        val_set = load_element_dataset(branch, s.data, official_test)
        return ds.records, val_set.records, f"{s.data} [{s.split}] / val [{official_test}]"
    tr, va = _split_holdout(len(ds.records), s.val_fraction, s.seed)
    return ([ds.records[i] for i in tr], [ds.records[i] for i in va],
            f"{s.data} / val {len(va)} held out (seed {s.seed})")


def _held_out_split(branch: str, val: Path, split: str) -> str:
    """The split to read from a separate --val data set: its test lists when it has them."""
    return _official_test_split(branch, val, "") or split


def _official_test_split(branch: str, root: Path, split: str) -> str | None:
    """The official held-out split of an element data set in its official layout, if it has one."""
    from .data import AADB_LABEL_DIR, cadb_splits

    root = Path(root)
    if branch == "composition" and root.is_dir():
        splits = cadb_splits(root)
        return "test" if splits and "test" in splits and split != "test" else None
    if branch == "aesthetic" and root.is_dir():
        labels = root / AADB_LABEL_DIR if (root / AADB_LABEL_DIR).is_dir() else root
        for name, cap in (("val", "Validation"), ("test", "Test")):
            if split != name and (labels / f"imgList{cap}Regression_VividColor.txt").is_file():
                return name
    return None


# ------------------------------------------------------------------------------------ model


def _model_config(s: StageSettings) -> ModelConfig:
    if isinstance(s.model_config, ModelConfig):
        return s.model_config
    if s.model_config is None:
        return ModelConfig()
    try:
        return ModelConfig.from_dict(json.loads(Path(s.model_config).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read model config {s.model_config}: {exc}") from None


def trainable_parameters(model: CLIPCropping, stage: str) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze the stage's Theta (paper eq. 1, 6, 14)."""
    for p in model.parameters():
        p.requires_grad_(False)
    modules: list[torch.nn.Module] = [model.clip.visual]
    if stage == "cropping":
        modules += [model.reduce, model.head]
    else:
        branch, learner = model.branch(BRANCH_OF[stage])
        modules += [branch, learner]
    params: list[torch.nn.Parameter] = []
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    # A unique temp name removed on failure (a fixed ``.tmp`` was left behind by a crash).
    with AtomicFile(path, error=ClipcropError) as fh:
        torch.save(obj, fh)


# ---------------------------------------------------------------------------------- training


class _Runner:
    def __init__(self, model: CLIPCropping, s: StageSettings, device: torch.device) -> None:
        self.model, self.s, self.device = model, s, device
        self.use_amp = bool(s.amp and device.type == "cuda")

    def autocast(self) -> Any:
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", enabled=False)

    def prepare(self, records: list[Any], what: str, progress: bool) -> list[modeling.Prepared]:
        return [modeling.prepare_image(self.model, r.image_path)
                for r in tqdm(records, desc=f"loading {what}", disable=not progress, leave=False)]

    def batch(self, prepared: list[modeling.Prepared], idx: list[int]) -> torch.Tensor:
        pixels = torch.stack([prepared[i].pixels for i in idx]).to(self.device)
        return modeling.normalize(self.model, pixels)

    def loss(self, records: list[Any], prepared: list[modeling.Prepared], idx: list[int]) -> torch.Tensor:
        x = self.batch(prepared, idx)
        with self.autocast():
            fm = self.model.features(x)
            if self.s.stage == "cropping":
                recs: list[AnnotatedCrops] = [records[i] for i in idx]
                boxes = [prepared[i].scale_boxes(r.boxes[r.valid]).to(self.device) for i, r in zip(idx, recs)]
                preds = self.model.score_crops(fm, boxes)
                losses = []
                for p, r in zip(preds, recs):
                    if r.ranked:  # FCDB: preference pairs over the record's boxes (all valid)
                        pairs = torch.from_numpy(r.pairs).to(self.device)
                        losses.append(preference_hinge(p[pairs[:, 0]], p[pairs[:, 1]]))
                    else:
                        losses.append(cropping_loss(p, torch.from_numpy(r.mos[r.valid]).to(self.device)))
                return torch.stack(losses).mean()
            branch = BRANCH_OF[self.s.stage]
            visual = self.model.knowledge_embeddings(fm, branch)
            text = self.model.text_embeddings(branch, visual)
            logits = element_logits(visual, text, self.model.logit_scale)
            positives = torch.from_numpy(np.stack([records[i].positives for i in idx])).to(self.device)
            return info_nce(logits, positives)

    @torch.no_grad()
    def validate(self, records: list[Any], prepared: list[modeling.Prepared]) -> dict[str, float]:
        if not records:
            return {}
        self.model.eval()
        if self.s.stage == "cropping":
            scores = modeling.score_records(self.model, records, self.device, prepared=prepared)
            if all(r.ranked for r in records):
                return {"pair_acc": pair_accuracy(records, scores)}
            pairs = [(r.mos[r.valid], np.asarray(scores[r.name])[r.valid]) for r in records if not r.ranked]
            m = gaic_metrics(pairs)
            return {k: m[k] for k in ("srcc", "plcc", "acc1_5", "acc4_5", "acc1_10", "acc4_10", "acc5", "acc10")}
        logits = element_logits_for(self.model, BRANCH_OF[self.s.stage], prepared, self.device, self.autocast)
        labels = np.stack([r.positives for r in records])
        return element_accuracy(logits, labels)


def pair_accuracy(records: list[AnnotatedCrops], scores: dict[str, list[float]]) -> float:
    """Share of preference pairs the scores order correctly (ties count half; chance 0.5)."""
    good = total = 0.0
    for r in records:
        if r.pairs is None:
            continue
        sc = np.asarray(scores[r.name])
        better, worse = sc[r.pairs[:, 0]], sc[r.pairs[:, 1]]
        good += float((better > worse).sum()) + 0.5 * float((better == worse).sum())
        total += len(r.pairs)
    return good / total if total else 0.0


@torch.no_grad()
def element_logits_for(model: CLIPCropping, branch: str, prepared: list[modeling.Prepared], device: torch.device,
                       autocast: Any = None, batch_size: int = 32) -> np.ndarray:
    """(N, 5) similarities of each image's CKE/AKE embedding to its branch's element prompts."""
    out = np.zeros((len(prepared), 5))
    for group in modeling.group_by_size(prepared, range(len(prepared)), batch_size):
        x = modeling.normalize(model, torch.stack([prepared[i].pixels for i in group]).to(device))
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            fm = model.features(x)
            visual = model.knowledge_embeddings(fm, branch)
            text = model.text_embeddings(branch, visual)
            logits = element_logits(visual, text, 1.0)
        out[group] = logits.float().cpu().numpy()
    return out


def element_accuracy(logits: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    """How well element prompts match the labels, with the chance level of each measure.

    ``top1``: share of images whose best-matching element is one of their positives
    (chance: mean share of positive elements). ``pair``: share of (positive, negative) element
    pairs of an image ordered correctly (chance 0.5).
    """
    has_pos = positives.any(axis=1)
    top1 = positives[np.arange(len(logits)), logits.argmax(axis=1)][has_pos]
    chance = positives[has_pos].mean(axis=1)
    good = total = 0.0
    for row, pos in zip(logits, positives):
        p, n = row[pos], row[~pos]
        if len(p) and len(n):
            good += float((p[:, None] > n[None, :]).sum()) + 0.5 * float((p[:, None] == n[None, :]).sum())
            total += len(p) * len(n)
    return {"top1": float(top1.mean()) if len(top1) else 0.0, "top1_chance": float(chance.mean()) if len(chance) else 0.0,
            "pair": good / total if total else 0.0}


def _reference_embedding(model: CLIPCropping, branch: str, prepared: list[modeling.Prepared],
                         device: torch.device) -> torch.Tensor:
    """Mean CKE/AKE embedding over the training images: conditions the inference text cache."""
    total = None
    with torch.no_grad():
        for group in modeling.group_by_size(prepared, range(len(prepared)), 32):
            x = modeling.normalize(model, torch.stack([prepared[i].pixels for i in group]).to(device))
            emb = model.knowledge_embeddings(model.features(x), branch).float().sum(0)
            total = emb if total is None else total + emb
    assert total is not None
    return total / len(prepared)


def _build_or_load(s: StageSettings, resume: dict[str, Any] | None) -> tuple[CLIPCropping, dict[str, Any]]:
    """The starting network and the provenance of where it came from."""
    origin: dict[str, Any] = {"parent_sha256": None, "parent": None, "clip_weights": None}
    if resume is not None:
        config = ModelConfig.from_dict(resume["model_config"])
        model = modeling.new_model(config)
        model.load_state_dict(resume["model"])
        origin.update(resume["origin"])
        return model, origin
    if s.init is not None:
        if not Path(s.init).is_file():
            raise DataError(f"no such checkpoint: {s.init}")
        model, info = modeling.load_model(s.init, torch.device("cpu"))
        origin["parent"] = str(s.init)
        origin["parent_sha256"] = getattr(info, "sha256", None) or sha256_file(Path(s.init))
        origin["lineage"], origin["trunk"] = list(info.lineage), info.trunk
        return model, origin
    if s.stage != "composition":
        log.warning("%s stage started without --init: Algorithm 1 starts it from the previous stage", s.stage)
    config = _model_config(s)
    origin["lineage"] = []
    if s.random_init:
        model = modeling.new_model(config)
        origin.update(random_trunk=True, trunk="random")
        return model, origin
    weights = _pretrained_weights(s, config)
    model = modeling.new_model(config, weights.path)
    origin.update(random_trunk=False, trunk="pretrained", clip_weights=str(weights.path),
                  clip_weights_source=weights.source, clip_weights_sha256=sha256_file(weights.path))
    return model, origin


def _pretrained_weights(s: StageSettings, config: ModelConfig):  # noqa: ANN202 - ClipWeights
    """The CLIP weights of a fresh start, found as the product finds them, or a WeightsError saying how to get some."""
    from clipcrop_plugin.config import load_settings
    from clipcrop_plugin.errors import WeightsError
    from clipcrop_plugin.model.weights import find_clip_weights

    model_dir = Path(s.model_dir) if s.model_dir else load_settings().resolved_model_dir()
    try:
        return find_clip_weights(model_dir, config.clip_model, config.clip_pretrained, s.clip_weights)
    except WeightsError as exc:
        if s.clip_weights is not None:
            raise
        raise WeightsError(f"a fresh {s.stage} run needs pretrained {config.clip_model} ({config.clip_pretrained}) "
                           f"CLIP weights and none were found (model folder {model_dir}, the Hugging Face cache): run "
                           f"`clipcrop models fetch {config.clip_model} --pretrained {config.clip_pretrained}`, pass "
                           "--clip-weights PATH, or --random-init for a random trunk (its checkpoints can never "
                           "score photos)") from exc


def run_stage(s: StageSettings, *, progress: bool = True, stop_after: int | None = None) -> StageResult:
    """Train one stage to ``s.out`` and return where the checkpoint went.

    Resumes from ``s.out/resume.pt`` when it exists (unless ``s.fresh``). ``stop_after`` ends
    this invocation after that many epochs (time-boxed jobs; rerun to continue).
    """
    device = pick_device(s.device)
    s.out.mkdir(parents=True, exist_ok=True)
    resume_path = s.out / RESUME_FILE
    resume = None
    if resume_path.is_file() and not s.fresh:
        try:
            resume = torch.load(resume_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn or foreign file: say so instead of a traceback
            raise DataError(f"cannot read {resume_path} ({exc.__class__.__name__}); rerun with --fresh") from None
        if resume.get("stage") != s.stage:
            raise DataError(f"{resume_path} belongs to stage {resume.get('stage')!r}, not {s.stage!r}; use another --out")
        log.info("resuming %s from epoch %d", s.stage, resume["epoch"])
    torch.manual_seed(s.seed)
    train, val, data_desc = _load_data(s)
    if not train:
        raise DataError(f"empty training split in {s.data}")
    model, origin = _build_or_load(s, resume)
    model.to(device).eval()
    params = trainable_parameters(model, s.stage)
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    runner = _Runner(model, s, device)
    scaler = torch.amp.GradScaler("cuda", enabled=runner.use_amp)
    start_epoch, history = 0, []
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        if runner.use_amp and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        start_epoch, history = int(resume["epoch"]), list(resume["history"])
        _set_rng_state(resume["rng"])
    prep_train = runner.prepare(train, "train", progress)
    prep_val = runner.prepare(val, "val", progress)
    if resume is None and origin.get("random_trunk"):
        log.warning("--random-init: training a randomly initialised trunk (recorded in the checkpoint; it will never "
                    "score photos)")
        origin["batchnorm_calibrated_on"] = modeling.calibrate_batchnorm(model, prep_train, device)
    assert s.epochs is not None and s.batch_size is not None
    epochs_run = 0
    for epoch in range(start_epoch, s.epochs):
        if stop_after is not None and epochs_run >= stop_after:
            return StageResult(s.stage, None, "", epoch, history[-1] if history else {}, history, finished=False)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(s.seed * 100_003 + epoch)).tolist()
        batches = modeling.group_by_size(prep_train, order, s.batch_size)
        t0, total = time.perf_counter(), 0.0
        bar = tqdm(batches, desc=f"{s.stage} epoch {epoch + 1}/{s.epochs}", disable=not progress, leave=False)
        for idx in bar:
            optimizer.zero_grad(set_to_none=True)
            loss = runner.loss(train, prep_train, idx)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(idx)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        metrics = {"loss": total / len(train), "seconds": time.perf_counter() - t0,
                   **{f"val_{k}": v for k, v in runner.validate(val, prep_val).items()}}
        history.append({"epoch": float(epoch + 1), **metrics})
        if progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "seconds")
            tqdm.write(f"{s.stage} epoch {epoch + 1}/{s.epochs}: {shown}")
        _atomic_save({"stage": s.stage, "epoch": epoch + 1, "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if runner.use_amp else {},
                      "rng": _rng_state(), "history": history, "origin": origin,
                      "model_config": model.config.to_dict(), "settings": _settings_json(s)}, resume_path)
        epochs_run += 1
    return _finish(model, s, origin, history, data_desc, prep_train, device)


def checkpoint_path(s: StageSettings) -> Path:
    """``OUT/<stage>-<OUT name>.safetensors``: distinct names, so several runs can be imported."""
    return s.out / f"{s.stage}-{s.out.resolve().name}.safetensors"


def _settings_json(s: StageSettings) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()
            if not isinstance(v, ModelConfig)}


def _finish(model: CLIPCropping, s: StageSettings, origin: dict[str, Any], history: list[dict[str, float]],
            data_desc: str, prep_train: list[modeling.Prepared], device: torch.device) -> StageResult:
    model.eval()
    if s.stage in BRANCH_OF:
        # Condition the inference text cache of the trained branch on its training images,
        # and keep the other branch's cache (set by its own stage) as it was.
        branch = BRANCH_OF[s.stage]
        other = model.ake_text if branch == "composition" else model.cke_text
        kept = other.detach().clone()
        was_ready = bool(model.text_ready)
        model.refresh_text_cache({branch: _reference_embedding(model, branch, prep_train, device)})
        if was_ready:
            other.copy_(kept)
    final = history[-1] if history else {}
    provenance = {
        "stage": s.stage,
        "data": data_desc,
        "hyperparameters": s.hyperparameters(),
        "metrics": {k: v for k, v in final.items() if k not in ("epoch", "seconds")},
        "epochs_completed": len(history),
        "device": str(device),
        **origin,
        "lineage": [*origin.get("lineage", []), s.stage],
    }
    path = checkpoint_path(s)
    info = save_checkpoint(model.to("cpu"), path, provenance=provenance, parent_sha256=origin.get("parent_sha256"))
    sha = info.sha256
    return StageResult(s.stage, path, sha, len(history), provenance["metrics"], history)
