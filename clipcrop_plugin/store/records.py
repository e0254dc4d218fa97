"""The records the ``Store`` returns: plain dataclasses, detached from any connection, and the
functions that build them from database rows (decoding a run's packed candidates included)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ..elements import ELEMENT_NAMES
from ..results import Box, ElementChange, Subject
from .packing import unpack_candidates, unpack_elements, unpack_vector

MIN_CHANGE = 0.005  # same noise floor as the pipeline's explanations



@dataclass
class CropRecord:
    """A stored candidate. ``box`` in upright pixels; ``fractions`` = box / (width, height)."""

    aspect: str
    rank: int
    box: Box
    fractions: tuple[float, float, float, float]
    score: float
    improvement: float
    explanation: list[ElementChange] = field(default_factory=list)
    elements: list[float] | None = None
    changes: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "aspect": self.aspect,
            "rank": self.rank,
            "box": list(self.box),
            "fractions": [round(v, 6) for v in self.fractions],
            "score": round(self.score, 6),
            "improvement": round(self.improvement, 6),
            "explanation": [e.to_dict() for e in self.explanation],
        }


@dataclass
class PhotoSummary:
    """One query result: the photo and its selected crop (``None`` when it has no scores)."""

    id: int
    path: str
    folder: str
    status: str
    error: str | None
    offline: bool
    width: int | None
    height: int | None
    taken_at: datetime | None
    camera_make: str | None
    camera_model: str | None
    content_hash: str | None
    run_id: int | None = None
    crop: CropRecord | None = None
    pair_path: str | None = None  # the other file of a RAW + JPEG shot
    pair_role: str | None = None  # "raw" or "companion"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "pair": {"path": self.pair_path, "role": self.pair_role} if self.pair_path else None,
            "status": self.status,
            "error": self.error,
            "offline": self.offline,
            "width": self.width,
            "height": self.height,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "camera": " ".join(v for v in (self.camera_make, self.camera_model) if v) or None,
            "crop": self.crop.to_dict() if self.crop else None,
        }


@dataclass
class RunRecord:
    """A scoring run's header."""

    id: int
    scorer: str
    weights_hash: str | None
    device: str | None
    created_at: datetime
    active: bool
    content_hash: str
    n_candidates: int
    full_score: float


@dataclass
class LabelRecord:
    """A stored label (see :class:`clipcrop_plugin.store.models.Label`)."""

    id: int
    photo_id: int
    path: str
    kind: str
    aspect: str | None
    rank: int | None
    box: Box | None
    other_rank: int | None
    other_box: Box | None
    width: int | None
    height: int | None
    source: str
    created_at: datetime
    run_id: int | None
    model_version_id: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "kind": self.kind,
            "aspect": self.aspect,
            "rank": self.rank,
            "box": list(self.box) if self.box else None,
            "other_rank": self.other_rank,
            "other_box": list(self.other_box) if self.other_box else None,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
        }


@dataclass
class PhotoDetail:
    """Everything stored about one photo, from its active run."""

    photo: PhotoSummary
    orientation: int | None
    format: str | None
    run: RunRecord | None
    runs: list[RunRecord]
    full_frame: CropRecord | None
    best: dict[str, CropRecord]  # per candidate set, rank 1
    candidates: list[CropRecord]  # every candidate of the active run, set by set, by rank
    labels: list[LabelRecord]
    subjects: list[Subject] = field(default_factory=list)  # what the active run's subject stage found

    def to_dict(self) -> dict[str, Any]:
        d = self.photo.to_dict()
        d.update(
            orientation=self.orientation,
            format=self.format,
            scorer=self.run.scorer if self.run else None,
            full_frame=self.full_frame.to_dict() if self.full_frame else None,
            best={k: v.to_dict() for k, v in self.best.items()},
            candidates=[c.to_dict() for c in self.candidates],
            labels=[lab.to_dict() for lab in self.labels],
            subjects=[sub.to_dict() for sub in self.subjects],
            runs=[{"id": r.id, "scorer": r.scorer, "weights_hash": r.weights_hash, "active": r.active,
                   "created_at": r.created_at.isoformat()} for r in self.runs],
        )
        return d


@dataclass
class FileRecord:
    """The few columns scan and relink need."""

    id: int
    path: str
    content_hash: str | None
    status: str
    mtime: float | None
    size: int | None


@dataclass
class ModelVersionRecord:
    """A registered checkpoint (see :class:`clipcrop_plugin.store.models.ModelVersion`)."""

    id: int
    name: str
    checkpoint_path: str
    sha256: str
    parent_id: int | None
    data_summary: dict[str, Any] | None
    metrics: dict[str, Any] | None
    created_at: datetime
    active: bool


# ----------------------------------------------------------------------------------------------
# Rows to records


def box_fractions(box: Sequence[int], width: int | None, height: int | None) -> tuple[float, float, float, float]:
    """``box`` / (width, height); zeros when the size is unknown."""
    if not width or not height:
        return (0.0, 0.0, 0.0, 0.0)
    return (box[0] / width, box[1] / height, box[2] / width, box[3] / height)


def top_changes(changes: Sequence[float]) -> list[ElementChange]:
    """The three largest element changes (by magnitude) above the noise floor."""
    order = sorted(range(len(changes)), key=lambda i: -abs(changes[i]))[:3]
    return [ElementChange(ELEMENT_NAMES[i], float(changes[i])) for i in order if abs(changes[i]) >= MIN_CHANGE]


def crop_from_row(row: Any, width: int | None, height: int | None,
                  explanation: list[ElementChange]) -> CropRecord:
    """A ``crops`` row (aspect, rank, x1..y2, score, improvement, elements) as a record."""
    box = (int(row.x1), int(row.y1), int(row.x2), int(row.y2))
    return CropRecord(row.aspect, int(row.rank), box, box_fractions(box, width, height), float(row.score),
                      float(row.improvement), explanation, unpack_vector(row.elements))


def summary_from_row(row: Any, explanations: dict[int, list[ElementChange]]) -> PhotoSummary:
    """A row of :func:`~clipcrop_plugin.store.queries.build_query` (photo columns plus the
    selected crop's, NULL when it has none) as a summary."""
    crop = None
    if row.crop_id is not None:
        crop = crop_from_row(row, row.width, row.height, explanations.get(row.crop_id, []))
    return PhotoSummary(row.id, row.path, row.folder, row.status, row.error, bool(row.offline), row.width,
                        row.height, row.taken_at, row.camera_make, row.camera_model, row.content_hash,
                        int(row.run_id) if row.crop_id is not None else None, crop,
                        row.pair_path, row.pair_role if row.pair_path else None)


def file_record_from_row(row: Any) -> FileRecord:
    """A ``photos`` row as the few columns scan and relink need."""
    return FileRecord(row.id, row.path, row.content_hash, row.status, row.mtime, row.size)


def run_from_row(row: Any) -> RunRecord:
    """A ``scoring_runs`` row's header."""
    return RunRecord(row.id, row.scorer, row.weights_hash or None, row.device, row.created_at, bool(row.active),
                     row.content_hash, row.n_candidates, row.full_score)


def label_from_row(row: Any) -> LabelRecord:
    """A ``labels`` row joined with its photo's ``path``."""

    def box(x1: Any, y1: Any, x2: Any, y2: Any) -> Box | None:
        return None if x1 is None else (int(x1), int(y1), int(x2), int(y2))

    return LabelRecord(row.id, row.photo_id, row.path, row.kind, row.aspect, row.rank,
                       box(row.x1, row.y1, row.x2, row.y2), row.other_rank, box(row.ox1, row.oy1, row.ox2, row.oy2),
                       row.width, row.height, row.source, row.created_at, row.run_id, row.model_version_id)


def model_version_from_row(row: Any) -> ModelVersionRecord:
    """A ``model_versions`` row, its JSON columns decoded."""
    return ModelVersionRecord(row.id, row.name, row.checkpoint_path, row.sha256, row.parent_id,
                              json.loads(row.data_summary) if row.data_summary else None,
                              json.loads(row.metrics) if row.metrics else None, row.created_at, bool(row.active))


def decode_run(run: Any, crop_rows: dict[tuple[str, int], Any],
               explanations: dict[int, list[ElementChange]]) -> list[CropRecord]:
    """Every candidate of a ``scoring_runs`` row, set by set (in the run's order), by rank, the
    full frame last. The queryable top candidates (``crop_rows`` by (aspect, rank)) keep their
    exact float32 scores and stored explanations; the rest come from the packed, quantized BLOBs."""
    packed = unpack_candidates(run.candidates)
    aspects = run.aspects.split(",")
    n = len(packed.scores)
    elements_all = unpack_elements(run.elements, n) if run.elements is not None else None
    full_index = next((i for i in range(n) if aspects[packed.sets[i]] == "full"), None)
    full_elements = None
    if elements_all is not None and full_index is not None:
        full_row = crop_rows.get(("full", 1))
        full_elements = (np.asarray(unpack_vector(full_row.elements), np.float32)
                         if full_row is not None and full_row.elements else elements_all[full_index])
    out: list[CropRecord] = []
    for i in range(n):
        aspect = aspects[packed.sets[i]]
        rank = int(packed.ranks[i])
        box = tuple(int(v) for v in packed.boxes[i])
        row = crop_rows.get((aspect, rank))
        if row is not None:  # exact float32 copy for the top candidates
            score, improvement = float(row.score), float(row.improvement)
            elements = unpack_vector(row.elements)
        else:
            score = float(packed.scores[i])
            improvement = score - float(run.full_score)
            elements = [float(v) for v in elements_all[i]] if elements_all is not None else None
        changes = None
        if elements is not None and full_elements is not None:
            changes = [float(a - b) for a, b in zip(elements, full_elements)]
        explanation = explanations.get(row.id, []) if row is not None else []
        if not explanation and changes is not None and aspect != "full":
            explanation = top_changes(changes)
        out.append(CropRecord(aspect, rank, box, box_fractions(box, run.width, run.height),  # type: ignore[arg-type]
                              score, improvement, explanation, elements, changes))
    order = {a: i for i, a in enumerate(aspects)}
    out.sort(key=lambda c: (c.aspect == "full", order[c.aspect], c.rank))
    return out
