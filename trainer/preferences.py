"""Labels to pairwise preferences, and what is wrong with the labels we were given.

Every kind of label becomes pairs (better box, worse box) within one photo:

* ``prefer`` (a pairwise choice): the chosen box over the other one, under every rule.
* ``accept`` (a suggestion the owner kept) and ``box`` (a crop the owner drew or adjusted): the
  label's box is what the owner wants. Two rules say what else that implies:

  - ``far4``: the box over up to 4 of the photo's candidates that barely overlap it
    (IoU < 0.5, spread evenly over the candidate list), and over every rejected box of the photo.
  - ``iou``: the same, plus graded pairs between candidates: of two candidates, the one that
    overlaps the owner's box more (by at least 0.25 IoU) is preferred. One label then teaches
    "crops like this one" rather than only "this one, not those".

  With several wanted boxes on one photo (say its 1:1 and its 4:5 suggestion), a candidate's
  overlap is with the nearest of them, so one is never the other's negative. Which rule is the
  default is decided by ``benchmarks/personalize.py`` (see docs/personalization.md).

* ``box`` also: the drawn box over the suggestion of its set that it replaced (the review page
  adjusts the shown crop), unless the two are nearly the same (IoU >= 0.95).
* ``reject``: up to 4 candidates that barely overlap the rejected box over it (both rules).

"Candidates" are the crops of the photo's stored run (what the owner was shown), else the GAIC
grid. Bad input is counted, never fatal: labels of photos deleted or no longer on disk, of photos
whose content changed since they were labelled (other size, other content hash), and labels that
contradict each other (one implies A over B, another B over A: both) are left out; labels given on another
scorer's suggestions are counted but used, since a box the owner chose is their taste whichever
scorer proposed it. :class:`LabelReport` says it all in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipcrop_plugin.candidates import generate_candidates
from clipcrop_plugin.errors import ClipcropError
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.results import box_iou as iou

RULES = ("iou", "far4")
DEFAULT_RULE = "iou"
FAR_IOU = 0.5  # "barely overlaps": below this IoU a candidate is a different crop
NEGATIVES_PER_LABEL = 4
GRADED_PAIRS_PER_LABEL = 12
GRADED_GAP = 0.25
ADJUSTED_IOU = 0.95  # a drawn box this close to the suggestion it replaced is the same crop

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Pair:
    """``better`` is preferred over ``worse`` on ``photo`` (upright pixels), because of label ``label_id``."""

    photo: str
    better: Box
    worse: Box
    label_id: int = 0


@dataclass
class LabelReport:
    """How many labels there were and why some were not used."""

    labels: int = 0
    used: int = 0
    deleted: int = 0
    changed: int = 0
    contradictory: int = 0
    other_scorer: int = 0
    used_ids: list[int] = field(default_factory=list)

    def line(self) -> str:
        """One line for the user: ``used 48 of 53 labels (3 contradictory, ...)``."""
        parts = [f"{n} {what}" for n, what in ((self.contradictory, "contradictory"),
                                               (self.changed, "for photos changed since labelling"),
                                               (self.deleted, "for deleted or missing photos")) if n]
        line = f"used {self.used} of {self.labels} labels"
        if parts:
            line += " (left out: " + ", ".join(parts) + ")"
        if self.other_scorer:
            line += f"; {self.other_scorer} were given on another scorer's suggestions (used: a chosen box is the owner's taste)"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "used": self.used, "deleted": self.deleted, "changed": self.changed,
                "contradictory": self.contradictory, "other_scorer": self.other_scorer}




def _box(b: Sequence[Any]) -> Box:
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def _spread(items: list[Box], k: int) -> list[Box]:
    """Up to ``k`` items evenly spread over the list (deterministic, reproducible runs)."""
    return items[:: max(1, len(items) // k)][:k] if items else []


def pairs_for_photo(path: str, labels: Sequence[Any], candidates: np.ndarray, rule: str = DEFAULT_RULE,
                    shown: dict[str, Box] | None = None) -> list[Pair]:
    """Preference pairs from one photo's labels (see the module doc) over its ``candidates`` (N, 4);
    ``shown``: the suggestion (rank-1 crop) of each set, which a drawn box of that set replaced."""
    if rule not in RULES:
        raise ValueError(f"unknown preference rule {rule!r}; choose one of {', '.join(RULES)}")
    cands = [_box(c) for c in np.asarray(candidates).reshape(-1, 4)]
    rejected = [_box(lab.box) for lab in labels if lab.kind == "reject" and lab.box is not None]
    wanted = [_box(lab.box) for lab in labels if lab.kind in ("accept", "box") and lab.box is not None]
    # Several wanted crops of one photo (say its 1:1 and its 4:5 suggestion) are all good: a
    # candidate's likeness to "what the owner wants" is its overlap with the nearest of them, so
    # one wanted crop never becomes the other's negative.
    likeness = [max((iou(c, w) for w in wanted), default=0.0) for c in cands]
    out: list[Pair] = []
    graded_done = False
    for lab in labels:
        if lab.box is None:
            continue
        box = _box(lab.box)
        if lab.kind == "prefer":
            if lab.other_box is not None:
                out.append(Pair(path, box, _box(lab.other_box), lab.id))
            continue
        if lab.kind == "reject":
            far = [c for c in cands if iou(c, box) < FAR_IOU]
            out.extend(Pair(path, c, box, lab.id) for c in _spread(far, NEGATIVES_PER_LABEL))
            continue
        far = [c for c, o in zip(cands, likeness) if o < FAR_IOU]
        out.extend(Pair(path, box, c, lab.id) for c in _spread(far, NEGATIVES_PER_LABEL))
        replaced = (shown or {}).get(lab.aspect or "")
        if lab.kind == "box" and replaced is not None and iou(replaced, box) < ADJUSTED_IOU:
            out.append(Pair(path, box, replaced, lab.id))
        out.extend(Pair(path, box, r, lab.id) for r in rejected if r != box)
        if rule == "iou" and len(cands) > 1 and not graded_done:
            graded_done = True  # graded pairs follow the likeness to all wanted crops: once per photo
            # The most like the wanted crops against the least like them, paired off in a fixed
            # interleaving (reproducible, and every candidate of both thirds gets used).
            order = np.argsort(-np.asarray(likeness), kind="stable")
            third = max(1, len(order) // 3)
            top, bottom = order[:third], order[::-1][:third]
            graded: list[Pair] = []
            want = GRADED_PAIRS_PER_LABEL * len(wanted)
            for k in range(len(top) * len(bottom)):
                if len(graded) >= want:
                    break
                i, j = int(top[k % len(top)]), int(bottom[(k // len(top) + k) % len(bottom)])
                if likeness[i] - likeness[j] >= GRADED_GAP:
                    graded.append(Pair(path, cands[i], cands[j], lab.id))
            out.extend(dict.fromkeys(graded))
    return out


def drop_contradictions(pairs: list[Pair]) -> tuple[list[Pair], set[int]]:
    """Remove duplicates, and every pair of labels that contradict each other (one says A over B,
    another B over A); returns (kept pairs, ids of the contradictory labels)."""
    seen: dict[tuple[str, Box, Box], Pair] = {}
    for p in pairs:
        seen.setdefault((p.photo, p.better, p.worse), p)
    bad: set[int] = set()
    for (photo, b, w), p in seen.items():
        rev = seen.get((photo, w, b))
        if rev is not None:
            bad.update({p.label_id, rev.label_id})
    return [p for p in seen.values() if p.label_id not in bad], bad


@dataclass
class LabelledPhoto:
    """A photo that has usable labels: its labels and the candidate boxes they are compared with."""

    path: str
    width: int
    height: int
    labels: list[Any]
    candidates: np.ndarray
    shown: dict[str, Box] = field(default_factory=dict)  # rank-1 crop of each set: what the owner was shown


def collect(store: Any, scorer: str | None = None) -> tuple[list[LabelledPhoto], LabelReport]:
    """Every label in ``store`` grouped by photo, with bad input counted in the report.

    ``scorer``: the scorer being personalized (labels given on another scorer's runs are counted).
    """
    labels = [lab for lab in store.labels() if lab.box is not None]
    report = LabelReport(labels=len(labels))
    by_photo: dict[int, list[Any]] = {}
    for lab in labels:
        by_photo.setdefault(lab.photo_id, []).append(lab)
    out: list[LabelledPhoto] = []
    for _pid, labs in by_photo.items():
        try:
            detail = store.photo_detail(labs[0].photo_id)
        except Exception:  # noqa: BLE001 - the row went away between the two reads: a deleted photo
            report.deleted += len(labs)
            continue
        ph = detail.photo
        if ph.status == "gone" or not Path(ph.path).is_file():
            report.deleted += len(labs)
            continue
        width, height = ph.width, ph.height
        if width is None or height is None:  # recorded but never scored: measure the file
            try:
                info = load_image(ph.path, min_side=32).info
            except ClipcropError:
                report.deleted += len(labs)
                continue
            width, height = info.width, info.height
        runs = {r.id: r for r in detail.runs}
        fresh = []
        for lab in labs:
            run = runs.get(lab.run_id) if lab.run_id is not None else None
            resized = lab.width is not None and (lab.width, lab.height) != (width, height)
            rehashed = run is not None and ph.content_hash is not None and run.content_hash != ph.content_hash
            if resized or rehashed:
                report.changed += 1
                continue
            if scorer is not None and run is not None and run.scorer != scorer:
                report.other_scorer += 1
            fresh.append(lab)
        if not fresh:
            continue
        if detail.candidates:
            cands = np.asarray([c.box for c in detail.candidates if c.aspect != "full"], dtype=np.float64)
        else:
            cands = generate_candidates(int(width), int(height), grid=True).boxes.astype(np.float64)
        shown = {a: _box(c.box) for a, c in detail.best.items()}
        out.append(LabelledPhoto(ph.path, int(width), int(height), fresh, cands, shown))
    return out, report


def make_pairs(photos: Sequence[LabelledPhoto], report: LabelReport, rule: str = DEFAULT_RULE) -> list[Pair]:
    """All preference pairs of ``photos`` under ``rule``, contradictions dropped and counted in ``report``."""
    pairs: list[Pair] = []
    clash: set[int] = set()
    for ph in photos:
        pairs.extend(pairs_for_photo(ph.path, ph.labels, ph.candidates, rule, ph.shown))
        # Wanted and rejected, the same crop (a change of mind): neither label says anything.
        rejected = [lab for lab in ph.labels if lab.kind == "reject"]
        for lab in ph.labels:
            if lab.kind in ("accept", "box"):
                for r in rejected:
                    if iou(_box(lab.box), _box(r.box)) >= ADJUSTED_IOU:
                        clash.update({lab.id, r.id})
    kept, bad = drop_contradictions(pairs)
    bad |= clash
    kept = [p for p in kept if p.label_id not in bad]
    report.contradictory = len(bad)
    used = {lab.id for ph in photos for lab in ph.labels} - bad
    report.used = len(used)
    report.used_ids = sorted(used)
    return kept
