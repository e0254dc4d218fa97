"""The candidate guard: whatever the scorer, a set's best crop respects the photo's subjects.

Applied by :func:`clipcrop_plugin.suggest.build_suggestion` after any scorer (heuristic,
zeroshot, clipcropping or a plugin's), as a pure function of the candidate boxes, their scores,
their sets, the subjects and the image size. It never invents a box; it re-ranks within each set:

1. Hard order (lexicographic, before any score): a crop that slices a face or a head, or leaves
   a main face out, ranks below every crop of its set that keeps them; then a crop that keeps
   less than 90% of the main subject ranks below every crop that keeps it.
2. Within a tier the scorer's score decides, nudged by composition terms measured in units of
   the spread of that scorer's scores over the photo's candidates (so they weigh the same for a
   scorer whose scores span 0.001 and one whose scores span 10): the subject's anchor (eyes or
   object centre) on a thirds line or the centre, room in front of a profile, no subject pressed
   against a crop edge, as much of the main subject as fits when a ratio cannot hold it all, the
   top of a standing object (a tower, a bottle) with room above it, no bystander sliced in half,
   no crop that keeps a face and ends on that person's legs or slices the side off their
   shoulders (their body implied by the face when no person box was found), and for ratio sets without a subject a mild
   pull towards the centre instead of hugging an edge or a corner (towards an unsure object's
   side when there is one) and towards the set's larger crops (unsure, keep more of the photo).
3. A photo with uniform borders (letterbox bands, a frame; the ``"content"`` subject): every
   crop that shows them, the full frame included, costs the share of its area they fill, so
   the crop that removes them beats "keep as is".

The adjusted score is what clipcrop reports (``Crop.score``): the tier penalty is included, so a
face-cutting crop also shows as worse than the full frame and the grid's crop-or-keep rule keeps
the photo as it is instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .candidates import Focus, _area, picture_of, subject_focus
from .results import Box, Subject

MAIN_KEEP = 0.9  # share of the main subject a crop must keep (the benchmark's criterion too)
# A salient object found with less confidence than this is a hint, not a constraint: it weighs
# in the composition terms (scaled by its confidence) but does not override the scorer. Below
# it, the saliency detector's boxes are unstable (the same scene re-encoded gives another box).
SALIENT_TRUST = 0.5
SALIENT_MAX_SHARE = 0.4  # a salient box over more of the frame than this is the scene, not a subject
# Composition terms, in spreads of the scorer's scores.
W_PLACE = 1.0
W_PLACE_SALIENT = 0.4  # share of it for a salient object, whose box is less certain than a face
W_CRAMP = 0.4
W_BODY_CUT = 0.5
W_HUG = 1.0
W_SIZE_UNSURE = 2.0  # per share of its set's largest crop kept, without a trusted subject
HUG_ACROSS = 1.5  # the sideways part weighs more: an unsure object's side informs it (see guard())
W_COVER = 2.0  # per share of the main subject kept
W_COVER_UNHELD = 12.0  # more per share, in a ratio set where no crop can hold it all: keep the most
W_CENTRE_UNHELD = 3.0  # per half crop width off a too-wide subject's centre (see guard())
W_FEET = 1.5  # a crop that keeps a face and cuts that person's legs (see _implied_bodies)
STANDING_HEIGHT = 8.5  # a standing person's height in face-box heights (see _implied_bodies)
W_TORSO = 1.5  # a crop that keeps a face and cuts the side off that person's torso (see _implied_bodies)
TORSO_HALF = 1.6  # half the shoulders' width, in face-box widths
LEGS_FROM = 3.5  # where the legs start (the thighs, below the hips), in face-box heights from its top
W_BORDER = 20.0  # per share of a crop's area that is a uniform border (letterbox band, frame)
W_TOP = 1.5  # per share of a standing object's top (and the room above it) kept (see guard())
W_TOP_UNHELD = 6.0  # per share of a too-tall subject's top third kept (see guard())
# Tier penalties, in spreads: large enough that no composition term can undo them.
W_TIER_FACE = 3.0
W_TIER_MAIN = 1.5
_FREE_SETS = ("grid", "full")


@dataclass(frozen=True)
class GuardWeights:
    """The composition terms' weights (in spreads), the module constants by default. A
    personalization may learn some of them from the owner's labels; the hard tiers (never cut a
    face or the main subject when a candidate keeps it) are not among them."""

    place: float = W_PLACE
    place_salient: float = W_PLACE_SALIENT
    cramp: float = W_CRAMP
    body_cut: float = W_BODY_CUT
    hug: float = W_HUG
    cover: float = W_COVER


DEFAULT_WEIGHTS = GuardWeights()


# What a crop does to the subjects; a flag's code is its index here.
FLAG_NAMES = ("cuts face", "leaves out face", "cuts subject", "cuts person")
_CUTS_FACE, _LEAVES_OUT_FACE, _CUTS_SUBJECT, _CUTS_PERSON = range(len(FLAG_NAMES))


@dataclass
class GuardResult:
    """Per candidate: adjusted ``scores`` and 1-based ``ranks`` within each set; the flags (what a
    crop does to the subjects) as parallel arrays ``flag_rows`` (candidate) and ``flag_codes``
    (index into :data:`FLAG_NAMES`) in the order they were found; ``note_at`` (candidate -> note,
    on each set's rank 1 when it had to give up something that no candidate of its set could
    keep). Arrays, not per-candidate lists: a photo has hundreds of candidates."""

    scores: np.ndarray
    ranks: np.ndarray
    flag_rows: np.ndarray
    flag_codes: np.ndarray
    note_at: dict[int, str]
    spread: float
    focus: Focus | None = None
    tiers: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def flags(self) -> list[list[str]]:
        """Per candidate, its flags' names in the order found."""
        out: list[list[str]] = [[] for _ in range(len(self.scores))]
        for row, code in zip(self.flag_rows.tolist(), self.flag_codes.tolist()):
            out[row].append(FLAG_NAMES[code])
        return out

    @property
    def notes(self) -> list[str | None]:
        """Per candidate, its note or ``None``."""
        return [self.note_at.get(i) for i in range(len(self.scores))]


def spread(scores: np.ndarray, full_index: int | None = None) -> float:
    """The scale of a scorer's scores on one photo: their standard deviation over the candidates
    (the full frame excluded), with a floor so a constant scorer still gets a finite unit."""
    s = np.asarray(scores, dtype=np.float64)
    if full_index is not None and len(s) > 1:
        s = np.delete(s, full_index)
    if len(s) < 2:
        return 1.0
    sd = float(np.std(s))
    floor = 1e-6 * max(1.0, float(np.max(np.abs(s))))
    return sd if sd > floor else max(floor, 1e-12)


def coverage(boxes: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """(N,) share of ``box``'s area inside each of ``boxes``."""
    b = np.asarray(boxes, dtype=np.int64)
    ix = np.clip(np.minimum(b[:, 2], box[2]) - np.maximum(b[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(b[:, 3], box[3]) - np.maximum(b[:, 1], box[1]), 0, None)
    area = max(1, (box[2] - box[0]) * (box[3] - box[1]))
    return (ix * iy) / area


def _gauss2(du: np.ndarray, dv: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-(du * du + dv * dv) / (2.0 * sigma * sigma))


def _placement(boxes: np.ndarray, focus: Focus) -> np.ndarray:
    """How well each crop places the subject's anchor: 1 on a target, falling off smoothly."""
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) for k in range(4))
    u = (focus.anchor[0] - x1) / np.maximum(x2 - x1, 1.0)
    v = (focus.anchor[1] - y1) / np.maximum(y2 - y1, 1.0)
    if focus.look:
        us: tuple[float, ...] = (1 / 3,) if focus.look > 0 else (2 / 3,)
    else:
        us = (1 / 3, 0.5, 2 / 3)
    vs = (1 / 3, 0.42) if focus.people else (1 / 3, 0.5, 2 / 3)
    best = np.zeros(len(boxes))
    for tu in us:
        for tv in vs:
            if not focus.people and tu == 0.5 and tv != 0.5:
                continue  # an object centred sideways but on a thirds line reads as an accident
            best = np.maximum(best, _gauss2(u - tu, v - tv, 0.09))
    return best


def _cramp(boxes: np.ndarray, focus: Focus, width: int, height: int) -> np.ndarray:
    """How tightly crop edges press on the main subject (0 = room on every side). An edge on
    the photo's own border does not count: the photo had no more room there."""
    mx1, my1, mx2, my2 = focus.main
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) for k in range(4))
    bw, bh = np.maximum(x2 - x1, 1.0), np.maximum(y2 - y1, 1.0)
    need = 0.04
    out = np.zeros(len(boxes))
    for gap, dim, on_border in (
        (mx1 - x1, bw, x1 <= 0), (x2 - mx2, bw, x2 >= width),
        (my1 - y1, bh, y1 <= 0), (y2 - my2, bh, y2 >= height),
    ):
        g = np.clip(gap / dim, 0.0, None)
        out += np.where(on_border, 0.0, np.clip((need - g) / need, 0.0, 1.0))
    return out


def _hug(boxes: np.ndarray, width: int, height: int, home: tuple[float, float] | None = None) -> np.ndarray:
    """(N,) how far each crop sits from its home position (0: there; 1 + HUG_ACROSS: in a corner,
    home at the centre).

    The home position centres the crop on ``home`` (the frame's centre by default) as far as the
    frame allows; distances are in halves of the room the crop has to move in along each axis,
    squared, the sideways one weighted by :data:`HUG_ACROSS`.
    """
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) for k in range(4))
    hx, hy = home if home is not None else (width / 2.0, height / 2.0)
    out = np.zeros(len(boxes))
    for lo, hi, size, target, w in ((x1, x2, width, hx, HUG_ACROSS), (y1, y2, height, hy, 1.0)):
        span = hi - lo
        free = size - span
        centre = np.clip(target, span / 2.0, size - span / 2.0)
        off = np.where(free > 0, np.abs((lo + hi) / 2.0 - centre) / np.maximum(free / 2.0, 1.0), 0.0)
        out += w * off * off
    return out


def guard(
    boxes: np.ndarray,
    scores: np.ndarray,
    groups: Sequence[str],
    subjects: Sequence[Subject],
    width: int,
    height: int,
    full_index: int,
    weights: GuardWeights | None = None,
) -> GuardResult:
    """Adjusted scores, ranks, flags and notes for one photo's candidates (see the module doc).

    ``boxes`` (N, 4) in upright pixels, ``scores`` (N,) from any scorer, ``groups[i]`` the set of
    candidate ``i``; ``full_index`` the full frame, which keeps everything by definition;
    ``weights`` the composition terms' weights (default :data:`DEFAULT_WEIGHTS`).
    """
    wt = weights if weights is not None else DEFAULT_WEIGHTS
    inner = picture_of(subjects, width, height)
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    areas = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).astype(np.float64)  # of every candidate
    raw = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = len(raw)
    unit = spread(raw, full_index)
    g = np.asarray(list(groups))
    members = {group: np.flatnonzero(g == group) for group in dict.fromkeys(groups)}  # each set's rows
    focus = subject_focus(subjects, width, height) if subjects else None
    found: list[tuple[np.ndarray, int]] = []  # (candidates, flag code), in the order found
    tier_face = np.zeros(n)
    tier_main = np.zeros(n)
    soft = np.zeros(n)
    if focus is not None:
        keys = set(focus.keys)
        for part in focus.others:
            cov = coverage(b, part)
            sliced = (cov > 0) & (cov < 1.0)
            left_out = (cov <= 0) & (part in keys)
            tier_face += sliced + left_out
            # A head found from a person box counts as a face: cutting it reads the same.
            found += [(np.flatnonzero(sliced), _CUTS_FACE), (np.flatnonzero(left_out), _LEAVES_OUT_FACE)]
        main_cov = coverage(b, focus.main)
        trusted = _trusted(focus, width, height)
        tier_main = (main_cov < MAIN_KEEP).astype(np.float64) * trusted
        found.append((np.flatnonzero(tier_main), _CUTS_SUBJECT))
        if not trusted and _compact(focus, width, height):
            # An object found with less confidence does not set the order, but cutting it still
            # costs, more the surer the detector is: without this the choice would flip between
            # near-identical photos whose confidence wobbles around SALIENT_TRUST.
            ramp = min(1.0, focus.confidence / SALIENT_TRUST) ** 2
            soft -= W_TIER_MAIN * ramp * (main_cov < MAIN_KEEP)
        for body in focus.bodies:
            if _inside_main(body, focus.main):
                continue  # the main people are covered by the tier above
            cov = coverage(b, body)
            cut = (cov > 0.1) & (cov < MAIN_KEEP)
            soft -= wt.body_cut * cut
            found.append((np.flatnonzero(cut), _CUTS_PERSON))
        ends = b[:, 3]
        for face, torso, legs in _implied_bodies(focus, width, height):
            # A main face with no person box: its body is implied, and a crop that keeps the face
            # (coverage computed once for both rules) should not mutilate it.
            keeps_face = coverage(b, face) >= 0.5
            if torso is not None:
                # The shoulders and chest: a crop that slices the body down the side reads as a
                # mistake. The loss grows with the share of the torso's width cut off, in full
                # from a fifth.
                kept = np.clip(np.minimum(b[:, 2], torso[2]) - np.maximum(b[:, 0], torso[0]), 0, None)
                cut = 1.0 - kept / max(1, torso[2] - torso[0])
                soft -= W_TORSO * keeps_face * np.clip(cut / 0.2, 0.0, 1.0)
            if legs is not None:
                # Legs the photo shows (a group standing for the camera, people walking): a crop
                # that ends between the thighs and the feet amputates them at the knees or shins,
                # which reads worse than one that ends at the waist or keeps them whole. The
                # photo's own bottom edge is where it is: a crop ending there cuts nothing shown.
                legs_from, feet = legs
                soft -= W_FEET * (keeps_face & (ends > legs_from) & (ends < min(feet, height)))
        # A salient box is where the object is, roughly: its extent wobbles from one encoding
        # of a scene to the next, so it decides what must be kept (tier, coverage) but it does
        # not place the crop; a face does (eyes on the upper third).
        weight = 1.0 if trusted else focus.confidence
        place = wt.place * _placement(b, focus) * (1.0 if focus.people else wt.place_salient)
        # Coverage counts up to the whole subject, not only to the 90% that passes the tier: a
        # detector's box is rarely exact, and the crop that keeps all of it keeps the real
        # subject's edges (the cat's mouth, the tower's top) where one keeping 90% may not.
        cover = wt.cover * main_cov
        mx1, my1, mx2, my2 = focus.main
        for group, idx in members.items():
            if group not in _FREE_SETS and len(idx) and main_cov[idx].max() < MAIN_KEEP:
                # No crop of this ratio holds the subject: keep as much of it as fits rather
                # than a well-placed middle slice.
                cover[idx] += W_COVER_UNHELD * main_cov[idx]
                crop_w, crop_h = b[idx, 2] - b[idx, 0], b[idx, 3] - b[idx, 1]
                if int(crop_w.max()) < mx2 - mx1:
                    # Too wide for the ratio, and no end known to matter more: cut both sides
                    # evenly. A detector's box is often wider than the object, so "as much of
                    # the box as fits" alone lets the crop slide to one side and slice the object.
                    half = np.maximum(crop_w / 2.0, 1.0)
                    off = np.abs((b[idx, 0] + b[idx, 2]) / 2.0 - (mx1 + mx2) / 2.0) / half
                    cover[idx] -= W_CENTRE_UNHELD * off
                if int(crop_h.max()) < my2 - my1:
                    # Too tall for the ratio: cut from the bottom. What stands up has its head,
                    # face or tip on top (a person with no face found, a tower, a rocket, a tree);
                    # a crop that keeps the middle beheads it.
                    # A detector's box edge is approximate: the top reaches a little above it.
                    tall = my2 - my1
                    top = (mx1, max(0, my1 - tall // 10), mx2, my1 + max(1, tall // 3))
                    cover[idx] += W_TOP_UNHELD * coverage(b[idx], top)
        if not focus.people and my2 - my1 > mx2 - mx1:
            # A standing object (a tower, a rocket, a bottle, a statue) reads by its top: of two
            # crops that each keep most of it, the one that keeps the top, with a little room
            # above it, is the better one. (People are placed by their faces instead.) Ratio sets
            # only: the free grid chooses its own shape, or keeps the photo as it is.
            tall = my2 - my1
            top = (mx1, max(0, my1 - tall // 10), mx2, my1 + max(1, tall // 5))
            # As a loss, not a reward: a ratio crop that is the whole photo loses nothing and
            # scores exactly as the full frame does.
            cover -= W_TOP * np.where(np.isin(g, _FREE_SETS), 0.0, 1.0 - coverage(b, top))
        soft += weight * (place - wt.cramp * _cramp(b, focus, width, height) + cover)
    if focus is None or not _trusted(focus, width, height):
        # Nothing certain to compose around: a ratio crop stays near the centre unless the
        # scorer clearly prefers a side (a scorer's edge terms alone favour crops that lie on
        # the photo's border, which reads as hugging an edge or a corner).
        # An object found with little confidence still says which side of the frame the photo is
        # about: the home position moves from the frame's centre towards it, all the way at the
        # trust threshold (a ratio crop centred on the frame cuts an off-centre subject).
        # Within the picture when the photo has borders: its crops move inside the picture only.
        px1, py1, px2, py2 = inner if inner is not None else (0, 0, width, height)
        cx, cy = (px1 + px2) / 2.0, (py1 + py2) / 2.0
        home = (cx, cy)
        if focus is not None:
            ramp = min(1.0, focus.confidence / SALIENT_TRUST)
            mx = (focus.main[0] + focus.main[2]) / 2.0
            # Sideways only: a salient box usually reaches up into the background above the
            # object (sky, a wall), so its centre sits too high to say where the object is.
            home = (cx + ramp * (mx - cx), cy)
        ratio = ~np.isin(g, _FREE_SETS)
        shift = np.array([px1, py1, px1, py1])
        hug = _hug(b - shift, px2 - px1, py2 - py1, (home[0] - px1, home[1] - py1))
        soft -= wt.hug * np.where(ratio, hug, 0.0)
        # Unsure what the photo is about, keep more of it: a ratio set's larger crops lose less
        # of whatever the subject turns out to be.
        for group, idx in members.items():
            if group not in _FREE_SETS and len(idx):
                # A loss for the smaller crops (the largest, maybe the whole photo, loses nothing).
                soft[idx] -= W_SIZE_UNSURE * (1.0 - areas[idx] / max(float(areas[idx].max()), 1.0))
    if inner is not None:
        # Letterbox bands or a frame around the picture: any crop showing them (the full frame
        # does) is worse by the share of its area they fill, so a crop that removes them is an
        # improvement and "keep as is" is not suggested for a bordered photo.
        soft -= W_BORDER * (1.0 - coverage(b, inner) * _area(inner) / np.maximum(areas, 1.0))
    # The full frame keeps everything: it is the reference every crop is measured against.
    tier_face[full_index] = tier_main[full_index] = 0.0
    adjusted = raw + unit * (soft - W_TIER_FACE * tier_face - W_TIER_MAIN * tier_main)

    ranks = np.zeros(n, dtype=np.int64)
    note_at: dict[int, str] = {}
    for group, idx in members.items():
        order = idx[np.lexsort((-adjusted[idx], tier_main[idx], tier_face[idx]))]
        ranks[order] = np.arange(1, len(order) + 1)
        if focus is not None and group != "full":
            note = _note(group, tier_face[order[0]], tier_main[order[0]], bool(focus.keys))
            if note is not None:
                note_at[int(order[0])] = note
        if inner is not None and group != "full" and int(order[0]) not in note_at:
            note_at[int(order[0])] = "removes the border around the picture"
    rows = np.concatenate([r for r, _ in found]) if found else np.zeros(0, np.int64)
    codes = np.concatenate([np.full(len(r), c, np.uint8) for r, c in found]) if found else np.zeros(0, np.uint8)
    # Stable by candidate: each candidate's flags stay in the order they were found.
    by_row = np.argsort(rows, kind="stable")
    return GuardResult(adjusted, ranks, rows[by_row].astype(np.int64), codes[by_row], note_at, unit, focus,
                       tier_face * 2 + tier_main)


def _implied_bodies(focus: Focus, width: int, height: int) -> list[tuple[Box, Box | None, tuple[float, float] | None]]:
    """Per main face that no person box holds (its body implied, not found): the face; the box its
    shoulders and chest likely fill (:data:`TORSO_HALF` face widths either side of its centre,
    down to the hips, within the photo), or ``None``; and the rows (from, to) where a crop's
    bottom edge would cut its legs, or ``None`` when its hips are below the photo (a portrait, a
    head and shoulders).

    A standing adult is about :data:`STANDING_HEIGHT` face-box heights tall (7.5 heads); the legs
    start :data:`LEGS_FROM` face heights below the face's top, the feet are at all of it.
    """
    out: list[tuple[Box, Box | None, tuple[float, float] | None]] = []
    for k in focus.keys:
        if any(_inside_main(k, body) for body in focus.bodies):
            continue
        fw, fh = k[2] - k[0], k[3] - k[1]
        cx = (k[0] + k[2]) / 2.0
        x1, x2 = max(0, int(cx - TORSO_HALF * fw)), min(width, int(math.ceil(cx + TORSO_HALF * fw)))
        y2 = min(height, int(k[1] + LEGS_FROM * fh))
        torso: Box | None = (x1, k[1], x2, y2) if x2 > x1 and y2 > k[3] else None
        legs_from = k[1] + LEGS_FROM * fh
        legs = (legs_from, k[1] + STANDING_HEIGHT * fh) if legs_from < height else None
        if torso is not None or legs is not None:
            out.append((k, torso, legs))
    return out


def _trusted(focus: Focus, width: int, height: int) -> bool:
    """Whether the main subject is certain enough to constrain the crop: people always; a salient
    object when found confidently and not spanning most of the photo (a box over most of the
    frame says "the whole scene", which tells no ratio crop where to go)."""
    if focus.people:
        return True
    return focus.confidence >= SALIENT_TRUST and _compact(focus, width, height)


def _compact(focus: Focus, width: int, height: int) -> bool:
    m = focus.main
    return (m[2] - m[0]) * (m[3] - m[1]) <= SALIENT_MAX_SHARE * max(1, width * height)


def _inside_main(body: Sequence[int], main: Sequence[int]) -> bool:
    return body[0] >= main[0] and body[1] >= main[1] and body[2] <= main[2] and body[3] <= main[3]


def _note(group: str, face: float, main: float, has_faces: bool) -> str | None:
    """Why a set's best crop gave something up (only when no candidate of the set could keep it)."""
    if face > 0:
        return f"no {group} crop keeps every face whole: this one cuts the fewest"
    if main > 0:
        if has_faces:
            return f"no {group} crop can hold the whole subject: kept the face"
        return f"no {group} crop can hold the whole subject: kept as much of it as fits"
    return None
