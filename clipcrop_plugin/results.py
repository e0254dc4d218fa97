"""What a scoring pass produces, independent of where it is printed, stored or written.

These types sit between the scorer and everything downstream of it (store, XMP, CLI, API),
so that none of those needs to import the scorer or the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in upright (displayed) full-resolution pixels; x2/y2 exclusive


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 for empty ones)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class ElementChange:
    """How much one element's score changes from the full frame to the crop."""

    element: str
    change: float

    def to_dict(self) -> dict[str, Any]:
        return {"element": self.element, "change": round(float(self.change), 6)}


@dataclass
class Crop:
    """One scored candidate crop.

    ``aspect`` is the candidate set it came from: ``"grid"`` (GAIC anchors), ``"full"`` (the whole
    frame) or a ratio such as ``"1:1"``. ``rank`` is 1-based within that set. ``elements`` holds the
    ten element scores (order of :data:`clipcrop_plugin.elements.ELEMENT_NAMES`) when the scorer
    explains itself; ``changes`` the same ten minus the full frame's.
    """

    aspect: str
    box: Box
    score: float
    rank: int
    improvement: float
    explanation: list[ElementChange] = field(default_factory=list)
    elements: list[float] | None = None
    changes: list[float] | None = None
    # Set by the subject guard (``clipcrop_plugin.guard``): what this crop does to the photo's
    # subjects ("cuts face", "cuts subject", ...) and, for a set's best crop that had to give
    # something up, one sentence saying what it kept and why.
    flags: list[str] = field(default_factory=list)
    note: str | None = None

    def fractions(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The box as fractions of the upright image (left, top, right, bottom)."""
        x1, y1, x2, y2 = self.box
        return (x1 / width, y1 / height, x2 / width, y2 / height)

    def to_dict(self) -> dict[str, Any]:
        return {
            "aspect": self.aspect,
            "box": [int(v) for v in self.box],
            "score": round(float(self.score), 6),
            "rank": int(self.rank),
            "improvement": round(float(self.improvement), 6),
            "explanation": [c.to_dict() for c in self.explanation],
            **({"flags": list(self.flags)} if self.flags else {}),
            **({"note": self.note} if self.note else {}),
        }


# A grid crop is suggested only when it beats the full frame by at least this much (in score
# units of the scorer; ``Settings.keep_margin`` overrides it). Chosen from the quality benchmark
# (docs/quality.md): it agrees best with crop/keep judged by eye (0.10-0.15 is a plateau; lower,
# well-composed photos get trims nobody would apply; higher, a lost subject is kept lost).
DEFAULT_KEEP_MARGIN = 0.12
KEEP_REASON = "keep as is: no crop of the free grid beats the full frame by the keep margin"
FREE_SET = "grid"


def is_keep(aspect: str | None, improvement: float | None, margin: float | None = None) -> bool:
    """The crop-or-keep rule, for a selected crop known only by its set and improvement.

    Only the free ``grid`` set can end in "keep": a ratio the user asked for always gets its best
    crop. Every listing (CLI, API, review page) and the XMP writer decide through this function.
    """
    if aspect != FREE_SET or improvement is None:
        return False
    return float(improvement) < (DEFAULT_KEEP_MARGIN if margin is None else float(margin))


def configured_keep_margin() -> float:
    """``keep_margin`` from the user's settings, or the default when they cannot be read."""
    from .config import load_settings
    from .errors import ConfigError

    try:
        return float(load_settings().keep_margin)
    except (ConfigError, OSError, ValueError):
        return DEFAULT_KEEP_MARGIN


@dataclass(frozen=True)
class Choice:
    """What clipcrop suggests for a photo: a crop, or keeping the full frame (``crop is None``)."""

    crop: Crop | None
    reason: str

    @property
    def keep(self) -> bool:
        return self.crop is None


@dataclass(frozen=True)
class Subject:
    """Something a crop must respect: a face, a person or a salient object.

    ``kind`` is ``"face"``, ``"profile_face"``, ``"person"``, ``"salient"`` or ``"content"`` (the
    picture inside uniform borders such as letterbox bands or a frame: no crop shows the border);
    ``box`` is in upright full-resolution pixels like every other box; ``score`` is the detector's
    confidence in [0, 1].
    Subjects are found once per photo (``clipcrop_plugin.subjects``) and stored with it.
    """

    kind: str
    box: Box
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "box": [int(v) for v in self.box], "score": round(float(self.score), 4)}


@dataclass
class PhotoInfo:
    """What intake learned about a photo file (sizes in pixels, orientation 1..8)."""

    path: str
    width: int  # upright (displayed) width
    height: int
    stored_width: int  # width of the stored pixel array, before EXIF orientation
    stored_height: int
    orientation: int
    has_orientation_tag: bool
    format: str
    taken_at: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None


@dataclass
class Suggestion:
    """Every scored candidate of one photo, or the reason it could not be scored.

    ``crops`` holds all candidates, each ranked within its ``aspect`` set; ``best(aspect)`` and
    ``top(n)`` select from them. ``full_frame`` is the uncropped photo's own crop entry.
    """

    path: str
    ok: bool
    error: str | None = None
    info: PhotoInfo | None = None
    scorer: str | None = None
    weights_hash: str | None = None
    device: str | None = None
    crops: list[Crop] = field(default_factory=list)
    full_frame: Crop | None = None
    subjects: list[Subject] = field(default_factory=list)
    subjects_error: str | None = None  # why subject detection failed for this photo (it was scored without)

    def aspects(self) -> list[str]:
        """The candidate sets present, in first-seen order, without ``"full"``."""
        seen: list[str] = []
        for c in self.crops:
            if c.aspect != "full" and c.aspect not in seen:
                seen.append(c.aspect)
        return seen

    def best(self, aspect: str | None = None) -> Crop | None:
        """The rank-1 crop of ``aspect``; without ``aspect``, the photo's primary crop.

        The primary crop is the best of the ratio sets the user asked for (by score) when there
        are any, else the grid's rank 1. It is what gets written and listed, unless
        :meth:`choice` says to keep the full frame. Ranks come from the subject guard, so a rank
        1 may score below a candidate that cuts a face.
        """
        firsts = [c for c in self.crops if c.aspect != "full" and c.rank == 1 and (aspect is None or c.aspect == aspect)]
        if not firsts:
            pool = [c for c in self.crops if c.aspect != "full" and (aspect is None or c.aspect == aspect)]
            return max(pool, key=lambda c: c.score) if pool else None
        if aspect is not None:
            return firsts[0]
        ratios = [c for c in firsts if c.aspect != FREE_SET]
        return max(ratios or firsts, key=lambda c: c.score)

    def choice(self, aspect: str | None = None, margin: float | None = None) -> Choice:
        """Crop or keep: the crop to apply (of ``aspect`` when given), or ``crop=None`` to keep.

        A requested ratio (``aspect``, or a ratio set that was scored) always gets its best crop;
        the free grid's best is suggested only when it beats the full frame by ``margin``
        (default :data:`DEFAULT_KEEP_MARGIN`).
        """
        crop = self.best(aspect)
        if crop is None:
            return Choice(None, "keep as is: no candidate crop fits this image")
        if is_keep(crop.aspect, crop.improvement, margin):
            return Choice(None, KEEP_REASON)
        return Choice(crop, crop.note or f"best {crop.aspect} crop")

    def top(self, n: int) -> list[Crop]:
        """The ``n`` best crops of every candidate set, set by set."""
        out: list[Crop] = []
        for aspect in self.aspects():
            ranked = sorted((c for c in self.crops if c.aspect == aspect), key=lambda c: c.rank)
            out.extend(ranked[:n])
        return out

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """The JSON form printed by ``clipcrop suggest --json`` (boxes in upright pixels)."""
        info = self.info
        crops = self.top(top) if top else [c for c in self.crops if c.aspect != "full"]
        return {
            "path": self.path,
            "ok": self.ok,
            "error": self.error,
            "width": info.width if info else None,
            "height": info.height if info else None,
            "orientation": info.orientation if info else None,
            "scorer": self.scorer,
            "choice": self._choice_dict(),
            "crops": [c.to_dict() for c in crops],
            "subjects": [x.to_dict() for x in self.subjects],
            **({"subjects_error": self.subjects_error} if self.subjects_error else {}),
        }

    def _choice_dict(self) -> dict[str, Any] | None:
        if not self.ok:
            return None
        ch = self.choice(margin=configured_keep_margin())
        return {"keep": ch.keep, "aspect": ch.crop.aspect if ch.crop else None,
                "box": [int(v) for v in ch.crop.box] if ch.crop else None, "reason": ch.reason}
