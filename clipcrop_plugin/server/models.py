"""Request and response bodies of the HTTP API (they make up /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

Box = tuple[int, int, int, int]


class ElementChangeOut(BaseModel):
    """How much one element's score changes from the full frame to the crop."""

    element: str = Field(description="element name, e.g. rule_of_thirds")
    label: str = Field(description="human phrase, e.g. 'rule of thirds'")
    change: float


class CropOut(BaseModel):
    """One candidate crop. ``box`` is in upright pixels (x2, y2 exclusive); ``fractions`` are
    (left, top, right, bottom) of the upright image."""

    aspect: str = Field(description="candidate set: grid, full, or a ratio such as 1:1")
    rank: int = Field(description="1-based rank within the set")
    box: Box
    fractions: tuple[float, float, float, float]
    score: float
    improvement: float = Field(description="score minus the full frame's score")
    explanation: list[ElementChangeOut] = Field(default_factory=list, description="the three largest changes")
    changes: list[ElementChangeOut] | None = Field(default=None, description="all ten element changes, when known")


class SubjectOut(BaseModel):
    """Something the subject stage found, that a good crop keeps whole."""

    kind: Literal["face", "profile_face", "person", "salient", "content"]
    box: Box
    fractions: tuple[float, float, float, float] = Field(description="box / (width, height)")
    score: float = Field(ge=0, le=1, description="the detector's confidence")


class LabelOut(BaseModel):
    """A recorded judgement of the user."""

    id: int
    photo_id: int
    kind: Literal["accept", "reject", "box", "prefer"]
    aspect: str | None = None
    rank: int | None = None
    other_rank: int | None = None
    box: Box | None = None
    other_box: Box | None = None
    source: str
    created_at: datetime | None = None


class PhotoSummaryOut(BaseModel):
    """A photo as listed in the grid, with its selected crop."""

    id: int
    name: str
    folder: str
    width: int
    height: int
    status: str = Field(description="pending, scored, failed or gone")
    offline: bool = Field(False, description="its folder is not reachable now (unmounted disk, share)")
    error: str | None = None
    taken_at: str | None = Field(
        default=None, description="capture time from EXIF, camera-local (ISO 8601 without a zone)")
    camera: str | None = None
    best: CropOut | None = Field(default=None, description="the selected crop (rank 1 of `aspect`, or best overall)")
    keep: bool = Field(False, description="the suggestion is 'keep as is': `best` is a grid crop that does not beat "
                                          "the full frame by the keep margin, so no crop is written")
    label: LabelOut | None = Field(default=None, description="the latest label, if any")
    subjects: list[SubjectOut] = Field(
        default_factory=list, description="faces, people and the main salient region, in upright pixels"
    )


class PhotoPageOut(BaseModel):
    """One page of a photo query."""

    total: int
    offset: int
    limit: int
    items: list[PhotoSummaryOut]


class PhotoDetailOut(PhotoSummaryOut):
    """Everything stored about one photo's active scoring run."""

    path: str
    orientation: int | None = None
    scorer: str | None = None
    weights_hash: str | None = None
    device: str | None = None
    scored_at: datetime | None = None
    full_frame: CropOut | None = None
    sets: dict[str, list[CropOut]] = Field(default_factory=dict, description="every candidate, ranked, per set")
    explanation: str = Field("", description="the best crop's explanation in words")
    labels: list[LabelOut] = Field(default_factory=list)


class ScoreRequest(BaseModel):
    """Score a known photo now."""

    aspects: list[str] | None = Field(
        default=None, max_length=12, description="extra ratio sets such as 1:1 or 16:9 (default: configured)"
    )


class LabelRequest(BaseModel):
    """A user's judgement. ``accept``/``reject`` name a candidate by (aspect, rank); ``box`` gives a
    user-drawn box in upright pixels; ``prefer`` says candidate ``rank`` beats ``other_rank``
    (or ``box`` beats ``other_box``)."""

    kind: Literal["accept", "reject", "box", "prefer"]
    aspect: str | None = Field(default=None, max_length=16)
    rank: int | None = Field(default=None, ge=1, le=10000)
    other_rank: int | None = Field(default=None, ge=1, le=10000)
    box: Box | None = None
    other_box: Box | None = None
    source: str = Field(default="api", max_length=16, pattern=r"^[A-Za-z0-9_.-]+$")

    @model_validator(mode="after")
    def _complete(self) -> LabelRequest:
        if self.kind in ("accept", "reject") and self.rank is None and self.box is None:
            raise ValueError(f"{self.kind} needs rank (with aspect) or box")
        if self.kind == "box" and self.box is None:
            raise ValueError("box needs box")
        if self.kind == "prefer" and not (
            (self.rank is not None and self.other_rank is not None)
            or (self.box is not None and self.other_box is not None)
        ):
            raise ValueError("prefer needs rank and other_rank, or box and other_box")
        return self


class MetadataRequest(BaseModel):
    """Write the crop of ``aspect`` (default: the best) as XMP."""

    aspect: str | None = Field(default=None, max_length=16)
    embed: bool = Field(default=False, description="embed into the JPEG/PNG instead of a sidecar")
    naming: Literal["ext", "base"] | None = Field(default=None, description="sidecar name: IMG.JPG.xmp or IMG.xmp")


class MetadataResult(BaseModel):
    """Files written or cleared."""

    photo_id: int
    files: list[str]
    cleared: bool


class DaemonStatus(BaseModel):
    """What ``clipcrop watch`` last reported (``running`` checks the process really lives)."""

    available: bool = Field(description="a status file exists")
    running: bool = False
    detail: str | None = None
    status: dict[str, Any] = Field(default_factory=dict)


class ElementInfo(BaseModel):
    name: str
    label: str
    branch: str


class ServerInfo(BaseModel):
    """Static facts the review page needs."""

    version: str
    elements: list[ElementInfo]
    aspects: list[str] = Field(description="candidate sets present in the library")
    photos: int


class Problem(BaseModel):
    """An error: one line."""

    detail: str
