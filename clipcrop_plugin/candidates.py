"""Candidate crops: GAIC grid anchors, exact aspect-ratio sets, and the full frame (SPEC 3).

All boxes are ``(x1, y1, x2, y2)`` in upright full-resolution pixels, ``x2``/``y2`` exclusive.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .results import Box, Subject


@dataclass(frozen=True)
class AspectRatio:
    """An exact width:height ratio such as 4:5."""

    w: int
    h: int

    @property
    def name(self) -> str:
        return f"{self.w}:{self.h}"

    @property
    def value(self) -> float:
        return self.w / self.h


@dataclass
class CandidateSet:
    """All candidate boxes of one image.

    ``boxes`` is an (N, 4) int64 array of x1, y1, x2, y2 in full-resolution upright pixels
    (x2, y2 exclusive); ``groups[i]`` names the set box ``i`` belongs to (``"grid"``, ``"full"``,
    or a ratio name like ``"1:1"``). Exactly one box is the full frame, at ``full_index``.
    """

    width: int
    height: int
    boxes: np.ndarray
    groups: list[str]
    full_index: int

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


# --- generators -------------------------------------------------------------------------------

GRID_BINS = 12
GRID_MAX = 90
ASPECT_MAX = 100  # per ratio, whatever the image size
ASPECT_MIN_AREA = 0.4
_ASPECT_SCALES = 5

_ALIASES = {"square": "1:1", "portrait": "4:5", "landscape": "3:2", "wide": "16:9", "story": "9:16"}


def parse_aspect(text: str) -> AspectRatio:
    """Parse ``"W:H"`` (positive integers, e.g. ``"4:5"``; ``"WxH"`` and ``"W/H"`` too) or an alias.

    Aliases: ``square`` (1:1), ``portrait`` (4:5), ``landscape`` (3:2), ``wide`` (16:9),
    ``story`` (9:16). Raises :class:`~clipcrop_plugin.errors.ConfigError` on anything else.
    """
    raw = str(text).strip().lower()
    raw = _ALIASES.get(raw, raw)
    for sep in (":", "x", "/"):
        if sep in raw:
            left, _, right = raw.partition(sep)
            break
    else:
        raise ConfigError(f"bad aspect ratio {text!r}: expected W:H such as 1:1, 4:5 or 16:9")
    try:
        w, h = int(left.strip()), int(right.strip())
    except ValueError:
        raise ConfigError(f"bad aspect ratio {text!r}: W and H must be whole numbers, e.g. 16:9") from None
    if w <= 0 or h <= 0:
        raise ConfigError(f"bad aspect ratio {text!r}: W and H must be positive")
    if w > 10000 or h > 10000 or max(w, h) / min(w, h) > 100:
        raise ConfigError(f"bad aspect ratio {text!r}: too extreme (at most 100:1)")
    return AspectRatio(w, h)


def grid_boxes(width: int, height: int) -> np.ndarray:
    """The GAIC grid anchors of a ``width`` x ``height`` image, (N, 4) int64, N <= 90.

    GAIC (Zeng et al.) places a 12x12 grid of bin centres over the image, takes the top-left
    corner from the first 4 rows/columns and the bottom-right from the last 4, and keeps crops
    covering > 50% of the grid area whose pixel aspect w/h is strictly inside (0.5, 2). GAIC
    evaluates this on its resized network input (short side 256, sides rounded to multiples of
    32); we evaluate it in the image's own pixel space, which keeps the same 90/87/83/72/38/7
    counts for the shapes GAIC reports and avoids a second rounding. Corners are rounded outward
    (floor / ceil) like GAIC's box rescaling.
    """
    if width <= 0 or height <= 0:
        return np.zeros((0, 4), dtype=np.int64)
    step_w, step_h = width / GRID_BINS, height / GRID_BINS
    lo, hi = np.arange(0, 4), np.arange(GRID_BINS - 4, GRID_BINS)
    x1, y1, x2, y2 = (a.ravel() for a in np.meshgrid(lo, lo, hi, hi, indexing="ij"))
    cells_w, cells_h = x2 - x1, y2 - y1
    keep = cells_w * cells_h > 0.4999 * GRID_BINS * GRID_BINS
    ratio = (cells_w * step_w) / (cells_h * step_h)
    keep &= (ratio > 0.5) & (ratio < 2.0)
    boxes = np.stack(
        [
            np.floor((x1[keep] + 0.5) * step_w),
            np.floor((y1[keep] + 0.5) * step_h),
            np.ceil((x2[keep] + 0.5) * step_w),
            np.ceil((y2[keep] + 0.5) * step_h),
        ],
        axis=1,
    ).astype(np.int64)
    boxes[:, 2] = np.clip(boxes[:, 2], 1, width)
    boxes[:, 3] = np.clip(boxes[:, 3], 1, height)
    boxes[:, 0] = np.minimum(boxes[:, 0], boxes[:, 2] - 1)
    boxes[:, 1] = np.minimum(boxes[:, 1], boxes[:, 3] - 1)
    return _unique_rows(boxes)[:GRID_MAX]


def _unique_rows(boxes: np.ndarray) -> np.ndarray:
    """Drop duplicate boxes (tiny images round several anchors together), keeping first order."""
    if len(boxes) == 0:
        return boxes
    b = np.asarray(boxes, dtype=np.int64)
    if b.min() >= 0 and b.max() < 1 << 16:
        # One int64 key per row: np.unique on a flat array is many times faster than axis=0.
        key = (b[:, 0] << 48) | (b[:, 1] << 32) | (b[:, 2] << 16) | b[:, 3]
        _, idx = np.unique(key, return_index=True)
    else:
        _, idx = np.unique(b, axis=0, return_index=True)
    return boxes[np.sort(idx)]


def _largest_box(width: int, height: int, ratio: AspectRatio) -> tuple[int, int]:
    """(w, h) of the largest box of exactly ``ratio`` (within one pixel) inside the image."""
    r = ratio.value
    h = min(height, int(math.floor(width / r + 1e-9)))
    if h < 1:
        # Not even one row fits at this ratio: the best we can do is a 1-pixel-high strip.
        return width, 1
    w = min(width, max(1, int(round(h * r))))
    return w, h


def aspect_boxes(width: int, height: int, ratio: AspectRatio, *, limit: int = ASPECT_MAX) -> np.ndarray:
    """Crops of exactly ``ratio`` on a grid of scales and positions, area >= 40%, at most ``limit``.

    Scales run from the largest inscribed box down to 40% of the image area (or only the
    largest box when even that covers less, e.g. 1:1 on a panorama); positions are spread evenly
    over the free space of each scale, so the count does not grow with the image size.
    """
    if width <= 0 or height <= 0:
        return np.zeros((0, 4), dtype=np.int64)
    w_max, h_max = _largest_box(width, height, ratio)
    r = ratio.value
    area_img = width * height
    s_min = math.sqrt(ASPECT_MIN_AREA * area_img / (w_max * h_max))
    if s_min >= 1.0 or h_max < 8:
        scales = [1.0]
    else:
        scales = list(np.linspace(1.0, s_min, _ASPECT_SCALES))
    sizes: list[tuple[int, int]] = []
    for s in scales:
        h = max(1, int(math.ceil(h_max * s - 1e-9)))
        w = min(width, max(1, int(round(h * r))))
        if (w, h) not in sizes:
            sizes.append((w, h))
    per_scale = max(1, limit // len(sizes))
    out: list[np.ndarray] = []
    for w, h in sizes:
        free_x, free_y = width - w, height - h
        nx, ny = _position_counts(free_x, free_y, per_scale)
        xs = np.unique(np.round(np.linspace(0, free_x, nx)).astype(np.int64))
        ys = np.unique(np.round(np.linspace(0, free_y, ny)).astype(np.int64))
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        gx, gy = gx.ravel(), gy.ravel()
        out.append(np.stack([gx, gy, gx + w, gy + h], axis=1))
    boxes = _unique_rows(np.concatenate(out, axis=0).astype(np.int64))
    return boxes[:limit]


def _position_counts(free_x: int, free_y: int, budget: int) -> tuple[int, int]:
    """How many positions along x and y, proportional to the free space, product <= budget."""
    if free_x <= 0 and free_y <= 0:
        return 1, 1
    if free_y <= 0:
        return min(free_x + 1, budget), 1
    if free_x <= 0:
        return 1, min(free_y + 1, budget)
    nx = max(1, min(free_x + 1, int(round(math.sqrt(budget * free_x / free_y)))))
    ny = max(1, min(free_y + 1, budget // nx))
    nx = max(1, min(free_x + 1, budget // ny))
    return nx, ny


# --- subjects ---------------------------------------------------------------------------------

FACE_KINDS = ("face", "profile_face")
_MAIN_FACE_SHARE = 0.25  # a face at least this share of the largest face's area is a main face


@dataclass(frozen=True)
class Focus:
    """What a crop of one photo must respect, derived from its detected subjects.

    ``main`` is the main subject's box (the main people, whole, or the strongest salient object);
    ``keys`` are the parts that must never be cut (faces, or the heads of people whose face was
    not found): when no crop of a ratio can hold ``main``, they are what is kept. ``anchor`` is
    the point a photographer places on a thirds line or the centre (the eyes, or the object's
    centre); ``look`` is -1 / +1 when a profile face tells which way the subject looks, else 0.
    ``people`` says whether the subject is people (eyes go on the upper third).
    """

    main: Box
    keys: tuple[Box, ...]
    others: tuple[Box, ...]  # every face/head that must not be sliced, main or not
    bodies: tuple[Box, ...]  # person boxes that should not be cut through
    anchor: tuple[float, float]
    look: int
    people: bool
    confidence: float = 1.0  # the detector's score of a salient subject (people: 1)


def _area(b: Sequence[int]) -> int:
    return max(0, int(b[2]) - int(b[0])) * max(0, int(b[3]) - int(b[1]))


def _union(boxes: Sequence[Sequence[int]]) -> Box:
    return (min(int(b[0]) for b in boxes), min(int(b[1]) for b in boxes),
            max(int(b[2]) for b in boxes), max(int(b[3]) for b in boxes))


def _clip_box(b: Sequence[float], width: int, height: int) -> Box:
    x1 = int(min(max(math.floor(b[0]), 0), width - 1))
    y1 = int(min(max(math.floor(b[1]), 0), height - 1))
    x2 = int(max(min(math.ceil(b[2]), width), x1 + 1))
    y2 = int(max(min(math.ceil(b[3]), height), y1 + 1))
    return (x1, y1, x2, y2)


def _inside(inner: Sequence[int], outer: Sequence[int], tol: float = 0.6) -> bool:
    """Whether at least ``tol`` of ``inner`` lies in ``outer``."""
    ix = max(0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    return ix * iy >= tol * max(1, _area(inner))


def subject_focus(subjects: Sequence[Subject], width: int, height: int) -> Focus | None:
    """The :class:`Focus` of a photo from its subjects, or None when nothing was detected.

    People come first: the main faces (at least a quarter of the largest face's area) and the
    people they belong to, or the largest people when no face was found (their heads, the top
    sixth of the box, become the parts to keep). A face without a body gets head-and-shoulders
    room around it. Without people, the most confident salient object is the subject.
    """
    def clip(b: Sequence[float]) -> Box:
        return _clip_box(b, width, height)

    subs = [s for s in subjects if _area(s.box) > 0]
    faces = [clip(s.box) for s in subs if s.kind in FACE_KINDS]
    persons = [clip(s.box) for s in subs if s.kind == "person"]
    profile = [clip(s.box) for s in subs if s.kind == "profile_face"]
    heads = []
    for p in persons:
        if not any(_inside(f, p) for f in faces):
            ph, pw = p[3] - p[1], p[2] - p[0]
            hw = max(1.0, min(pw * 0.5, ph * 0.16))
            cx = (p[0] + p[2]) / 2
            heads.append(clip((cx - hw / 2, p[1], cx + hw / 2, p[1] + max(1.0, ph * 0.16))))
    parts = faces + heads
    if parts:
        largest = max(_area(b) for b in parts)
        keys = [b for b in parts if _area(b) >= _MAIN_FACE_SHARE * largest]
        bodies = [p for p in persons if any(_inside(k, p) for k in keys)]
        room = []
        for k in keys:
            if any(_inside(k, b) for b in bodies):
                continue
            kw, kh = k[2] - k[0], k[3] - k[1]
            # Hair above, chin and neck below: a head-and-shoulders box around a bare face.
            room.append(clip((k[0] - 0.25 * kw, k[1] - 0.45 * kh, k[2] + 0.25 * kw, k[3] + 0.6 * kh)))
        main = _union(keys + bodies + room)
        ku = _union(keys)
        anchor = ((ku[0] + ku[2]) / 2, ku[1] + 0.42 * (ku[3] - ku[1]))
        look = 0
        if profile and len(keys) == 1 and keys[0] in profile:
            # A profile detector says there is a profile, not which way it faces; photographers
            # leave room in front of a face, so the side with more room in the frame is the front.
            look = 1 if anchor[0] < width / 2 else -1
        return Focus(main, tuple(keys), tuple(parts), tuple(persons), anchor, look, True)
    salient = sorted((s for s in subs if s.kind == "salient"), key=lambda s: -s.score)
    if not salient:
        return None
    main = clip(salient[0].box)
    return Focus(main, (), (), tuple(persons), ((main[0] + main[2]) / 2, (main[1] + main[3]) / 2), 0, False,
                 float(salient[0].score))


def subject_boxes(width: int, height: int, ratio: AspectRatio, focus: Focus) -> np.ndarray:
    """Crops of exactly ``ratio`` composed around ``focus``: the largest box of the ratio placing
    the anchor on the centre or a thirds line, and centred on the main subject (clamped to the
    photo). They make sure a ratio set has a candidate that keeps the
    subject, when one fits, instead of only blind grid positions."""
    w_max, h_max = _largest_box(width, height, ratio)
    mx1, my1, mx2, my2 = focus.main
    # Only the largest size: it is the one most likely to hold the subject, and tighter sizes
    # around a detector's box would make the choice follow every wobble of that box.
    sizes = [(w_max, h_max)]
    ax, ay = focus.anchor
    us = (1 / 3, 0.5, 2 / 3)
    vs = (1 / 3, 0.42) if focus.people else (0.5, 1 / 3, 2 / 3)
    out = []
    for w, h in dict.fromkeys(sizes):
        for u in us:
            for v in vs:
                x = min(max(round(ax - u * w), 0), width - w)
                y = min(max(round(ay - v * h), 0), height - h)
                out.append((x, y, x + w, y + h))
        # The main subject centred, with equal room around it.
        cx, cy = (mx1 + mx2) / 2, (my1 + my2) / 2
        x = min(max(round(cx - w / 2), 0), width - w)
        y = min(max(round(cy - h / 2), 0), height - h)
        out.append((x, y, x + w, y + h))
    return _unique_rows(np.asarray(out, dtype=np.int64).reshape(-1, 4))


def picture_of(subjects: Sequence[Subject], width: int, height: int) -> Box | None:
    """The picture inside the photo's uniform borders (the ``"content"`` subject), or ``None``
    when the photo has no border (or the box is the whole frame)."""
    for s in subjects:
        if s.kind == "content":
            box = _clip_box(s.box, width, height)
            if box != (0, 0, width, height) and _area(box) > 0:
                return box
    return None


def _shift_focus(focus: Focus, dx: int, dy: int, width: int, height: int) -> Focus:
    """``focus`` moved by (dx, dy) and clipped to a ``width`` x ``height`` frame."""
    def move(b: Sequence[int]) -> Box:
        return _clip_box((b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy), width, height)

    return Focus(move(focus.main), tuple(move(k) for k in focus.keys), tuple(move(o) for o in focus.others),
                 tuple(move(b) for b in focus.bodies), (focus.anchor[0] + dx, focus.anchor[1] + dy), focus.look,
                 focus.people, focus.confidence)


# A library holds a handful of photo sizes (one per camera and orientation): the blind boxes of
# a size are made once. Read-only, so no caller can change what the next photo gets.
@functools.lru_cache(maxsize=64)
def _cached_grid(width: int, height: int) -> np.ndarray:
    g = grid_boxes(width, height)
    g.flags.writeable = False
    return g


@functools.lru_cache(maxsize=128)
def _cached_aspect(width: int, height: int, ratio: AspectRatio) -> np.ndarray:
    a = aspect_boxes(width, height, ratio)
    a.flags.writeable = False
    return a


def generate_candidates(
    width: int, height: int, aspects: Sequence[AspectRatio] = (), *, grid: bool = True,
    subjects: Sequence[Subject] = (),
) -> CandidateSet:
    """All candidates of a ``width`` x ``height`` upright image.

    Sets, in order: ``"grid"`` (GAIC anchors, when ``grid``), one set per ratio in ``aspects``
    (duplicates dropped), and ``"full"``: the whole frame, exactly once, last. Never raises for
    odd shapes: a panorama may have few or no grid anchors but always gets its ratio sets.
    With ``subjects``, each ratio set also gets crops composed around the main subject
    (:func:`subject_boxes`); with a ``"content"`` subject (the picture inside uniform borders,
    :func:`picture_of`), every grid and ratio crop lies inside that picture and the picture itself
    is one more grid candidate. The full frame is always the whole photo.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    parts: list[np.ndarray] = []
    groups: list[str] = []
    # Inside uniform borders (letterbox bands, a frame) every crop is made within the picture
    # itself, and the picture alone is a grid candidate: the crop that only removes the border.
    inner = picture_of(subjects, width, height)
    ox, oy, cw, ch = (0, 0, width, height) if inner is None else (
        inner[0], inner[1], inner[2] - inner[0], inner[3] - inner[1])
    shift = np.array([ox, oy, ox, oy], dtype=np.int64)
    if grid:
        g = _cached_grid(cw, ch)
        if inner is not None:
            g = np.concatenate([g + shift, np.array([inner], dtype=np.int64)], axis=0)
        parts.append(g)
        groups += ["grid"] * len(g)
    seen: set[str] = set()
    focus = subject_focus(subjects, width, height) if subjects else None
    if focus is not None and inner is not None:
        focus = _shift_focus(focus, -ox, -oy, cw, ch)
    for ratio in aspects:
        if ratio.name in seen:
            continue
        seen.add(ratio.name)
        a = _cached_aspect(cw, ch, ratio)
        if focus is not None:
            extra = subject_boxes(cw, ch, ratio, focus)
            known = {tuple(b) for b in a.tolist()}
            extra = np.array([b for b in extra.tolist() if tuple(b) not in known], dtype=np.int64).reshape(-1, 4)
            a = np.concatenate([a, extra], axis=0)
        if inner is not None:
            a = a + shift
        parts.append(a)
        groups += [ratio.name] * len(a)
    parts.append(np.array([[0, 0, width, height]], dtype=np.int64))
    groups.append("full")
    boxes = np.concatenate(parts, axis=0).astype(np.int64)
    return CandidateSet(width=width, height=height, boxes=boxes, groups=groups, full_index=len(groups) - 1)
