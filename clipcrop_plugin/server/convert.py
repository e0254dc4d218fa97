"""Store records -> API response models (the only place that knows both shapes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from ..elements import BY_NAME, ELEMENT_NAMES
from ..results import KEEP_REASON, configured_keep_margin, is_keep
from .models import CropOut, ElementChangeOut, LabelOut, PhotoDetailOut, PhotoPageOut, PhotoSummaryOut, SubjectOut

if TYPE_CHECKING:
    from ..api import Library, PhotoPage


def _utc(t: datetime | None) -> datetime | None:
    """Store times are naive UTC; the API says so explicitly (RFC 3339 needs a zone)."""
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def _change(element: str, change: float) -> ElementChangeOut:
    e = BY_NAME.get(element)
    return ElementChangeOut(element=element, label=e.label if e else element.replace("_", " "), change=float(change))


def crop(c: Any, *, with_changes: bool = False) -> CropOut:
    """A store ``CropRecord`` as the API's crop."""
    changes: Sequence[float] | None = getattr(c, "changes", None)
    return CropOut(
        aspect=c.aspect,
        rank=int(c.rank),
        box=tuple(int(v) for v in c.box),  # type: ignore[arg-type]
        fractions=tuple(round(float(v), 6) for v in c.fractions),  # type: ignore[arg-type]
        score=float(c.score),
        improvement=float(c.improvement),
        explanation=[_change(x.element, x.change) for x in c.explanation],
        changes=[_change(n, v) for n, v in zip(ELEMENT_NAMES, changes)] if with_changes and changes else None,
    )


def label(x: Any) -> LabelOut:
    """A store ``LabelRecord`` as the API's label."""
    return LabelOut(
        id=x.id, photo_id=x.photo_id, kind=x.kind, aspect=x.aspect, rank=x.rank, other_rank=x.other_rank,
        box=x.box, other_box=x.other_box, source=x.source, created_at=_utc(x.created_at),
    )


def _summary_fields(p: Any, margin: float | None = None) -> dict[str, Any]:
    camera = " ".join(v for v in (p.camera_make, p.camera_model) if v) or None
    margin = configured_keep_margin() if margin is None else margin
    keep = p.crop is not None and is_keep(p.crop.aspect, p.crop.improvement, margin)
    return dict(
        id=p.id, name=PurePath(p.path).name, folder=p.folder, width=p.width or 0, height=p.height or 0,
        status=p.status, offline=p.offline, error=p.error,
        taken_at=p.taken_at.isoformat() if p.taken_at else None, camera=camera,
        best=crop(p.crop) if p.crop is not None else None,
        keep=keep,
    )


def photo_page(library: Library, page: PhotoPage, *, limit: int, offset: int, with_labels: bool = True) -> PhotoPageOut:
    """A library page, with each photo's latest label so the grid can show what was reviewed."""
    latest: dict[int, LabelOut] = {}
    if with_labels:
        for p in page.items:
            recs = library.store.labels(photo_id=p.id)
            if recs:
                latest[p.id] = label(recs[-1])
    margin = configured_keep_margin()
    found = library.store.subjects_of([p.id for p in page.items]) if page.items else {}
    items = [PhotoSummaryOut(**_summary_fields(p, margin), label=latest.get(p.id),
                             subjects=[subject(x, p.width, p.height) for x in found.get(p.id, [])])
             for p in page.items]
    return PhotoPageOut(total=page.total, offset=offset, limit=limit, items=items)


def photo_detail(library: Library, d: Any) -> PhotoDetailOut:
    """A store ``PhotoDetail`` with every candidate grouped by set, ranked."""
    sets: dict[str, list[CropOut]] = {}
    for c in d.candidates:
        if c.aspect != "full":
            sets.setdefault(c.aspect, []).append(crop(c, with_changes=True))
    best = d.photo.crop
    words = ""
    if best is not None and best.explanation:
        words = ", ".join(
            f"{'enhances' if x.change >= 0 else 'reduces'} {BY_NAME[x.element].label if x.element in BY_NAME else x.element}"
            for x in best.explanation
        )
    labels = [label(x) for x in d.labels]
    fields = _summary_fields(d.photo)
    if fields["keep"]:
        words = KEEP_REASON + (f" (best grid crop {best.improvement:+.3f})" if best is not None else "")
    if best is not None:
        fields["best"] = crop(best, with_changes=True)
    return PhotoDetailOut(
        **fields,
        label=labels[-1] if labels else None,
        path=d.photo.path,
        orientation=d.orientation,
        scorer=d.run.scorer if d.run else None,
        weights_hash=d.run.weights_hash if d.run else None,
        device=d.run.device if d.run else None,
        scored_at=_utc(d.run.created_at) if d.run else None,
        full_frame=crop(d.full_frame, with_changes=True) if d.full_frame is not None else None,
        sets=sets,
        explanation=words,
        labels=labels,
        subjects=[subject(x, d.photo.width, d.photo.height) for x in getattr(d, "subjects", [])],
    )


def subject(x: Any, width: int | None, height: int | None) -> SubjectOut:
    """A stored :class:`~clipcrop_plugin.results.Subject` as the API's subject."""
    w, h = max(int(width or 1), 1), max(int(height or 1), 1)
    x1, y1, x2, y2 = (int(v) for v in x.box)
    return SubjectOut(kind=x.kind, box=(x1, y1, x2, y2), fractions=(round(x1 / w, 6), round(y1 / h, 6),
                      round(x2 / w, 6), round(y2 / h, 6)), score=float(x.score))
