"""Personalizations of the weights-free and zero-shot scorers: small learned re-weightings.

``clipcrop-train personalize`` learns, from the owner's labels, a linear ranking adjustment on
top of a scorer's own score:

    score = built-in score + ((x - mean) / std) . w

where ``x`` is what the scorer already measures for each crop (:func:`heuristic_inputs`: the
heuristic's score terms, its ten elements and where the interest sits in the crop;
:func:`zeroshot_inputs`: zeroshot's CLIP crop embedding beside those same heuristic inputs)
plus the crop's geometry (size, aspect
ratio, position, and their squares, so a preferred size or ratio can be a peak rather than
"bigger is better"). ``w = 0`` is the scorer as shipped, so a version can only differ from it
where the labels said so. For the heuristic, the terms it already adds up are among ``x``:
learning ``w`` is learning the weights it gives its features and elements.

On disk a version is ``<model dir>/personal/NAME.safetensors`` (``mean``, ``std``, ``w``) and its
``NAME.json`` sidecar (scorer, input names, sha256, parent, the labels it used, held-out agreement
before and after). ``personal/ACTIVE-<scorer>`` names the version a scorer loads; without it
the scorer runs as shipped. A personalized scorer reports its own ``weights_hash``, so the
database keeps the runs of every version apart and switching back re-activates the old runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import WeightsError
from ..model.weights import sha256_file

if TYPE_CHECKING:
    from ..candidates import CandidateSet
    from ..config import Settings
    from ..guard import GuardWeights
    from .heuristic import HeuristicFeatures

log = logging.getLogger("clipcrop")

FORMAT = "clipcrop-personal"
FORMAT_VERSION = 1
PERSONAL_SUBDIR = "personal"
SCORERS = ("heuristic", "zeroshot")
# The guard's composition weights a personalization learns (clipcrop_plugin.guard.GuardWeights
# fields): placement of the subject and tightness (edges pressing on it, how much of it is kept).
GUARD_TERMS = ("place", "cramp", "cover")
GEOMETRY_NAMES = ("area", "area_sq", "log_aspect", "log_aspect_sq", "box_x", "box_x_sq", "box_y", "box_y_sq")


def personal_dir(model_dir: Path) -> Path:
    """Where personalization versions live inside a model folder."""
    return Path(model_dir) / PERSONAL_SUBDIR


def heuristic_builtin_weights() -> dict[str, float]:
    """The heuristic's own weights, as shipped: what every heuristic personalization starts from."""
    from .heuristic import HeuristicScorer as H

    return {"retain": H.w_retain, "density": H.w_density, "composition": H.w_composition,
            "lighting": H.w_lighting, "color": H.w_color, "border": H.w_border, "smoothing": H.smoothing}


def heuristic_base_hash() -> str:
    """The sha256 that stands for the heuristic as shipped (the parent of its personalizations)."""
    return hashlib.sha256(json.dumps(heuristic_builtin_weights(), sort_keys=True).encode()).hexdigest()


def geometry(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """(N, 8) crop geometry: area fraction, log(w/h), box centre (fractions), each with its square."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    bw = np.maximum(b[:, 2] - b[:, 0], 1.0)
    bh = np.maximum(b[:, 3] - b[:, 1], 1.0)
    area = bw * bh / max(float(width) * float(height), 1.0)
    la = np.log(bw / bh)
    bx = (b[:, 0] + b[:, 2]) / (2.0 * max(float(width), 1.0))
    by = (b[:, 1] + b[:, 3]) / (2.0 * max(float(height), 1.0))
    return np.stack([area, area**2, la, la**2, bx, bx**2, by, by**2], axis=1)


def heuristic_input_names() -> list[str]:
    from ..elements import ELEMENT_NAMES
    from .heuristic import TERM_NAMES

    return [*TERM_NAMES[:6], *ELEMENT_NAMES, "centroid_x", "centroid_y", "centroid_x_sq", "centroid_y_sq",
            *GEOMETRY_NAMES]


def heuristic_inputs(f: HeuristicFeatures, boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """The heuristic's per-crop inputs (see :func:`heuristic_input_names`)."""
    u, v = f.terms[:, 6], f.terms[:, 7]
    return np.concatenate([f.terms[:, :6], f.elements, np.stack([u, v, u**2, v**2], axis=1),
                           geometry(boxes, width, height)], axis=1)


def zeroshot_input_names(dim: int) -> list[str]:
    return [f"embedding_{i}" for i in range(dim)] + heuristic_input_names() + ["zeroshot_score"]


def crop_features(loaded: Any, cands: CandidateSet) -> np.ndarray:
    """The heuristic's per-crop inputs (:func:`heuristic_inputs`) measured on ``loaded``.

    Zeroshot's head gets them beside the embedding: where the interest sits in the crop, how
    much of it the crop keeps, its size, aspect and position are what taste about tightness and
    placement is made of, and a tower's pooled embedding need not show them (a random or a
    weak tower's does not at all)."""
    from .heuristic import HeuristicScorer

    f = HeuristicScorer(None).features(loaded, cands)
    return heuristic_inputs(f, np.asarray(cands.boxes), cands.width, cands.height)


def zeroshot_inputs(embeddings: np.ndarray, crop: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Zeroshot's per-crop inputs: the (normalized) CLIP crop embedding, the crop's features
    (:func:`crop_features`) and zeroshot's own score (so an owner who disagrees with it can turn
    it down)."""
    return np.concatenate([np.asarray(embeddings, dtype=np.float64), np.asarray(crop, dtype=np.float64),
                           np.asarray(base, dtype=np.float64).reshape(-1, 1)], axis=1)


def guard_inputs(boxes: np.ndarray, scores: np.ndarray, groups: Any, subjects: Any, width: int, height: int,
                 full_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the subject guard adds to each crop's score, in the scorer's units: ``(shipped, per,
    tiers)`` with ``shipped`` (N,) its whole adjustment as shipped (tiers included), ``per`` (N, K)
    the part each :data:`GUARD_TERMS` weight multiplies (per unit of that weight) and ``tiers``
    (N,) the guard's hard tier of each crop. So the guarded score under learned weights ``g`` is
    ``scores + shipped + per @ (g - shipped weights)``.

    Measured through :func:`clipcrop_plugin.guard.guard` itself, so this is the guard's own
    arithmetic whatever it becomes."""
    from dataclasses import replace

    from ..guard import DEFAULT_WEIGHTS, guard

    raw = np.asarray(scores, dtype=np.float64)

    def run(w: GuardWeights) -> np.ndarray:
        return guard(boxes, raw, groups, subjects, width, height, full_index, w).scores

    zero = replace(DEFAULT_WEIGHTS, **{k: 0.0 for k in GUARD_TERMS})
    g0 = run(zero)
    per = np.stack([run(replace(zero, **{k: 1.0})) - g0 for k in GUARD_TERMS], axis=1)
    shipped = guard(boxes, raw, groups, subjects, width, height, full_index, DEFAULT_WEIGHTS)
    return shipped.scores - raw, per, np.asarray(shipped.tiers, dtype=np.float64)


@dataclass
class PersonalWeights:
    """One personalization version: ``adjust(x) = ((x - mean) / std) . w``."""

    scorer: str
    names: list[str]
    mean: np.ndarray
    std: np.ndarray
    w: np.ndarray
    path: Path | None = None
    sha256: str = ""
    weights_hash: str = ""
    base_weights_hash: str | None = None
    parent_sha256: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    guard: dict[str, float] = field(default_factory=dict)  # learned guard weights (GUARD_TERMS), {} = built in

    @property
    def name(self) -> str:
        return self.path.stem if self.path is not None else "(unsaved)"

    def adjust(self, x: np.ndarray) -> np.ndarray:
        """The learned part of the score for inputs ``x`` (N, K)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.w):
            raise WeightsError(f"personalization {self.name} expects {len(self.w)} inputs per crop, got {x.shape}")
        return ((x - self.mean) / self.std) @ self.w

    def score(self, f: HeuristicFeatures, cands: CandidateSet) -> np.ndarray:
        """Heuristic score of ``cands`` under this version (before the scorer's smoothing)."""
        return f.base + self.adjust(heuristic_inputs(f, np.asarray(cands.boxes), cands.width, cands.height))

    def effective_term_weights(self) -> dict[str, float]:
        """For the heuristic: built-in weight + learned change of each term the score adds up, per raw unit."""
        from .heuristic import HeuristicScorer as H

        built_in = {"retain": H.w_retain, "log_density": H.w_density, "composition": H.w_composition,
                    "lighting": H.w_lighting, "color": H.w_color, "border_cut": -H.w_border}
        out = {}
        for i, n in enumerate(self.names):
            out[n] = built_in.get(n, 0.0) + float(self.w[i] / self.std[i])
        return out

    @property
    def guard_weights(self) -> GuardWeights | None:
        """The guard's composition weights this version learned (None: the guard's own)."""
        if not self.guard:
            return None
        from ..guard import GuardWeights

        return GuardWeights(**{k: float(v) for k, v in self.guard.items() if k in GUARD_TERMS})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "guard_weights": dict(self.guard), "scorer": self.scorer, "path": str(self.path) if self.path else None,
                "sha256": self.sha256, "weights_hash": self.weights_hash, "parent_sha256": self.parent_sha256,
                "base_weights_hash": self.base_weights_hash, "created": self.created, "provenance": self.provenance}


def _combined_hash(scorer: str, sha: str, base: str | None) -> str:
    if scorer == "heuristic" or not base:
        return sha
    # A zeroshot head only means something on the CLIP weights it was trained on.
    return hashlib.sha256(f"{base}:{sha}".encode()).hexdigest()


def save_version(pw: PersonalWeights, path: Path) -> PersonalWeights:
    """Write ``pw`` as NAME.safetensors + NAME.json (temporaries renamed into place, sidecar last)."""
    from safetensors.numpy import save_file

    target = Path(path).with_suffix(".safetensors")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise WeightsError(f"{target} already exists; choose another name")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".safetensors")
    os.close(fd)
    try:
        # The guard weights ride in the file's metadata, so the sha256 covers them too.
        save_file({"mean": pw.mean.astype(np.float64), "std": pw.std.astype(np.float64),
                   "w": pw.w.astype(np.float64)}, tmp,
                  metadata={"format": FORMAT, "scorer": pw.scorer, "guard": json.dumps(pw.guard, sort_keys=True)})
        digest = sha256_file(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    side = {"format": FORMAT, "format_version": FORMAT_VERSION, "scorer": pw.scorer, "sha256": digest,
            "weights_hash": _combined_hash(pw.scorer, digest, pw.base_weights_hash),
            "base_weights_hash": pw.base_weights_hash, "parent_sha256": pw.parent_sha256,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "inputs": list(pw.names),
            "provenance": pw.provenance}
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(side, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, target.with_suffix(".json"))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return read_version(target)


def read_version(path: str | os.PathLike[str]) -> PersonalWeights:
    """Load and verify a version (sha256 of the weights against the sidecar)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    target = Path(path).expanduser().with_suffix(".safetensors")
    side = target.with_suffix(".json")
    if not target.is_file() or not side.is_file():
        raise WeightsError(f"personalization {target.stem} not found (need {target.name} and {side.name})")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"unreadable personalization sidecar {side}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise WeightsError(f"{side.name} is not a clipcrop personalization")
    if int(data.get("format_version", 0)) > FORMAT_VERSION or data.get("scorer") not in SCORERS:
        raise WeightsError(f"{target.name} was written by a newer clipcrop")
    actual = sha256_file(target)
    if actual != data.get("sha256"):
        raise WeightsError(f"personalization {target.name} does not match its sidecar sha256; refusing to load it")
    try:
        t = load_file(str(target))
        mean, std, w = (np.asarray(t[k], dtype=np.float64) for k in ("mean", "std", "w"))
        with safe_open(str(target), "np") as fh:
            guard = json.loads((fh.metadata() or {}).get("guard") or "{}")
        if not isinstance(guard, dict) or not all(k in GUARD_TERMS and np.isfinite(float(v)) for k, v in guard.items()):
            raise ValueError(f"unexpected guard weights {guard!r}")
    except Exception as exc:
        raise WeightsError(f"unreadable personalization {target.name}: {exc}") from exc
    names = list(data.get("inputs") or [])
    if not (len(names) == len(mean) == len(std) == len(w)) or not np.all(std > 0):
        raise WeightsError(f"personalization {target.name} is inconsistent (inputs, mean, std and w differ in size)")
    return PersonalWeights(data["scorer"], names, mean, std, w, target, actual, str(data["weights_hash"]),
                           data.get("base_weights_hash"), data.get("parent_sha256"),
                           dict(data.get("provenance") or {}), str(data.get("created", "")),
                           {k: float(v) for k, v in guard.items()})


def _pin(model_dir: Path, scorer: str) -> Path:
    return personal_dir(model_dir) / f"ACTIVE-{scorer}"


def active_version(model_dir: Path, scorer: str) -> PersonalWeights | None:
    """The version ``scorer`` loads from ``model_dir`` (``None``: the scorer as shipped)."""
    pin = _pin(model_dir, scorer)
    if not pin.is_file():
        return None
    name = pin.read_text(encoding="utf-8").strip()
    if not name:
        return None
    pw = read_version(personal_dir(model_dir) / Path(name).name)
    if pw.scorer != scorer:
        raise WeightsError(f"{pin} names {name}, a personalization of {pw.scorer}, not of {scorer}")
    return pw


def load_active(scorer: str, settings: Settings | None, base_weights_hash: str | None = None) -> PersonalWeights | None:
    """What a scorer's ``create()`` calls: the active version, or ``None`` with a warning when it
    cannot be used (a broken file never stops scoring; the scorer then runs as shipped)."""
    if settings is None:
        return None
    try:
        pw = active_version(settings.resolved_model_dir(), scorer)
    except WeightsError as exc:
        log.warning("ignoring the active %s personalization: %s", scorer, exc)
        return None
    if pw is not None and pw.base_weights_hash and base_weights_hash and pw.base_weights_hash != base_weights_hash:
        log.warning("ignoring personalization %s: it was trained on other %s weights (%s, now %s)", pw.name,
                    scorer, pw.base_weights_hash[:12], base_weights_hash[:12])
        return None
    return pw


def list_versions(model_dir: Path) -> list[PersonalWeights]:
    """Readable versions in the model folder, oldest first."""
    folder = personal_dir(model_dir)
    out = []
    for p in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            out.append(read_version(p))
        except WeightsError:
            continue
    return sorted(out, key=lambda v: (v.created, v.name))


def set_active_version(model_dir: Path, name: str) -> str:
    """Pin a version by name, or give a scorer name (``heuristic``, ``zeroshot``) to switch that
    scorer back to its built-in weights. Returns a one-line description of what changed."""
    if name in SCORERS:
        _pin(model_dir, name).unlink(missing_ok=True)
        return f"{name} now scores with its built-in weights (personalizations stay in {personal_dir(model_dir)})"
    pw = read_version(personal_dir(model_dir) / Path(name).with_suffix(".safetensors").name)
    pin = _pin(model_dir, pw.scorer)
    tmp = pin.with_name(pin.name + ".part")
    tmp.write_text(pw.path.name + "\n", encoding="utf-8")  # type: ignore[union-attr]
    os.replace(tmp, pin)
    return f"{pw.scorer} now uses personalization {pw.name} (weights hash {pw.weights_hash[:12]})"


def is_version_name(model_dir: Path, name: str) -> bool:
    """Whether ``name`` is a personalization version in the model folder, or a scorer to reset."""
    return name in SCORERS or (personal_dir(model_dir) / Path(name).with_suffix(".safetensors").name).is_file()
