"""Personalization (SPEC 12): learn the owner's taste from their labels, for every scorer.

Labels become pairwise preferences (:mod:`trainer.preferences`: the rule and the bad-input
accounting). Pairs are split BY PHOTO into training and held-out photos, so the reported
agreement (share of held-out pairs the model orders the owner's way, ties count half) measures
generalisation to photos it did not see. Then, by scorer:

* ``heuristic``: a pairwise logistic ranking model (ridge, Newton steps) over the heuristic's own
  score terms, elements and the crop's geometry, on top of its built-in score
  (:mod:`clipcrop_plugin.scoring.learned`): it learns the weights the heuristic gives them.
* ``zeroshot``: the same model over the CLIP crop embeddings zeroshot computes anyway (one trunk
  pass per photo) plus the crop's geometry: a light linear head.
* ``clipcropping``: fine-tunes F_fusion + F_MLP (and optionally the trunk's last stage) of the
  active checkpoint with a margin hinge.

The result is registered as a new model version (parent, the labels it used, agreement before
and after). It becomes active only when asked to (``--activate``) AND its held-out agreement did
not fall; ``clipcrop models use`` switches between versions and back.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipcrop_plugin.candidates import CandidateSet
from clipcrop_plugin.config import Settings, load_settings
from clipcrop_plugin.errors import ClipcropError, ConfigError, WeightsError
from clipcrop_plugin.store import Store

from .preferences import DEFAULT_RULE, RULES, LabelledPhoto, LabelReport, Pair, collect, make_pairs

if TYPE_CHECKING:
    import torch

log = logging.getLogger("clipcrop.trainer")

MIN_LABELS = 20  # below this, held-out agreement is noise and nothing is trained
# Where personalization starts to help reliably: benchmarks/personalize.py measured >= 80% held-out
# agreement with 50 labels for every simulated owner (docs/personalization.md).
RECOMMENDED_LABELS = 50
MIN_HELDOUT_PAIRS = 5
SCORERS = ("heuristic", "zeroshot", "clipcropping")
RIDGE_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
# zeroshot: how much the embedding's inputs count against the crop's features (a scale s makes
# the ridge on them 1/s^2 stronger); chosen with the ridge. Hundreds of embedding dimensions
# against a few dozen labelled photos overfit unless held down, and how far depends on the tower.
BLOCK_SCALES = (0.05, 0.2, 1.0)


class NotEnoughLabels(ConfigError):
    """Too few labels to train and to measure held-out agreement."""


@dataclass
class PersonalizeSettings:
    db_url: str | None = None
    scorer: str = "auto"
    rule: str = DEFAULT_RULE
    checkpoint: Path | None = None
    weights: str | None = None  # zeroshot: CLIP weights or one of our checkpoints (its towers)
    out: Path | None = None
    holdout: float = 0.25
    epochs: int = 30
    lr: float = 1e-4
    weight_decay: float = 0.0
    margin: float = 0.5
    ridge: float | None = None  # heuristic/zeroshot: None = chosen by cross-validation over photos
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
    scorer: str = "clipcropping"
    report: str = ""
    refused: str = ""  # why --activate did not activate

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checkpoint"] = str(self.checkpoint)
        return out

    def summary(self) -> str:
        lines = [self.report] if self.report else []
        lines.append(f"held-out agreement: {100 * self.agreement_before:.1f}% before -> "
                     f"{100 * self.agreement_after:.1f}% after ({self.heldout_pairs} held-out pairs, "
                     f"{self.train_pairs} training pairs from {self.labels} labels)")
        lines.append(f"new {self.scorer} model version {self.version_id}: {self.checkpoint} "
                     f"(sha256 {self.sha256[:12]}, parent {self.parent_sha256[:12]})")
        if self.activated:
            lines.append("activated; re-score the library with: clipcrop scan --rescore")
        else:
            if self.refused:
                lines.append(f"not activated: {self.refused}")
            hint = (f" (after `clipcrop models import {self.checkpoint}` if it is outside the model folder)"
                    if self.scorer == "clipcropping" else "")
            lines.append(f"not active; switch to it with: clipcrop models use {self.checkpoint.stem}{hint}")
        return "\n".join(lines)


def resolve_scorer(name: str, settings: Settings, weights: str | None = None, device: str = "auto") -> str:
    """``auto`` -> the scorer the library would use now (clipcropping, zeroshot, else heuristic)."""
    name = (name or "auto").strip().lower()
    if name in SCORERS:
        return name
    if name != "auto":
        raise ConfigError(f"personalization works for {', '.join(SCORERS)} (or auto), not {name!r}")
    from clipcrop_plugin.model.checkpoints import active_checkpoint
    from clipcrop_plugin.model.weights import find_clip_weights

    if active_checkpoint(settings.resolved_model_dir()) is not None:
        return "clipcropping"
    try:
        find_clip_weights(settings.resolved_model_dir(), settings.clip_model, settings.clip_pretrained,
                          weights or settings.weights or None)
        return "zeroshot"
    except WeightsError:
        return "heuristic"


def split_photos(photos: list[str], holdout: float, seed: int) -> set[str]:
    """The held-out photos: a seeded share of them (at least 1, and at least 1 left to train on)."""
    order = np.random.default_rng(seed).permutation(len(photos)).tolist()
    n_held = min(len(photos) - 1, max(1, int(round(len(photos) * holdout))))
    return {photos[i] for i in order[:n_held]}


def agreement(better: np.ndarray, worse: np.ndarray) -> float:
    """Share of pairs ordered the owner's way (ties count half); NaN without pairs."""
    if len(better) == 0:
        return float("nan")
    return float(np.mean(np.where(better > worse, 1.0, np.where(better == worse, 0.5, 0.0))))


# -- the learned ranking model (heuristic and zeroshot) -----------------------------------------


def fit_ranker(d: np.ndarray, base: np.ndarray, ridge: float, iters: int = 30) -> np.ndarray:
    """Pairwise logistic ranking by Newton steps: ``w`` minimising
    mean softplus(-(base + d.w)) + ridge/2 |w|^2 / n, where each row of ``d`` is the preferred
    crop's standardized inputs minus the other's and ``base`` the scorer's own score difference."""
    n, k = d.shape
    w = np.zeros(k)
    lam = ridge / max(n, 1)
    for _ in range(iters):
        m = base + d @ w
        p = 1.0 / (1.0 + np.exp(np.clip(m, -50, 50)))  # sigmoid(-m): how wrong each pair is
        grad = -(d * p[:, None]).mean(axis=0) + lam * w
        hess = (d * (p * (1 - p))[:, None]).T @ d / n + lam * np.eye(k)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-7:
            break
    return w


@dataclass
class _Encoded:
    """Inputs of every labelled box, by photo: box -> (inputs, built-in score)."""

    rows: dict[str, dict[tuple[float, ...], tuple[np.ndarray, float]]]
    names: list[str]
    tiers: dict[str, dict[tuple[float, ...], float]] = field(default_factory=dict)
    guard_terms: int = 0  # the last inputs: the guard's per-weight terms
    # per photo, the scorer's inputs and built-in scores of every box measured (candidates too)
    boxes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def spread_ratio(self, photos: list[str], mean: np.ndarray, std: np.ndarray, w: np.ndarray) -> float:
        """Median over ``photos`` of the spread of the personalized scores over that of the
        built-in ones: the guard measures in spreads of the scores it is given."""
        ratios = []
        for path in photos:
            x, base = self.boxes[path]
            sb = float(np.std(base))
            if len(base) > 1 and sb > 1e-12:
                ratios.append(float(np.std(base + ((x - mean) / std) @ w)) / sb)
        return float(np.median(ratios)) if ratios else 1.0

    def matrices(self, pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        xb = np.stack([self.rows[p.photo][p.better][0] for p in pairs])
        xw = np.stack([self.rows[p.photo][p.worse][0] for p in pairs])
        if self.guard_terms and self.tiers:
            # Of two crops in different hard tiers (one cuts a face or the subject the other
            # keeps) the guard's tier decides; its composition weights are learned from pairs
            # within a tier, or "cuts the subject" would pass for taste about tight edges.
            k = self.guard_terms
            apart = np.asarray([self.tiers[p.photo][p.better] != self.tiers[p.photo][p.worse] for p in pairs])
            xw[apart, -k:] = xb[apart, -k:]
        bb = np.asarray([self.rows[p.photo][p.better][1] for p in pairs])
        bw = np.asarray([self.rows[p.photo][p.worse][1] for p in pairs])
        return xb, xw, bb, bw


def _boxes_by_photo(pairs: list[Pair]) -> dict[str, list[tuple[float, ...]]]:
    out: dict[str, dict[tuple[float, ...], None]] = {}
    for p in pairs:
        d = out.setdefault(p.photo, {})
        d[p.better] = None
        d[p.worse] = None
    return {k: list(v) for k, v in out.items()}


def _candidate_set(width: int, height: int, boxes: list[tuple[float, ...]]) -> CandidateSet:
    # The scorers need a full frame in every set; it goes first and is not a labelled box.
    arr = np.asarray([(0, 0, width, height), *boxes], dtype=np.float64)
    arr = np.round(arr).astype(np.int64)
    return CandidateSet(width, height, arr, ["full"] + ["label"] * len(boxes), 0)


class _LightScorer:
    """The scorer being personalized, as shipped (no active version), and how to encode boxes."""

    def __init__(self, name: str, settings: Settings, weights: str | None, device: str) -> None:
        from clipcrop_plugin.scoring import learned

        self.name = name
        if name == "heuristic":
            from clipcrop_plugin.scoring.heuristic import HeuristicScorer

            self.scorer: Any = HeuristicScorer(settings)
            self.base_hash = learned.heuristic_base_hash()
            self.source = "built in"
        else:
            from clipcrop_plugin.scoring.zeroshot import ZeroShotScorer

            self.scorer = ZeroShotScorer.create(settings, device=device, weights=weights)
            self.scorer.personal = None  # learn from zeroshot as shipped, not from an earlier version
            self.base_hash = self.scorer.base_weights_hash
            self.scorer.weights_hash = self.base_hash
            self.source = self.scorer.weights_source
        self.min_side = int(getattr(self.scorer, "min_side", 256) or 256)

    def encode(self, photos: dict[str, LabelledPhoto], boxes: dict[str, list[tuple[float, ...]]],
               progress: bool, subjects: dict[str, list[Any]] | None = None) -> tuple[_Encoded, list[str]]:
        """Inputs and built-in scores of every box; photos that no longer load are returned apart.

        A box's inputs end with the guard's per-weight terms (:func:`learned.guard_inputs`, with
        the photo's stored ``subjects``) and its built-in score includes the guard as shipped:
        the model learns on the score that ranks the crops. The guard measures in spreads of the
        scorer's scores over the photo's candidates, so the candidates are scored too."""
        from tqdm.auto import tqdm

        from clipcrop_plugin.imaging import load_image
        from clipcrop_plugin.scoring import learned

        rows: dict[str, dict[tuple[float, ...], tuple[np.ndarray, float]]] = {}
        enc_tiers: dict[str, dict[tuple[float, ...], float]] = {}
        everything: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        failed: list[str] = []
        names: list[str] = []
        for path in tqdm(sorted(boxes), desc="measuring crops", disable=not progress, leave=False):
            ph = photos[path]
            try:
                loaded = load_image(path, min_side=self.min_side)
            except ClipcropError as exc:
                log.warning("personalize: skipping %s", exc)
                failed.append(path)
                continue
            if (loaded.info.width, loaded.info.height) != (ph.width, ph.height):
                failed.append(path)  # changed on disk since the database last saw it
                continue
            mine = boxes[path]
            cs = _candidate_set(ph.width, ph.height, [*mine, *(tuple(b) for b in np.asarray(
                ph.candidates, dtype=np.float64).reshape(-1, 4).tolist())])
            if self.name == "heuristic":
                f = self.scorer.features(loaded, cs)
                x = learned.heuristic_inputs(f, cs.boxes, cs.width, cs.height)
                base = f.base
                names = learned.heuristic_input_names()
            else:
                (emb,) = self.scorer.embed_crops([loaded], [cs])
                sims = self.scorer.scale * (emb @ self.scorer.quality.t())
                base = (sims[:, 0] - sims[:, 1]).cpu().numpy().astype(np.float64)
                x = learned.zeroshot_inputs(emb.cpu().numpy(), learned.crop_features(loaded, cs), base)
                names = learned.zeroshot_input_names(int(emb.shape[1]))
            groups = ["full"] + ["grid"] * (len(cs.boxes) - 1)  # a drawn box belongs to no ratio set
            shipped, per, tiers = learned.guard_inputs(cs.boxes, base, groups, (subjects or {}).get(path, []),
                                                       ph.width, ph.height, 0)
            rows[path] = {b: (np.concatenate([x[i + 1], per[i + 1]]), float(base[i + 1] + shipped[i + 1]))
                          for i, b in enumerate(mine)}
            enc_tiers[path] = {b: float(tiers[i + 1]) for i, b in enumerate(mine)}
            everything[path] = (x[1:], np.asarray(base[1:], dtype=np.float64))
        names = names + [f"guard_{t}" for t in learned.GUARD_TERMS]
        return _Encoded(rows, names, enc_tiers, len(learned.GUARD_TERMS), everything), failed


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 1e-9, std, 1.0)


def _choose_ridge(enc: _Encoded, train: list[Pair], mean: np.ndarray, std: np.ndarray, seed: int,
                  block: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """The ridge strength (and, with a ``block`` of columns, how much weaker that block's inputs
    count) with the best 3-fold (by photo) agreement on the training pairs; returns the ridge and
    the effective ``std`` (a block's columns divided by its scale: ridge on them is stronger)."""
    scales = BLOCK_SCALES if block is not None and block.any() else (1.0,)
    photos = sorted({p.photo for p in train})
    if len(photos) < 3:
        return RIDGE_GRID[len(RIDGE_GRID) // 2], _scaled(std, block, scales[len(scales) // 2])
    fold = {ph: i % 3 for i, ph in enumerate(np.random.default_rng(seed + 1).permutation(photos).tolist())}
    folds = []
    for k in range(3):
        tr = [p for p in train if fold[p.photo] != k]
        va = [p for p in train if fold[p.photo] == k]
        if tr and va:
            folds.append((enc.matrices(tr), enc.matrices(va)))
    best, best_score = (RIDGE_GRID[0], scales[-1]), -1.0
    for scale in scales:
        sd = _scaled(std, block, scale)
        for ridge in RIDGE_GRID:
            scores = []
            for (xb, xw, bb, bw), (vb, vw, vbb, vbw) in folds:
                w = fit_ranker((xb - xw) / sd, bb - bw, ridge)
                scores.append(agreement(vbb + ((vb - mean) / sd) @ w, vbw + ((vw - mean) / sd) @ w))
            score = float(np.mean(scores)) if scores else -1.0
            if score > best_score + 1e-9:
                best, best_score = (ridge, scale), score
    return best[0], _scaled(std, block, best[1])


def _scaled(std: np.ndarray, block: np.ndarray | None, scale: float) -> np.ndarray:
    if block is None:
        return std
    return np.where(block, std / scale, std)


def label_status(store: Store, scorer: str, *, limit: int = 10) -> dict[str, Any]:
    """How many usable labels there are, how many are needed, and which photos would teach most.

    "Teach most": the scored, unlabelled photos whose suggestion leads its runner-up by the least
    (the review page's "most uncertain" sort): there the scorer is least sure, so a label there
    moves the ranking most.
    """
    from clipcrop_plugin.store import QueryFilters

    photos, report = collect(store, scorer)
    make_pairs(photos, report)
    uncertain = store.query(QueryFilters(status="scored", labelled=False), sort="uncertain", limit=limit)
    return {"scorer": scorer, "usable": report.used, "labels": report.labels, "minimum": MIN_LABELS,
            "recommended": RECOMMENDED_LABELS, "report": report.line(), "photos": len(photos),
            "most_uncertain": [p.path for p in uncertain]}


def format_status(st: dict[str, Any]) -> str:
    """The plain-words version of :func:`label_status`."""
    n, lo, hi = st["usable"], st["minimum"], st["recommended"]
    if n < lo:
        verdict = f"not enough yet: personalization needs at least {lo} (label {lo - n} more)"
    elif n < hi:
        verdict = f"enough to try; about {hi} usually make it help ({hi - n} more)"
    else:
        verdict = "enough: personalization can help"
    lines = [f"{n} usable labels on {st['photos']} photos for the {st['scorer']} scorer: {verdict}", st["report"]]
    if st["most_uncertain"]:
        lines.append("label these next (most uncertain first; or sort the review page by \"most uncertain\"):")
        lines.extend(f"  {p}" for p in st["most_uncertain"])
    return "\n".join(lines)


def personalize(s: PersonalizeSettings, *, progress: bool = True, store: Store | None = None) -> PersonalizeResult:
    """Learn from the labels in the database for ``s.scorer``; register (and maybe activate) the result."""
    own_store = store is None
    store = store or Store.open(s.db_url)
    try:
        settings = load_settings()
        if s.model_dir:
            settings.model_dir = str(s.model_dir)
        # A starting checkpoint only means something to clipcropping.
        scorer = "clipcropping" if s.checkpoint and s.scorer == "auto" else resolve_scorer(s.scorer, settings,
                                                                                            s.weights, s.device)
        if s.rule not in RULES:
            raise ConfigError(f"unknown preference rule {s.rule!r}; choose one of {', '.join(RULES)}")
        photos, report = collect(store, scorer)
        pairs = make_pairs(photos, report, s.rule)
        if report.used < MIN_LABELS:
            raise NotEnoughLabels(f"personalization needs at least {MIN_LABELS} labels and the database has "
                                  f"{report.used} usable ({report.line()}): label {MIN_LABELS - report.used} more crops "
                                  "(clipcrop label PHOTO --accept/--reject/--box, or the review page sorted by "
                                  "\"most uncertain\")")
        paths = sorted({p.photo for p in pairs})
        if len(paths) < 2:
            raise NotEnoughLabels("personalization needs labels on at least 2 photos (some are held out); "
                                  "label another photo")
        held = split_photos(paths, s.holdout, s.seed)
        heldout = [p for p in pairs if p.photo in held]
        train = [p for p in pairs if p.photo not in held]
        if len(heldout) < MIN_HELDOUT_PAIRS or not train:
            raise NotEnoughLabels(f"the labels give {len(train)} training and {len(heldout)} held-out preference "
                                  f"pairs; need at least {MIN_HELDOUT_PAIRS} held out: label more photos")
        by_path = {ph.path: ph for ph in photos}
        if scorer == "clipcropping":
            return _personalize_head(s, store, settings, by_path, report, train, heldout, held, progress)
        return _personalize_light(s, store, settings, scorer, by_path, report, train, heldout, held, progress)
    finally:
        if own_store:
            store.close()


def _summary(report: LabelReport, photos: int, held: set[str], rule: str, train: list[Pair],
             heldout: list[Pair], scorer: str) -> dict[str, Any]:
    return {"scorer": scorer, "labels": report.used, "label_ids": report.used_ids, "photos": photos,
            "heldout_photos": len(held), "rule": rule, "train_pairs": len(train), "heldout_pairs": len(heldout),
            "bad_input": report.to_dict()}


def _activation(s: PersonalizeSettings, before: float, after: float) -> tuple[bool, str]:
    if not s.activate:
        return False, ""
    from clipcrop_plugin.model.checkpoints import may_activate

    if not may_activate(True, before, after):  # also refuses NaN
        return False, (f"held-out agreement fell ({100 * before:.1f}% -> {100 * after:.1f}%); "
                       "the current version stays active")
    return True, ""


def _use(store: Store, settings: Settings, name: str) -> None:
    """Activate a version the one way ``clipcrop models use`` does (model folder pin + database)."""
    from clipcrop_plugin.api import Library

    Library(store, settings).use_model(name)


def _personalize_light(s: PersonalizeSettings, store: Store, settings: Settings, scorer: str,
                       photos: dict[str, LabelledPhoto], report: LabelReport, train: list[Pair],
                       heldout: list[Pair], held: set[str], progress: bool) -> PersonalizeResult:
    from clipcrop_plugin.guard import DEFAULT_WEIGHTS
    from clipcrop_plugin.scoring import learned

    light = _LightScorer(scorer, settings, s.weights, s.device)
    ids = {ph.path: ph.labels[0].photo_id for ph in photos.values() if ph.labels}
    by_id = store.subjects_of(sorted(set(ids.values())))
    subjects = {path: by_id.get(pid, []) for path, pid in ids.items()}
    enc, failed = light.encode(photos, _boxes_by_photo(train + heldout), progress, subjects)
    if failed:
        gone = set(failed)
        report.changed += sum(1 for p in photos.values() if p.path in gone for _ in p.labels)
        train = [p for p in train if p.photo not in gone]
        heldout = [p for p in heldout if p.photo not in gone]
        if len(heldout) < MIN_HELDOUT_PAIRS or not train:
            raise NotEnoughLabels(f"after leaving out {len(gone)} photos that no longer load, {len(train)} training "
                                  f"and {len(heldout)} held-out pairs remain; label more photos")
    xb, xw, bb, bw = enc.matrices(train)
    mean, std = _standardize(np.concatenate([xb, xw]))
    block = np.asarray([n.startswith("embedding_") for n in enc.names]) if scorer == "zeroshot" else None
    if s.ridge is not None:
        ridge = s.ridge
    else:
        ridge, std = _choose_ridge(enc, train, mean, std, s.seed, block)
    w = fit_ranker((xb - xw) / std, bb - bw, ridge)
    hb, hw, hbb, hbw = enc.matrices(heldout)
    before = agreement(hbb, hbw)
    after = agreement(hbb + ((hb - mean) / std) @ w, hbw + ((hw - mean) / std) @ w)
    train_after = agreement(bb + ((xb - mean) / std) @ w, bw + ((xw - mean) / std) @ w)

    model_dir = settings.resolved_model_dir()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    out = Path(s.out) if s.out else learned.personal_dir(model_dir) / f"{scorer}-personal-{stamp}.safetensors"
    if out.suffix != ".safetensors":
        out = out / f"{scorer}-personal-{stamp}.safetensors"
    metrics = {"heldout_agreement_before": before, "heldout_agreement_after": after,
               "train_agreement_after": train_after, "heldout_pairs": len(heldout), "train_pairs": len(train),
               "ridge": ridge}
    summary = _summary(report, len(photos), held, s.rule, train, heldout, scorer)
    base_name = f"{scorer}-built-in" if scorer == "heuristic" else f"zeroshot-{Path(light.source).stem}"
    parent_id = store.register_model_version(base_name, light.source, light.base_hash,
                                             data_summary={"scorer": scorer, "base": True})
    # The last inputs are the guard's terms: their learned weights (per unit of the guard's own
    # weight) are the change of that weight; the rest is the scorer's adjustment.
    # They were fitted in spreads of the built-in scores; the guard will measure in spreads of the
    # personalized ones, so they are converted by the (median) ratio of the two.
    k = len(learned.GUARD_TERMS)
    ratio = enc.spread_ratio(sorted({p.photo for p in train}), mean[:-k], std[:-k], w[:-k])
    shipped = {t: float(getattr(DEFAULT_WEIGHTS, t)) for t in learned.GUARD_TERMS}
    guard = {t: (shipped[t] + float(w[-k + i] / std[-k + i])) / ratio for i, t in enumerate(learned.GUARD_TERMS)}
    metrics["guard_weights"] = {"shipped": shipped, "learned": guard, "spread_ratio": ratio}
    pw = learned.PersonalWeights(scorer, enc.names[:-k], mean[:-k], std[:-k], w[:-k],
                                 base_weights_hash=light.base_hash if scorer == "zeroshot" else None,
                                 parent_sha256=light.base_hash,
                                 provenance={"stage": "personalize", "scorer": scorer, "data": summary,
                                             "metrics": metrics, "parent": light.source}, guard=guard)
    saved = learned.save_version(pw, out)
    activate, refused = _activation(s, before, after)
    version_id = store.register_model_version(saved.name, str(saved.path), saved.sha256, parent_id=parent_id,
                                              data_summary=summary, metrics=metrics)
    if activate:
        if saved.path.parent == learned.personal_dir(model_dir):  # type: ignore[union-attr]
            _use(store, settings, saved.name)
        else:
            refused = f"{saved.path} is outside {learned.personal_dir(model_dir)}; it was registered, not activated"
            activate = False
    return PersonalizeResult(saved.path, saved.sha256, light.base_hash, version_id, activate,  # type: ignore[arg-type]
                             report.used, len(train), len(heldout), before, after, [], scorer, report.line(), refused)


# -- clipcropping: fine-tune the head of the active checkpoint ----------------------------------


def _starting_checkpoint(s: PersonalizeSettings, store: Store, model_dir: Path) -> tuple[Path, Any]:
    from clipcrop_plugin.model.checkpoints import active_checkpoint, checkpoint_dir, is_checkpoint

    if s.checkpoint is not None:
        return Path(s.checkpoint), None
    active = store.active_model_version()
    # The active version may be a heuristic/zeroshot personalization: only our checkpoints start here.
    if active is not None and Path(active.checkpoint_path).is_file() and is_checkpoint(active.checkpoint_path):
        return Path(active.checkpoint_path), active
    info = active_checkpoint(model_dir)
    if info is None:
        raise WeightsError(f"no trained checkpoint to start from: none is active in the database and {checkpoint_dir(model_dir)} "
                           "is empty; import one with `clipcrop models import FILE`, pass --checkpoint, or "
                           "personalize the heuristic or zeroshot scorer instead (--scorer heuristic)")
    return info.path, None


class _Scorer:
    """Head scoring on cached trunk features (layer3, or layer4 when the trunk stays frozen)."""

    def __init__(self, model: Any, device: torch.device, train_trunk: bool) -> None:
        self.model, self.device, self.train_trunk = model, device, train_trunk
        self.cache: dict[str, tuple[torch.Tensor, Any]] = {}

    def add(self, path: str, prepared: Any) -> None:
        import torch

        from . import modeling

        with torch.no_grad():
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
        import torch

        if not pairs:
            return float("nan")
        with torch.no_grad():
            good = 0.0
            for p in pairs:
                b, w = self.scores(p.photo, [p.better, p.worse]).tolist()
                good += 1.0 if b > w else 0.5 if b == w else 0.0
        return good / len(pairs)


def _personalize_head(s: PersonalizeSettings, store: Store, settings: Settings, photos: dict[str, LabelledPhoto],
                      report: LabelReport, train: list[Pair], heldout: list[Pair], held: set[str],
                      progress: bool) -> PersonalizeResult:
    import torch
    from tqdm.auto import tqdm

    from clipcrop_plugin.model import pick_device, save_checkpoint
    from clipcrop_plugin.model.checkpoints import checkpoint_dir, read_checkpoint_info

    from . import modeling
    from .losses import preference_hinge

    model_dir = settings.resolved_model_dir()
    device = pick_device(s.device)
    start, start_version = _starting_checkpoint(s, store, model_dir)
    model, info = modeling.load_model(start, device)
    torch.manual_seed(s.seed)
    paths = sorted({p.photo for p in train + heldout})
    prepared = {p: modeling.prepare_image(model, Path(p)) for p in tqdm(paths, desc="loading photos",
                                                                         disable=not progress, leave=False)}

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
    summary = _summary(report, len(photos), held, s.rule, train, heldout, "clipcropping")
    summary["kinds"] = {k: sum(1 for ph in photos.values() for lab in ph.labels if lab.kind == k)
                        for k in ("accept", "reject", "box", "prefer")}
    metrics = {"heldout_agreement_before": before, "heldout_agreement_after": after,
               "heldout_pairs": len(heldout), "train_pairs": len(train)}
    provenance = {"stage": "personalize", "data": summary,
                  "hyperparameters": {"lr": s.lr, "epochs": s.epochs, "margin": s.margin, "holdout": s.holdout,
                                      "train_trunk_stage": s.train_trunk_stage, "seed": s.seed, "optimizer": "AdamW"},
                  "metrics": metrics, "parent": str(start), "parent_sha256": parent_info.sha256}
    new_info = save_checkpoint(model.to("cpu"), out, provenance=provenance, parent_sha256=parent_info.sha256)
    parent_id = start_version.id if start_version is not None else store.register_model_version(
        parent_info.name, str(parent_info.path), parent_info.sha256, data_summary=parent_info.provenance.get("data")
        if isinstance(parent_info.provenance.get("data"), dict) else None,
        metrics=parent_info.provenance.get("metrics"))
    activate, refused = _activation(s, before, after)
    version_id = store.register_model_version(new_info.name, str(new_info.path), new_info.sha256, parent_id=parent_id,
                                              data_summary=summary, metrics=metrics)
    if activate:
        if not new_info.can_score:
            activate, refused = False, f"{new_info.name} cannot score photos (see `clipcrop models`)"
        elif new_info.path.parent != checkpoint_dir(model_dir):
            activate = False
            refused = f"{new_info.path} is outside {checkpoint_dir(model_dir)}; it was registered, not activated"
        else:
            _use(store, settings, new_info.name)
    return PersonalizeResult(new_info.path, new_info.sha256, parent_info.sha256, version_id, activate,
                             report.used, len(train), len(heldout), before, after, history, "clipcropping",
                             report.line(), refused)
