"""What a scoring pass produces, independent of where it is printed, stored or written.

These types sit between the scorer and everything downstream of it (store, XMP, CLI, API),
so that none of those needs to import the scorer or the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

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


def first_seen_codes(values: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """The distinct ``values`` in first-seen order and each value's index among them."""
    names = tuple(dict.fromkeys(values))
    code = {name: i for i, name in enumerate(names)}
    return names, np.fromiter((code[v] for v in values), dtype=np.int16, count=len(values))


@dataclass(eq=False)
class CandidateTable:
    """Every scored candidate of one photo as columns (row ``i`` is candidate ``i``).

    What :func:`clipcrop_plugin.suggest.build_suggestion` produces and what the store packs:
    hundreds of candidates per photo as a dozen arrays instead of thousands of small objects
    (a worker process sends them to the scan's writer as they are). :class:`Crop` objects are
    built from a row only when someone asks for that crop (:meth:`crop`).

    ``sets``/``set_names``: each row's candidate set (``"grid"``, ``"full"``, ``"1:1"``...) as an
    index into the names, in first-seen order. ``improvements`` are the scores minus the full
    frame's. ``elements``: (N, 10) element scores (order of
    :data:`~clipcrop_plugin.elements.ELEMENT_NAMES`) or ``None``; ``explain``: (N, k) the indices
    of the elements each explanation names, strongest first, ``-1`` padded; ``flag_rows`` /
    ``flag_codes``: the guard's flags (row, index into ``flag_names``), each row's in order;
    ``notes``: row -> note, only where set.
    """

    boxes: np.ndarray
    sets: np.ndarray
    set_names: tuple[str, ...]
    scores: np.ndarray
    ranks: np.ndarray
    improvements: np.ndarray
    full_index: int | None = None
    elements: np.ndarray | None = None
    explain: np.ndarray | None = None
    flag_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    flag_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    flag_names: tuple[str, ...] = ()
    notes: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_changes", None)  # derived; rebuilt where needed
        return state

    @classmethod
    def from_crops(cls, crops: Sequence[Crop], full_index: int | None = None) -> CandidateTable:
        """The columns of already built crops (a plugin's or a stored suggestion's); their
        explanations and flags stay with the crops (:meth:`Suggestion.crop` returns those)."""
        names, codes = first_seen_codes([c.aspect for c in crops])
        n = len(crops)
        has_elements = n > 0 and all(c.elements is not None for c in crops)
        return cls(
            boxes=np.array([c.box for c in crops], dtype=np.int64).reshape(n, 4),
            sets=codes, set_names=names,
            scores=np.array([c.score for c in crops], dtype=np.float64),
            ranks=np.array([c.rank for c in crops], dtype=np.int64),
            improvements=np.array([c.improvement for c in crops], dtype=np.float64),
            full_index=full_index,
            elements=np.array([c.elements for c in crops], dtype=np.float64) if has_elements else None,
        )

    def code(self, aspect: str) -> int:
        """The index of ``aspect`` in :attr:`set_names`, -1 when the set is absent."""
        try:
            return self.set_names.index(aspect)
        except ValueError:
            return -1

    @property
    def changes(self) -> np.ndarray | None:
        """(N, 10) element scores minus the full frame's (``None`` without elements)."""
        if self.elements is None or self.full_index is None:
            return None
        got = self.__dict__.get("_changes")
        if got is None:
            got = self.__dict__["_changes"] = self.elements - self.elements[self.full_index]
        return got

    def flags_of(self, rows: Sequence[int] | None = None) -> dict[int, list[str]]:
        """Row -> its flags' names (rows without flags left out), for ``rows`` or every row."""
        out: dict[int, list[str]] = {}
        if not len(self.flag_rows):
            return out
        wanted = None if rows is None else set(rows)
        for row, code in zip(self.flag_rows.tolist(), self.flag_codes.tolist()):
            if wanted is None or row in wanted:
                out.setdefault(row, []).append(self.flag_names[code])
        return out

    def explanation(self, row: int) -> list[ElementChange]:
        """The explanation of ``row``: its named elements' changes, strongest first."""
        changes = self.changes
        if self.explain is None or changes is None:
            return []
        return _explained(self.explain[row].tolist(), changes[row].tolist())

    def crops(self, rows: Sequence[int]) -> list[Crop]:
        """:class:`Crop` objects for ``rows`` (values exactly as the columns hold them)."""
        rows = [int(r) for r in rows]
        if not rows:
            return []
        take = np.asarray(rows, dtype=np.intp)
        boxes = self.boxes[take].tolist()
        scores, ranks, gains = self.scores[take].tolist(), self.ranks[take].tolist(), self.improvements[take].tolist()
        sets = self.sets[take].tolist()
        changes = self.changes
        el = self.elements[take].tolist() if self.elements is not None and changes is not None else None
        ch = changes[take].tolist() if changes is not None else None
        picks = self.explain[take].tolist() if self.explain is not None and ch is not None else None
        flags = self.flags_of(rows)
        out = []
        for j, row in enumerate(rows):
            explanation = _explained(picks[j], ch[j]) if picks is not None and ch is not None else []
            out.append(Crop(
                aspect=self.set_names[sets[j]], box=tuple(boxes[j]),  # type: ignore[arg-type]
                score=scores[j], rank=ranks[j], improvement=gains[j], explanation=explanation,
                elements=el[j] if el is not None else None, changes=ch[j] if ch is not None else None,
                flags=flags.get(row, []), note=self.notes.get(row),
            ))
        return out


def _explained(picks: list[int], changes: list[float]) -> list[ElementChange]:
    """One explanation from a row of element indices (``-1`` padded) and that row's changes."""
    from .elements import ELEMENT_NAMES

    return [ElementChange(ELEMENT_NAMES[k], changes[k]) for k in picks if k >= 0]


_UNSET: Any = object()


class Suggestion:
    """Every scored candidate of one photo, or the reason it could not be scored.

    The candidates are a :class:`CandidateTable` (:attr:`candidates`), each ranked within its
    ``aspect`` set; ``best(aspect)``, ``choice()``, ``top(n)`` and ``ranked(aspect)`` select from
    the columns and build only the :class:`Crop` objects they return. ``crops`` (every candidate
    as a ``Crop``) is built on first use and kept; a Suggestion made from a list of crops (a
    plugin's, or one read back from the store) keeps that list as it is. ``full_frame`` is the
    uncropped photo's own crop entry. Pickled (worker processes), a Suggestion carries the
    columns, never the Crop objects.
    """

    def __init__(
        self,
        path: str,
        ok: bool,
        error: str | None = None,
        info: PhotoInfo | None = None,
        scorer: str | None = None,
        weights_hash: str | None = None,
        device: str | None = None,
        crops: Sequence[Crop] | None = None,
        full_frame: Crop | None = _UNSET,
        subjects: Sequence[Subject] | None = None,
        subjects_error: str | None = None,  # why subject detection failed for this photo (it was scored without)
        *,
        candidates: CandidateTable | None = None,
    ) -> None:
        self.path, self.ok, self.error, self.info = path, ok, error, info
        self.scorer, self.weights_hash, self.device = scorer, weights_hash, device
        self.subjects: list[Subject] = list(subjects or [])
        self.subjects_error = subjects_error
        # One source of truth: the columns (``_native``: built by the pipeline), or a list of crops.
        self._native = candidates is not None
        self._table: CandidateTable | None = candidates
        self._list: list[Crop] | None = None if candidates is not None else list(crops or [])
        self._built: dict[int, Crop] = {}  # native: rows already built as Crop objects, one object per row
        self._full_given = full_frame is not _UNSET
        self._full: Crop | None = full_frame if self._full_given else None

    # --- the candidates ------------------------------------------------------------------------

    @property
    def candidates(self) -> CandidateTable:
        """The candidates as columns (for a list-made Suggestion, built from its crops once)."""
        if self._table is None:
            crops = self._list or []
            full = self._full
            index = next((i for i, c in enumerate(crops) if c is full), None) if full is not None else None
            if full is not None and index is None:
                crops = [*crops, full]  # a full frame given beside the list is a candidate too
                index = len(crops) - 1
            if index is None:
                index = next((i for i, c in enumerate(crops) if c.aspect == "full"), None)
            self._table = CandidateTable.from_crops(crops, index)
        return self._table

    @property
    def crops(self) -> list[Crop]:
        """Every candidate as a :class:`Crop`, ranked within its set (built once, on first use)."""
        if self._list is None:
            assert self._table is not None
            self._list = self._rows(range(len(self._table)))
        return self._list

    @crops.setter
    def crops(self, crops: Sequence[Crop]) -> None:
        full = self.full_frame
        self._native, self._table, self._list, self._built = False, None, list(crops), {}
        self._full, self._full_given = full, True

    @property
    def full_frame(self) -> Crop | None:
        if self._full_given or not self._native:
            return self._full
        index = self.candidates.full_index
        return None if index is None else self.crop(index)

    @full_frame.setter
    def full_frame(self, crop: Crop | None) -> None:
        if self._native:
            self.crops = self.crops  # from now on the list (and this full frame) is what counts
        self._full, self._full_given, self._table = crop, True, None

    def crop(self, row: int) -> Crop:
        """Candidate ``row`` of :attr:`candidates` as a :class:`Crop` (the same object each time)."""
        if self._native:
            got = self._built.get(row)
            if got is None:
                got = self._built[row] = self.candidates.crops([row])[0]
            return got
        assert self._list is not None
        if row < len(self._list):
            return self._list[row]
        assert self._full is not None  # the full frame given beside the list of crops
        return self._full

    def _rows(self, rows: Iterable[int]) -> list[Crop]:
        rows = [int(r) for r in rows]
        if self._native:
            missing = [r for r in dict.fromkeys(rows) if r not in self._built]
            self._built.update(zip(missing, self.candidates.crops(missing)))
        return [self.crop(r) for r in rows]

    def explanation(self, row: int) -> list[ElementChange]:
        """The explanation of candidate ``row`` (from the columns; no Crop is built)."""
        if self._native:
            got = self._built.get(row)
            return got.explanation if got is not None else self.candidates.explanation(row)
        return self.crop(row).explanation

    def element_scores(self, row: int) -> np.ndarray | list[float] | None:
        """The element scores of candidate ``row``, or ``None`` when the scorer gave none."""
        if self._native:
            t = self.candidates
            return None if t.elements is None or t.full_index is None else t.elements[row]
        return self.crop(row).elements

    @property
    def n_candidates(self) -> int:
        """The number of candidates (the full frame included). Not ``__len__``: a Suggestion
        without candidates (a failed photo) must still be truthy where callers write ``s or ...``."""
        return len(self._list) if self._list is not None else len(self.candidates)

    # --- selections ----------------------------------------------------------------------------

    def aspects(self) -> list[str]:
        """The candidate sets present, in first-seen order, without ``"full"``."""
        return [name for name in self.candidates.set_names if name != "full"]

    def best_row(self, aspect: str | None = None) -> int | None:
        """The row in :attr:`candidates` of :meth:`best` (``None`` when there is none)."""
        t = self.candidates
        if not len(t):
            return None
        mask = t.sets != t.code("full")
        if aspect is not None:
            mask &= t.sets == t.code(aspect)
        firsts = np.flatnonzero(mask & (t.ranks == 1))
        if not len(firsts):
            pool = np.flatnonzero(mask)
            return int(pool[np.argmax(t.scores[pool])]) if len(pool) else None
        if aspect is not None:
            return int(firsts[0])
        ratios = firsts[t.sets[firsts] != t.code(FREE_SET)]
        pick = ratios if len(ratios) else firsts
        return int(pick[np.argmax(t.scores[pick])])

    def best(self, aspect: str | None = None) -> Crop | None:
        """The rank-1 crop of ``aspect``; without ``aspect``, the photo's primary crop.

        The primary crop is the best of the ratio sets the user asked for (by score) when there
        are any, else the grid's rank 1. It is what gets written and listed, unless
        :meth:`choice` says to keep the full frame. Ranks come from the subject guard, so a rank
        1 may score below a candidate that cuts a face.
        """
        row = self.best_row(aspect)
        return None if row is None else self.crop(row)

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

    def ranked_rows(self, aspect: str, n: int | None = None) -> np.ndarray:
        """The rows of ``aspect``'s candidates by rank (the first ``n``)."""
        t = self.candidates
        rows = np.flatnonzero(t.sets == t.code(aspect))
        rows = rows[np.argsort(t.ranks[rows], kind="stable")]
        return rows if n is None else rows[:n]

    def ranked(self, aspect: str, n: int | None = None) -> list[Crop]:
        """The crops of ``aspect`` by rank (the first ``n``)."""
        return self._rows(self.ranked_rows(aspect, n).tolist())

    def top(self, n: int) -> list[Crop]:
        """The ``n`` best crops of every candidate set, set by set."""
        return self._rows([r for aspect in self.aspects() for r in self.ranked_rows(aspect, n).tolist()])

    def listed(self) -> list[Crop]:
        """Every candidate but the full frame, in candidate order."""
        t = self.candidates
        return self._rows(np.flatnonzero(t.sets != t.code("full")).tolist())

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """The JSON form printed by ``clipcrop suggest --json`` (boxes in upright pixels)."""
        info = self.info
        crops = self.top(top) if top else self.listed()
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

    # --- plumbing ------------------------------------------------------------------------------

    _FIELDS = ("path", "ok", "error", "info", "scorer", "weights_hash", "device", "subjects", "subjects_error")

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name) for name in self._FIELDS}
        if self._native:
            state["candidates"] = self._table  # columns only: the Crop objects were the slow part to send
        else:
            state["crops"] = self._list
        if self._full_given:
            state["full_frame"] = self._full
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        Suggestion.__init__(self, **state)

    def replace(self, **changes: Any) -> Suggestion:
        """A copy with some fields changed (what :func:`dataclasses.replace` did when a Suggestion
        was a dataclass): any constructor argument, e.g. ``s.replace(path=local, error=None)``.
        The copy shares the columns (never changed in place) and builds its own Crops."""
        state = self.__getstate__()
        unknown = set(changes) - set(state) - {"crops", "full_frame", "candidates", *self._FIELDS}
        if unknown:
            raise TypeError(f"Suggestion has no field {', '.join(sorted(unknown))}")
        if "crops" in changes or "candidates" in changes:
            # New candidates replace the old ones, whichever form either came in.
            state.pop("crops", None)
            state.pop("candidates", None)
            state.pop("full_frame", None)
        state.update(changes)
        return Suggestion(**state)

    __replace__ = replace  # copy.replace() (Python 3.13)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Suggestion):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._FIELDS) and \
            self.crops == other.crops and self.full_frame == other.full_frame

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"error={self.error!r}"
        return f"Suggestion({self.path!r}, {state}, scorer={self.scorer!r}, candidates={self.n_candidates})"
